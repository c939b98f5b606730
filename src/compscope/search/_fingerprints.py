"""Fingerprint settings and packing: RDKit bit vectors -> rows of uint64 words.

A fingerprint of ``nbits`` bits is stored as ``ceil(nbits / 64)`` little-endian uint64 words, so
that the similarity kernels can AND words and count bits with one ``popcnt`` per word.

Kinds:

- ``morgan``: ECFP-like Morgan fingerprint (Rogers & Hahn, J. Chem. Inf. Model. 50, 742 (2010)),
  ``radius`` 2 and ``nbits`` 2048 by default, RDKit's ``rdFingerprintGenerator`` (the same bits as
  FPSim2's ``Morgan`` type with the same radius and size).
- ``fcfp``: Morgan with pharmacophoric feature invariants (FCFP).
- ``maccs``: the 166 MACCS keys (167 bits in RDKit, padded to 192).

``counts=True`` uses RDKit's count simulation (each feature sets up to 4 bits according to its count),
so count information enters Tanimoto while the kernels stay bitwise.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from ._errors import FingerprintMismatchError, QueryError

KINDS = ("morgan", "fcfp", "maccs")
PATTERN_BITS = 2048  # RDKit PatternFingerprint size used for the substructure screen


@dataclass(frozen=True)
class FingerprintSpec:
    """Fingerprint settings; stored in the index header and checked against every query.

    Args:
        kind: ``"morgan"`` (ECFP), ``"fcfp"`` or ``"maccs"``.
        radius: Morgan radius (ignored for MACCS).
        nbits: number of bits (forced to 167 for MACCS).
        counts: use count simulation instead of plain presence bits.
    """

    kind: str = "morgan"
    radius: int = 2
    nbits: int = 2048
    counts: bool = False

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise QueryError(f"unknown fingerprint kind {self.kind!r}; choose one of {', '.join(KINDS)}")
        if self.kind == "maccs":
            object.__setattr__(self, "nbits", 167)
            object.__setattr__(self, "radius", 0)
        elif not (1 <= int(self.radius) <= 6):
            raise QueryError(f"radius must be in 1..6, got {self.radius}")
        elif not (64 <= int(self.nbits) <= 16384):
            raise QueryError(f"nbits must be in 64..16384, got {self.nbits}")

    @property
    def nwords(self) -> int:
        """Number of uint64 words per fingerprint."""
        return (self.nbits + 63) // 64

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> FingerprintSpec:
        return cls(**{k: d[k] for k in ("kind", "radius", "nbits", "counts") if k in d})

    def check_same(self, other: FingerprintSpec, what: str = "query") -> None:
        """Raise :class:`FingerprintMismatchError` unless ``other`` equals these (index) settings."""
        if other != self:
            raise FingerprintMismatchError(
                f"the {what} uses fingerprint settings {other.to_dict()} but the index was built with "
                f"{self.to_dict()}; query with the index's settings or rebuild the index "
                f"(compscope search build --fp {other.kind} --radius {other.radius} --nbits {other.nbits})"
            )


class Fingerprinter:
    """Computes packed fingerprints for one :class:`FingerprintSpec` (holds the RDKit generator)."""

    def __init__(self, spec: FingerprintSpec):
        from rdkit.Chem import rdFingerprintGenerator

        self.spec = spec
        self._gen = None
        if spec.kind in ("morgan", "fcfp"):
            kw: dict[str, Any] = {"radius": spec.radius, "fpSize": spec.nbits, "countSimulation": spec.counts}
            if spec.kind == "fcfp":
                kw["atomInvariantsGenerator"] = rdFingerprintGenerator.GetMorganFeatureAtomInvGen()
            self._gen = rdFingerprintGenerator.GetMorganGenerator(**kw)

    def bits(self, mol) -> np.ndarray:
        """0/1 array of length ``nbits`` for one RDKit molecule."""
        if self._gen is not None:
            return self._gen.GetFingerprintAsNumPy(mol)
        from rdkit import DataStructs
        from rdkit.Chem import rdMolDescriptors

        arr = np.zeros(self.spec.nbits, dtype=np.uint8)
        DataStructs.ConvertToNumpyArray(rdMolDescriptors.GetMACCSKeysFingerprint(mol), arr)
        return arr

    def packed(self, mols: list) -> np.ndarray:
        """Packed fingerprints of a list of molecules. Shape ``(len(mols), nwords)`` uint64.

        One C++ call for the whole list (Morgan/FCFP), then each bit vector's bytes (RDKit's FPS hex text: bit i
        in byte i // 8 at position i % 8, the layout of :func:`pack_bits`) go straight into the rows.
        """
        if self._gen is not None:
            fps = self._gen.GetFingerprints(list(mols), numThreads=1)
        else:
            from rdkit.Chem import rdMolDescriptors

            fps = [rdMolDescriptors.GetMACCSKeysFingerprint(m) for m in mols]
        return _pack_ebvs(fps, self.spec.nwords)


def _pack_ebvs(fps: list, nwords: int) -> np.ndarray:
    """RDKit ``ExplicitBitVect`` list -> ``(len(fps), nwords)`` uint64 rows (zero-padded to whole words)."""
    from rdkit import DataStructs

    nb = 8 * nwords
    raw = b"".join(bytes.fromhex(DataStructs.BitVectToFPSText(fp)).ljust(nb, b"\0") for fp in fps)
    return np.frombuffer(raw, dtype="<u8").reshape(len(fps), nwords).astype(np.uint64)


def pack_bits(bits: np.ndarray) -> np.ndarray:
    """Pack 0/1 arrays ``(M, 64*W)`` into ``(M, W)`` uint64 (bit i of the fingerprint = bit i%64 of word i//64)."""
    bits = np.ascontiguousarray(bits, dtype=np.uint8)
    packed = np.packbits(bits, axis=-1, bitorder="little")  # (M, 8W) uint8
    return np.ascontiguousarray(packed).view("<u8").astype(np.uint64, copy=False)


def pattern_fingerprints(mols: list, nbits: int = PATTERN_BITS) -> np.ndarray:
    """RDKit pattern fingerprints (substructure screen), packed. Shape ``(len(mols), nbits // 64)``."""
    from rdkit import Chem

    return _pack_ebvs([Chem.PatternFingerprint(m, nbits) for m in mols], nbits // 64)


def as_query_fingerprint(fp: Any, spec: FingerprintSpec) -> np.ndarray:
    """Turn a user-given fingerprint into a packed ``(nwords,)`` uint64 row, checking its size.

    Accepts an RDKit ``ExplicitBitVect``, a packed uint64 array of ``nwords`` words, or a 0/1 array
    of ``nbits`` entries.
    """
    if hasattr(fp, "GetNumBits"):
        n = fp.GetNumBits()
        if n != spec.nbits:
            raise FingerprintMismatchError(
                f"query fingerprint has {n} bits but the index uses {spec.nbits}-bit {spec.kind} fingerprints; "
                "compute the query with the index's settings (see SearchIndex.spec)"
            )
        from rdkit import DataStructs

        arr = np.zeros(spec.nbits, dtype=np.uint8)
        DataStructs.ConvertToNumpyArray(fp, arr)
        fp = arr
    a = np.asarray(fp)
    if a.dtype == np.uint64 and a.shape == (spec.nwords,):
        return np.ascontiguousarray(a)
    if a.ndim == 1 and a.shape[0] == spec.nbits and np.isin(a, (0, 1)).all():
        row = np.zeros((1, spec.nwords * 64), dtype=np.uint8)
        row[0, : spec.nbits] = a
        return pack_bits(row)[0]
    raise FingerprintMismatchError(
        f"query fingerprint of shape {a.shape} and dtype {a.dtype} does not fit the index "
        f"({spec.nbits}-bit {spec.kind}: pass {spec.nwords} uint64 words or {spec.nbits} 0/1 values)"
    )
