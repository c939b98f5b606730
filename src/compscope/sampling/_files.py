"""One way to open the sampling task's HDF5 inputs: a missing file, a file that is not HDF5, or one of another
format is a :class:`SamplingInputError` that says which file and what to pass instead."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ._errors import SamplingInputError

__all__ = ["open_h5"]


def open_h5(path: str | Path, hint: str, fmt: str | None = None) -> Any:
    """``h5py.File(path, "r")`` (use it as a context manager) after checking that it exists, is HDF5 and, when
    ``fmt`` is given, has ``attrs["format"] == fmt``; ``hint`` says what file to pass instead."""
    import h5py

    path = Path(path)
    if not path.exists():
        raise SamplingInputError(f"{path} not found (no such file)", hint=hint)
    try:
        h5 = h5py.File(path, "r")
    except OSError as err:
        raise SamplingInputError(f"{path} is not an HDF5 file ({err})", hint=hint) from None
    if fmt is not None and h5.attrs.get("format") != fmt:
        found = h5.attrs.get("format")
        h5.close()
        raise SamplingInputError(f"{path} is not a {fmt} file (format {found!r})", hint=hint)
    return h5


def run_lock(folder: Path, reader: str):
    """An exclusive lock on a long run's folder (one process per run: a second ``--resume`` while the first still
    runs is refused); held until the returned file is closed. ``reader``: what may read the numbers meanwhile."""
    import fcntl

    folder.mkdir(parents=True, exist_ok=True)
    fh = open(folder / "lock", "a+")  # noqa: SIM115 - held until the run stops
    try:
        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        fh.close()
        raise SamplingInputError(f"{folder} is being run by another process",
                                 hint="wait for it to stop (or stop it) before resuming; reading the numbers "
                                      f"({reader}, the benchmark) is fine meanwhile") from None
    return fh
