"""compscope: deep learning as a computational microscope for molecules and physical fields.

Sub-packages by concern (see docs/repomap.md):
``data`` -> ``nn``/``models`` -> ``train``/``integrations`` -> task packages (``forcefield``, ``md``, ``generate``,
``pde``, ``search``) -> ``cli``; :mod:`compscope.errors` and :mod:`compscope.versions` are used by all of them.
"""

__version__ = "0.1.0"

# idle OpenMP threads sleep instead of spinning on a shared CPU: the policy is read once, when torch loads its
# OpenMP runtime, so it is set here, before any compscope module imports torch (a user's own setting wins)
from compscope import runtime as _runtime  # noqa: E402

_runtime.set_wait_policy()
del _runtime
