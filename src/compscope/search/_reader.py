"""Read molecule files: ``.smi`` (SMILES [id] per line) and ``.csv``/``.tsv``, optionally gzipped.

Each record comes back as ``(line_number, smiles, id)``, with 1-based line numbers so that invalid
SMILES can be reported where a person can find them.
"""

from __future__ import annotations

import csv
import gzip
import io
from collections.abc import Iterator
from pathlib import Path

from ._errors import InputFileError

_SMILES_NAMES = ("smiles", "canonical_smiles", "smi", "mol", "structure")
_ID_NAMES = ("id", "name", "mol_id", "molecule_id", "zinc_id", "chembl_id", "compound_id", "title")


def _open_text(path: Path) -> io.TextIOBase:
    if not path.exists():
        raise InputFileError(f"molecule file {path} does not exist; pass a .smi/.csv[.gz] file")
    if path.is_dir():
        raise InputFileError(f"{path} is a directory; pass a .smi/.csv[.gz] file")
    with path.open("rb") as fh:
        head = fh.read(2)
    # gzip opens the file by name: a GzipFile around a file object would not close that object
    stream = gzip.open(path, "rb") if head == b"\x1f\x8b" else path.open("rb")
    try:  # a refused file is closed here, not left to the garbage collector (ResourceWarning)
        try:
            sample = stream.peek(4096)[:4096] if hasattr(stream, "peek") else b""
        except (OSError, EOFError) as exc:
            raise InputFileError(f"{path} looks gzipped but cannot be decompressed ({exc}); is the file complete?") \
                from exc
        if b"\x00" in sample:
            raise InputFileError(
                f"{path} is a binary file, not SMILES; pass a text file with one SMILES per line (.smi) "
                "or a CSV with a SMILES column (.csv, optionally .gz)"
            )
    except BaseException:
        stream.close()
        raise
    return io.TextIOWrapper(stream, encoding="utf-8", errors="strict", newline="")


def _find_col(header: list[str], wanted: str | None, names: tuple[str, ...], what: str, path: Path) -> int | None:
    low = [h.strip().lower() for h in header]
    if wanted is not None:
        if wanted.isdigit() and wanted not in header:
            return int(wanted)
        if wanted.lower() in low:
            return low.index(wanted.lower())
        raise InputFileError(f"{path}: no column {wanted!r} ({what}); columns are {header}")
    for n in names:
        if n in low:
            return low.index(n)
    return None


def iter_records(
    path: str | Path, smiles_col: str | None = None, id_col: str | None = None
) -> Iterator[tuple[int, str, str]]:
    """Yield ``(line_number, smiles, id)`` for every record of a molecule file.

    Args:
        path: ``.smi``/``.txt`` (whitespace separated: SMILES first, optional id second; ``#`` comments)
            or ``.csv``/``.tsv`` with a header row; any of them gzipped (``.gz``).
        smiles_col: CSV column name (or 0-based index) holding SMILES; default: a column called
            ``smiles`` (any case), else the first column.
        id_col: CSV column with molecule ids; default: ``id``/``name``/... if present, else the
            0-based record number.

    Raises:
        InputFileError: missing/binary/undecodable file or a named column that does not exist.
    """
    path = Path(path)
    name = path.name.lower().removesuffix(".gz")
    fh = _open_text(path)
    try:
        if name.endswith((".csv", ".tsv")):
            yield from _iter_csv(fh, path, "\t" if name.endswith(".tsv") else ",", smiles_col, id_col)
        else:
            yield from _iter_smi(fh)
    except UnicodeDecodeError as exc:
        raise InputFileError(f"{path} is not UTF-8 text ({exc}); pass a SMILES or CSV text file") from exc
    except (OSError, EOFError) as exc:
        raise InputFileError(f"{path} could not be read to the end ({exc}); is the file truncated?") from exc
    finally:
        fh.close()


def _iter_smi(fh) -> Iterator[tuple[int, str, str]]:
    rec = 0
    for lineno, line in enumerate(fh, start=1):
        parts = line.split()
        if not parts or parts[0].startswith("#"):
            continue
        if lineno == 1 and parts[0].lower() in _SMILES_NAMES:
            continue  # header line
        yield lineno, parts[0], parts[1] if len(parts) > 1 else str(rec)
        rec += 1


def _iter_csv(fh, path: Path, delim: str, smiles_col, id_col) -> Iterator[tuple[int, str, str]]:
    reader = csv.reader(fh, delimiter=delim)
    header = next(reader, None)
    if header is None:
        return
    si = _find_col(header, smiles_col, _SMILES_NAMES, "SMILES", path)
    if si is None:
        si = 0
    ii = _find_col(header, id_col, _ID_NAMES, "ids", path)
    rec = 0
    for row in reader:
        if not row:
            continue
        smi = row[si].strip() if si < len(row) else ""
        mid = row[ii].strip() if ii is not None and ii < len(row) else str(rec)
        yield reader.line_num, smi, mid
        rec += 1
