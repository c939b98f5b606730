"""Error types of the coarse-graining task; every message says what is wrong and the hint what to do."""

from __future__ import annotations

from compscope.errors import CompscopeError

__all__ = ["CGMappingError", "CGDataError"]


class CGMappingError(CompscopeError, ValueError):
    """A mapping that cannot be built: missing atoms, empty beads, inconsistent force map, frames of another size."""


class CGDataError(CompscopeError, ValueError):
    """Reference or CG data that a step cannot use (no forces for force matching, no frames left, wrong layout)."""
