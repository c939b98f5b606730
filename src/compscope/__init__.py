"""compscope: deep learning as a computational microscope for molecules and physical fields.

Sub-packages by concern (see docs/repomap.md):
``data`` -> ``nn``/``models`` -> task packages (``forcefield``, ``md``, ``generate``, ``pde``, ``search``) -> ``cli``.
"""

__version__ = "0.1.0"
