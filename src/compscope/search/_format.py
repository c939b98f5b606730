"""The ``.csi`` index format: a directory with a JSON header and numpy ``.npy`` arrays.

Layout of ``lib.csi/`` (``N`` molecules, ``W`` fingerprint words, rows sorted by fingerprint popcount)::

    header.json          format name + version, fingerprint settings, N, property names, array manifest
    fps.npy              (N, W) uint64   similarity fingerprints, rows sorted by popcount (then input order)
    fold.npy             (N, F) uint64   fingerprints folded to F = 4 words (OR of chunks; per-row similarity bound)
    bins.npy             (nbits + 2,) int64  rows with popcount c are fps[bins[c]:bins[c + 1]]
    rows.npy             (N,) int64      global input ordinal of each row (tie-break key, shard-merge key)
    lines.npy            (N,) int64      line number in the source file
    smiles_blob.npy      (B,) uint8      canonical SMILES, UTF-8, concatenated
    smiles_off.npy       (N + 1,) int64  offsets into smiles_blob
    ids_blob.npy / ids_off.npy           molecule ids, same scheme
    smiles_hash.npy      (N,) int64      sorted hashes of canonical SMILES;  smiles_hash_pos.npy: their rows
    pattern.npy          (N, 32) uint64  RDKit pattern fingerprints (substructure screen)     [optional]
    molfeat.npy          (N, F) uint8    substructure count screens, columns named in the header  [optional]
    props.npy            (N, P) float32  properties named in the header                       [optional]
    inchikey_sorted.npy  (N,) S27 sorted InChIKeys; inchikey_pos.npy: their rows              [optional]

Every array is opened memory-mapped, so loading is O(1) in N. A directory is used instead of one file
so that arrays stay page-aligned for ``np.load(mmap_mode="r")`` and a rebuild can swap it atomically.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from ._errors import IndexFormatError

FORMAT_NAME = "compscope-search-index"
FORMAT_VERSION = 2  # 2: fold.npy replaces wcounts.npy
HEADER = "header.json"


def write_index(out: Path, arrays: dict[str, np.ndarray], header: dict[str, Any], overwrite: bool) -> None:
    """Write arrays + header into ``out`` atomically (temp dir, then rename)."""
    out = Path(out)
    if out.exists() and not overwrite:
        raise IndexFormatError(f"{out} already exists; pass --overwrite (overwrite=True) or choose another --out")
    tmp = out.with_name(out.name + f".tmp-{os.getpid()}")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    manifest = {}
    for name, arr in arrays.items():
        arr = np.ascontiguousarray(arr)
        np.save(tmp / f"{name}.npy", arr, allow_pickle=False)
        manifest[name] = {"shape": list(arr.shape), "dtype": arr.dtype.str}
    doc = {"format": FORMAT_NAME, "version": FORMAT_VERSION, **header, "arrays": manifest}
    (tmp / HEADER).write_text(json.dumps(doc, indent=1))
    if out.exists():
        old = out.with_name(out.name + f".old-{os.getpid()}")
        out.rename(old)
        tmp.rename(out)
        shutil.rmtree(old) if old.is_dir() else old.unlink()
    else:
        tmp.rename(out)


def read_header(path: Path) -> dict[str, Any]:
    """Read and validate the header of an index directory."""
    path = Path(path)
    hint = "build one with `compscope search build molecules.smi --out lib.csi`"
    if not path.exists():
        raise IndexFormatError(f"index {path} does not exist; {hint}")
    if not path.is_dir() or not (path / HEADER).is_file():
        raise IndexFormatError(f"{path} is not a compscope search index (no {HEADER} inside); {hint}")
    try:
        doc = json.loads((path / HEADER).read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise IndexFormatError(f"{path}/{HEADER} is corrupt ({exc}); rebuild the index ({hint})") from exc
    if not isinstance(doc, dict) or doc.get("format") != FORMAT_NAME:
        raise IndexFormatError(f"{path} is not a compscope search index (foreign header); {hint}")
    if doc.get("version") != FORMAT_VERSION:
        raise IndexFormatError(
            f"{path} has index format version {doc.get('version')}, this compscope reads version "
            f"{FORMAT_VERSION}; rebuild the index with this version"
        )
    return doc


def open_arrays(path: Path, header: dict[str, Any], in_memory: bool = False) -> dict[str, np.ndarray]:
    """Open every array of the manifest (memory-mapped unless ``in_memory``), checking shape and dtype."""
    out = {}
    for name, meta in header["arrays"].items():
        f = Path(path) / f"{name}.npy"
        try:
            arr = np.load(f, mmap_mode=None if in_memory else "r", allow_pickle=False)
        except FileNotFoundError as exc:
            raise IndexFormatError(f"index {path} is incomplete: {f.name} is missing; rebuild the index") from exc
        except (ValueError, OSError, EOFError) as exc:
            raise IndexFormatError(
                f"index {path} is truncated or corrupt: {f.name} cannot be read ({exc}); rebuild the index"
            ) from exc
        if list(arr.shape) != meta["shape"] or arr.dtype.str != meta["dtype"]:
            raise IndexFormatError(
                f"index {path} is inconsistent: {f.name} has shape {arr.shape} {arr.dtype.str}, the header says "
                f"{meta['shape']} {meta['dtype']}; the file was truncated or replaced, rebuild the index"
            )
        out[name] = arr
    return out


def pack_strings(strings: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """UTF-8 blob + offsets: ``blob[off[i]:off[i + 1]]`` is string i."""
    enc = [s.encode() for s in strings]
    off = np.zeros(len(enc) + 1, dtype=np.int64)
    if enc:
        np.cumsum(np.fromiter((len(e) for e in enc), dtype=np.int64, count=len(enc)), out=off[1:])
    return np.frombuffer(b"".join(enc), dtype=np.uint8).copy(), off


def unpack_strings(blob: np.ndarray, off: np.ndarray, pos=None) -> list[str]:
    """Strings at positions ``pos`` (all if None).

    Slices a plain buffer view of the (memory-mapped) blob: slicing the ``np.memmap`` itself builds a memmap
    object per string (~8 µs each, most of the cost of returning a page of 100 hits).
    """
    if pos is None:
        pos = range(len(off) - 1)
    else:
        pos = np.asarray(pos, dtype=np.int64)
    if len(pos) == 0:
        return []
    if not isinstance(pos, range) and len(pos) <= _GATHER_MAX:  # a page of hits: one gather, one decode
        arr = np.asarray(blob).view(np.ndarray)
        lo, hi = np.asarray(off[pos]), np.asarray(off[pos + 1])
        ln = hi - lo
        end = np.cumsum(ln)
        start = end - ln
        raw = arr[np.arange(int(end[-1])) + np.repeat(lo - start, ln)].tobytes()
        if raw.isascii():  # byte offsets are character offsets
            text = raw.decode("ascii")
            return [text[a:b] for a, b in zip(start.tolist(), end.tolist())]
    mv = memoryview(np.asarray(blob).view(np.ndarray)) if len(blob) else memoryview(b"")
    lo = np.asarray(off[pos]).tolist() if not isinstance(pos, range) else np.asarray(off[:-1]).tolist()
    hi = np.asarray(off[np.asarray(pos) + 1]).tolist() if not isinstance(pos, range) else np.asarray(off[1:]).tolist()
    return [bytes(mv[a:b]).decode() for a, b in zip(lo, hi)]


_GATHER_MAX = 4096
"""Up to this many strings, :func:`unpack_strings` gathers their bytes in one numpy call and decodes once."""
