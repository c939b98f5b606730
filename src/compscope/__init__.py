"""compscope: deep learning as a computational microscope for molecules and physical fields.

Sub-packages by concern (see docs/repomap.md):
``data`` -> ``nn``/``models`` -> ``train``/``integrations`` -> task packages (``forcefield``, ``md``, ``generate``,
``pde``, ``search``) -> ``cli``; :mod:`compscope.errors` and :mod:`compscope.versions` are used by all of them.
"""

__version__ = "0.1.0"
