"""Error type of the analysis layer; every message says what is wrong and the hint what to do."""

from __future__ import annotations

from compscope.errors import CompscopeError

__all__ = ["AnalysisInputError"]


class AnalysisInputError(CompscopeError, ValueError):
    """A time series, angle array or histogram that a metric cannot use (wrong shape, NaN, too short)."""
