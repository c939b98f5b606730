"""One error base class for everything compscope refuses: the message says what is wrong, the hint what to do.

Every error a user can cause (a bad config, a malformed file, a model for another system, a run folder that
already exists) derives from :class:`CompscopeError`. Subclasses also derive from the builtin they refine
(``ValueError``, ``FileNotFoundError``, ...), so ``except ValueError`` keeps working. The command line catches
:class:`CompscopeError` in one place (:func:`compscope.cli.run_command`), prints message and hint, and exits
with code 2; anything else is a bug and keeps its traceback.

Examples:
    >>> err = ConfigError("model.r_max must be positive, got -1", hint="set model.init_args.r_max to e.g. 5.0")
    >>> isinstance(err, ValueError), err.exit_code
    (True, 2)
    >>> print(err.explain())
    model.r_max must be positive, got -1
    hint: set model.init_args.r_max to e.g. 5.0
"""

from __future__ import annotations

__all__ = ["CompscopeError", "ConfigError", "ResumeError", "RunExistsError"]


class CompscopeError(Exception):
    """Base of every user-facing error. ``hint`` (optional) says how to fix it; ``exit_code`` is the CLI's."""

    exit_code = 2

    def __init__(self, *args: object, hint: str | None = None) -> None:
        super().__init__(*args)
        self.hint = hint

    def explain(self) -> str:
        """Message and hint, as the CLI prints them."""
        text = str(self)
        return f"{text}\nhint: {self.hint}" if self.hint else text


class ConfigError(CompscopeError, ValueError):
    """A config cannot be used as written; the message names the key and the allowed ones."""


class ResumeError(CompscopeError, ValueError):
    """``--resume`` was asked for a run that cannot be continued as configured (nothing saved, or settings that
    must not change did)."""


class RunExistsError(CompscopeError, FileExistsError):
    """A fresh run was asked for in a folder that already holds one."""
