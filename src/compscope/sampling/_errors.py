"""Error types of the sampling task; every message says what is wrong and the hint what to do."""

from __future__ import annotations

from compscope.errors import CompscopeError

__all__ = ["SamplingInputError"]


class SamplingInputError(CompscopeError, ValueError):
    """Positions, settings or files that a target, sampler or flow cannot use (wrong shape, NaN, unknown name)."""
