"""Index build and append: parallel over processes, with a progress bar and an invalid-SMILES report."""

from __future__ import annotations

import itertools
import json
import logging
import multiprocessing as mp
import shutil
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ._errors import BuildInterrupted, IndexFormatError, InputFileError
from ._fingerprints import PATTERN_BITS, FingerprintSpec
from ._format import open_arrays, pack_strings, read_header, unpack_strings, write_index
from ._molecules import MOLFEAT, PROPERTIES, process_chunk, smiles_hash
from ._reader import iter_records

log = logging.getLogger(__name__)


@dataclass
class BuildReport:
    """What a build/append did. ``invalid`` lists ``(line_number, smiles)`` of every rejected record."""

    path: Path
    n_molecules: int
    n_added: int
    n_invalid: int
    invalid: list[tuple[int, str]] = field(default_factory=list)
    seconds: float = 0.0

    def summary(self) -> str:
        s = f"{self.path}: {self.n_molecules} molecules ({self.n_added} added, {self.n_invalid} invalid SMILES"
        return s + f") in {self.seconds:.1f} s"


def _chunks(records, size):
    it = iter(records)
    while True:
        chunk = list(itertools.islice(it, size))
        if not chunk:
            return
        yield chunk


def _save_part(ckpt: Path, j: int, res: dict) -> None:
    """Checkpoint one processed chunk as ``chunk_<j>.npz`` (written to a temp name, then renamed)."""
    arrays = {k: v for k, v in res.items() if isinstance(v, np.ndarray)}
    arrays["ids"] = np.asarray(res["ids"], dtype=str)
    arrays["smiles"] = np.asarray(res["smiles"], dtype=str)
    arrays["invalid_lines"] = np.asarray([ln for ln, _ in res["invalid"]], dtype=np.int64)
    arrays["invalid_smiles"] = np.asarray([s for _, s in res["invalid"]], dtype=str)
    tmp = ckpt / f"chunk_{j:07d}.tmp.npz"
    np.savez(tmp, **arrays)
    tmp.rename(ckpt / f"chunk_{j:07d}.npz")


def _load_part(f: Path) -> dict:
    with np.load(f, allow_pickle=False) as z:
        d = {k: z[k] for k in z.files}
    res = {k: v for k, v in d.items() if k not in ("ids", "smiles", "invalid_lines", "invalid_smiles")}
    res["ids"], res["smiles"] = d["ids"].tolist(), d["smiles"].tolist()
    res["invalid"] = list(zip(d["invalid_lines"].tolist(), d["invalid_smiles"].tolist()))
    return res


def _open_checkpoint(ckpt: Path, meta: dict, resume: bool) -> set[int]:
    """Prepare the checkpoint folder; return the indices of the chunks already done."""
    if ckpt.exists() and not resume:
        shutil.rmtree(ckpt)
    ckpt.mkdir(parents=True, exist_ok=True)
    mf = ckpt / "meta.json"
    if mf.exists():
        from compscope.train import check_unchanged  # the one resume guard

        check_unchanged(json.loads(mf.read_text()), meta, where=f"the interrupted build in {ckpt}",
                        hint="rerun with the same source and options, or drop --resume to start over")
    else:
        mf.write_text(json.dumps(meta))
    # not only a leading run: a stopped parallel build also keeps chunks that finished ahead of an earlier one
    done = {int(f.name[6:13]) for f in ckpt.glob("chunk_[0-9][0-9][0-9][0-9][0-9][0-9][0-9].npz")}
    if done:
        log.info("resuming from %s: %d chunks already processed", ckpt, len(done))
    return done


class _Stop(KeyboardInterrupt):
    """Raised by the SIGTERM handler of a build in progress: an interrupt like Ctrl-C's KeyboardInterrupt (a
    control-flow signal, not an error, so no ``except Exception`` on the way swallows it), carrying the signal."""


def _raise_stop(signum, frame):
    raise _Stop(signum)


def _ignore_sigint() -> None:  # pool worker initializer: Ctrl-C reaches the whole process group; the parent stops us
    signal.signal(signal.SIGINT, signal.SIG_IGN)


class _Signals:
    """Within ``with``: SIGTERM raises :class:`_Stop` (SIGINT keeps raising KeyboardInterrupt); ``hold()`` ignores
    both while a stop is being cleaned up. Restores the previous handlers on exit; a no-op off the main thread."""

    def __enter__(self):
        self.old = {}
        if threading.current_thread() is threading.main_thread():
            self.old = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
            signal.signal(signal.SIGTERM, _raise_stop)
        return self

    def hold(self) -> None:
        for s in self.old:
            signal.signal(s, signal.SIG_IGN)

    def __exit__(self, *exc):
        for s, h in self.old.items():
            signal.signal(s, h)


def _run_chunks(source, spec, smiles_col, id_col, n_jobs, chunk_size, opts, progress, max_invalid_fraction,
                ckpt: Path | None = None, resume: bool = False):
    """Yield processed chunks in input order; raise early if the file does not look like SMILES.

    With ``ckpt``, every processed chunk is saved there; ``resume`` reloads the saved chunks and processes only
    the rest. SIGTERM or SIGINT stops the worker processes, saves every chunk that had finished and raises
    :class:`BuildInterrupted`.
    """
    records = iter_records(source, smiles_col=smiles_col, id_col=id_col)
    done: set[int] = set()
    if ckpt is not None:
        meta = {"source": str(Path(source).resolve()), "spec": spec.to_dict(), "opts": list(opts),
                "chunk_size": chunk_size, "smiles_col": smiles_col, "id_col": id_col}
        done = _open_checkpoint(ckpt, meta, resume)

    def task_iter():  # (j, None) for a checkpointed chunk: consumed from the file but not recomputed
        for j, chunk in enumerate(_chunks(records, chunk_size)):
            yield j, (None if j in done else (chunk, spec.to_dict(), *opts))

    tasks = task_iter()
    prog = None
    if progress:
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

        prog = Progress(TextColumn("[bold]indexing"), BarColumn(), TextColumn("{task.completed:,} molecules"),
                        TimeElapsedColumn(), transient=False)
        prog.start()
        bar = prog.add_task("build", total=None)
    first = True

    def check(res):
        nonlocal first
        if first:
            first = False
            n_bad, n_all = len(res["invalid"]), len(res["invalid"]) + len(res["smiles"])
            if n_all and n_bad / n_all > max_invalid_fraction:
                ex = "; ".join(f"line {ln}: {s[:40]!r}" for ln, s in res["invalid"][:3])
                raise InputFileError(
                    f"{source}: {n_bad} of the first {n_all} records are not valid SMILES ({ex}); this does not "
                    "look like a SMILES file. Pass a .smi file (SMILES [id] per line) or a CSV with a header and "
                    "--smiles-col naming the SMILES column"
                )
        if prog is not None:
            prog.update(bar, advance=len(res["smiles"]) + len(res["invalid"]))
        return res

    def save(j, res):
        if ckpt is not None and j not in done:
            _save_part(ckpt, j, res)
            done.add(j)
        return res

    def load(j):
        return _load_part(ckpt / f"chunk_{j:07d}.npz")

    pool = None
    pending: list[tuple[int, object]] = []  # (chunk, AsyncResult or None if checkpointed), in input order
    with _Signals() as sig:
        try:
            if n_jobs <= 1:
                for j, t in tasks:
                    yield check(load(j) if t is None else save(j, process_chunk(t)))
            else:
                # never fork a process that may hold threads (numba, ray, uvicorn); multiprocessing.Pool (not
                # concurrent.futures) because its terminate() stops busy workers at once
                pool = mp.get_context("spawn").Pool(n_jobs, initializer=_ignore_sigint)

                def oldest():  # popped once saved: a stop in the middle of saving it saves it again
                    j0, r0 = pending[0]
                    res = load(j0) if r0 is None else save(j0, r0.get())
                    pending.pop(0)
                    return res

                for j, t in tasks:  # bounded look-ahead keeps memory flat on huge files
                    pending.append((j, None if t is None else pool.apply_async(process_chunk, (t,))))
                    while len(pending) > 2 * n_jobs or (pending and pending[0][1] is None):
                        yield check(oldest())
                while pending:
                    yield check(oldest())
                pool.close()
                pool.join()
                pool = None
        except (_Stop, KeyboardInterrupt) as exc:
            sig.hold()  # a second Ctrl-C must not cut the clean-up short
            signum = exc.args[0] if isinstance(exc, _Stop) else signal.SIGINT
            if pool is not None:
                pool.terminate()  # SIGTERM to every worker, then join them: no orphans
                pool.join()
                pool = None
            for j0, r0 in pending:  # keep what finished, also ahead of an unfinished earlier chunk
                if r0 is not None and r0.ready() and r0.successful():
                    save(j0, r0.get())
            for f in ckpt.glob("chunk_*.tmp.npz") if ckpt is not None else ():  # a save the signal cut short
                f.unlink(missing_ok=True)
            name = signal.Signals(signum).name
            if ckpt is None:
                raise BuildInterrupted(f"stopped by {name}; nothing was changed",
                                       hint="rerun the same command", signum=signum) from None
            raise BuildInterrupted(
                f"build stopped by {name}; {len(done)} finished chunks of {chunk_size} molecules are kept in {ckpt}",
                hint="rerun the same command with --resume to continue where it stopped", signum=signum) from None
        finally:
            if pool is not None:  # an error (bad input, a failed chunk): stop the workers too
                pool.terminate()
                pool.join()
            if prog is not None:
                prog.stop()


def _collect(chunks, opts) -> dict:
    with_inchikey, with_pattern, with_props = opts
    acc: dict[str, list] = {k: [] for k in ("lines", "ids", "smiles", "fps", "inchikey", "pattern", "molfeat", "props")}
    invalid: list[tuple[int, str]] = []
    keys = ("lines", "fps") + (("inchikey",) if with_inchikey else ()) + (("pattern",) if with_pattern else ()) \
        + (("props",) if with_props else ())
    for res in chunks:
        try:
            invalid.extend(res["invalid"])
            for k in keys:
                acc[k].append(res[k])
            if with_pattern and "molfeat" in res:  # absent in checkpoints of an older build
                acc["molfeat"].append(res["molfeat"])
            acc["ids"].extend(res["ids"])
            acc["smiles"].extend(res["smiles"])
        except (_Stop, KeyboardInterrupt) as exc:  # a signal that lands here is handled by _run_chunks' clean-up
            chunks.throw(exc)
    out = {"ids": acc["ids"], "smiles": acc["smiles"], "invalid": invalid}
    if acc["molfeat"] and len(acc["molfeat"]) != len(acc["pattern"]):
        acc["molfeat"] = []
    for k in ("lines", "fps", "inchikey", "pattern", "molfeat", "props"):
        if acc[k]:
            out[k] = np.concatenate(acc[k])
    return out


def _assemble(spec: FingerprintSpec, data: dict, rows: np.ndarray) -> tuple[dict, dict]:
    """Sort by (popcount, row) and lay the arrays out in the index format."""
    from . import _kernels as K

    fps = data["fps"]  # (N, W)
    pop = K.popcounts(fps)  # (N,)
    order = np.lexsort((rows, pop))
    pop = pop[order]
    fps_sorted = fps[order]  # (N, W)
    bins = np.searchsorted(pop, np.arange(spec.nbits + 2), side="left").astype(np.int64)
    smiles = [data["smiles"][i] for i in order]
    ids = [data["ids"][i] for i in order]
    s_blob, s_off = pack_strings(smiles)
    i_blob, i_off = pack_strings(ids)
    hashes = np.fromiter((smiles_hash(s) for s in smiles), dtype=np.int64, count=len(smiles))
    h_pos = np.argsort(hashes, kind="stable")
    arrays = {
        "fps": fps_sorted, "fold": K.fold_fps(fps_sorted, K.fold_width(fps_sorted.shape[1])), "bins": bins,
        "rows": rows[order],
        "lines": data["lines"][order],
        "smiles_blob": s_blob, "smiles_off": s_off, "ids_blob": i_blob, "ids_off": i_off,
        "smiles_hash": hashes[h_pos], "smiles_hash_pos": h_pos.astype(np.int64),
    }
    if "pattern" in data:
        arrays["pattern"] = data["pattern"][order]
    if "molfeat" in data:
        arrays["molfeat"] = data["molfeat"][order]
    if "props" in data:
        arrays["props"] = data["props"][order]
    if "inchikey" in data:
        ik = data["inchikey"][order]
        ik_pos = np.argsort(ik, kind="stable")
        arrays["inchikey_sorted"] = ik[ik_pos]
        arrays["inchikey_pos"] = ik_pos.astype(np.int64)
    header = {
        "n": int(len(order)), "fingerprint": spec.to_dict(),
        "pattern_bits": PATTERN_BITS if "pattern" in data else 0,
        "properties": list(PROPERTIES) if "props" in data else [],
        "molfeat": list(MOLFEAT) if "molfeat" in data else [],
        "inchikey": "inchikey" in data,
    }
    return arrays, header


def build_index(
    source: str | Path,
    out: str | Path,
    spec: FingerprintSpec | None = None,
    *,
    smiles_col: str | None = None,
    id_col: str | None = None,
    n_jobs: int = 2,
    chunk_size: int = 5000,
    inchikey: bool = True,
    pattern: bool = True,
    properties: bool = True,
    progress: bool = False,
    overwrite: bool = False,
    max_invalid_fraction: float = 0.5,
    checkpoint: bool = True,
    resume: bool = False,
) -> BuildReport:
    """Build a ``.csi`` index from a SMILES/CSV file.

    Args:
        source: ``.smi``/``.csv``/``.tsv`` file, optionally ``.gz`` (see :func:`iter_records`).
        out: index directory to write (``lib.csi``).
        spec: fingerprint settings (default Morgan radius 2, 2048 bits).
        smiles_col, id_col: CSV columns (name or 0-based index).
        n_jobs: worker processes (1 = in-process).
        chunk_size: records per work unit.
        inchikey, pattern, properties: store InChIKeys (exact match by key), pattern fingerprints
            (substructure screen) and :data:`PROPERTIES` (filters). Similarity search needs none of them.
        progress: show a rich progress bar.
        overwrite: replace an existing index at ``out``.
        max_invalid_fraction: if more of the first chunk is invalid, the file is rejected as not SMILES.
        checkpoint: save every processed chunk under ``<out>.parts/`` (removed when the build succeeds).
        resume: continue an interrupted build from its checkpoint (same source and options).

    Returns:
        A :class:`BuildReport`; every invalid record is listed, and also written to ``out/invalid.tsv``.

    Raises:
        InputFileError: unreadable/binary/non-SMILES file or no valid molecule at all.
    """
    t0 = time.perf_counter()
    if int(chunk_size) < 1:
        raise InputFileError(f"chunk_size must be a positive number of molecules, got {chunk_size}")
    if Path(out).exists() and not overwrite:  # fail before the work, not after it
        raise IndexFormatError(f"{out} already exists; pass --overwrite (overwrite=True) or choose another --out")
    spec = spec or FingerprintSpec()
    opts = (inchikey, pattern, properties)
    ckpt = Path(out).with_name(Path(out).name + ".parts") if checkpoint else None
    data = _collect(_run_chunks(source, spec, smiles_col, id_col, n_jobs, chunk_size, opts, progress,
                                max_invalid_fraction, ckpt, resume), opts)
    if not data["smiles"]:
        raise InputFileError(
            f"{source}: no valid SMILES found ({len(data['invalid'])} invalid records); pass a file with one "
            "SMILES per line or a CSV with --smiles-col"
        )
    rows = np.arange(len(data["smiles"]), dtype=np.int64)
    arrays, header = _assemble(spec, data, rows)
    header["sources"] = [str(source)]
    header["n_invalid"] = len(data["invalid"])
    write_index(Path(out), arrays, header, overwrite=overwrite)
    _write_invalid(Path(out), data["invalid"])
    if ckpt is not None:
        shutil.rmtree(ckpt, ignore_errors=True)
    rep = BuildReport(Path(out), len(rows), len(rows), len(data["invalid"]), data["invalid"],
                      time.perf_counter() - t0)
    log.info(rep.summary())
    return rep


def _write_invalid(out: Path, invalid: list[tuple[int, str]], source: str | None = None) -> None:
    with (out / "invalid.tsv").open("a") as fh:
        for ln, s in invalid:
            fh.write(f"{source + ':' if source else ''}{ln}\t{s}\n")


def append_index(
    index: str | Path,
    source: str | Path,
    *,
    smiles_col: str | None = None,
    id_col: str | None = None,
    n_jobs: int = 2,
    chunk_size: int = 5000,
    progress: bool = False,
    max_invalid_fraction: float = 0.5,
) -> BuildReport:
    """Append the molecules of ``source`` to an existing index (same fingerprint settings and options).

    New molecules get global rows after the existing ones; the merged index is re-sorted by popcount and
    swapped in atomically, so readers never see a half-written index.
    """
    t0 = time.perf_counter()
    index = Path(index)
    hdr = read_header(index)
    old = open_arrays(index, hdr)
    spec = FingerprintSpec.from_dict(hdr["fingerprint"])
    opts = (bool(hdr["inchikey"]), bool(hdr["pattern_bits"]), bool(hdr["properties"]))
    new = _collect(_run_chunks(source, spec, smiles_col, id_col, n_jobs, chunk_size, opts, progress,
                               max_invalid_fraction), opts)
    n_old, n_new = int(hdr["n"]), len(new["smiles"])
    if n_new:
        merged = {
            "smiles": unpack_strings(old["smiles_blob"], old["smiles_off"]) + new["smiles"],
            "ids": unpack_strings(old["ids_blob"], old["ids_off"]) + new["ids"],
            "fps": np.concatenate([old["fps"], new["fps"]]),
            "lines": np.concatenate([old["lines"], new["lines"]]),
        }
        if opts[0]:
            ik_old = np.empty(n_old, "S27")
            ik_old[old["inchikey_pos"]] = old["inchikey_sorted"]
            merged["inchikey"] = np.concatenate([ik_old, new["inchikey"]])
        if opts[1]:
            merged["pattern"] = np.concatenate([old["pattern"], new["pattern"]])
            if "molfeat" in old and "molfeat" in new and hdr.get("molfeat") == list(MOLFEAT):
                merged["molfeat"] = np.concatenate([old["molfeat"], new["molfeat"]])
        if opts[2]:
            merged["props"] = np.concatenate([old["props"], new["props"]])
        start = int(old["rows"].max()) + 1 if n_old else 0
        rows = np.concatenate([old["rows"], start + np.arange(n_new, dtype=np.int64)])
        arrays, header = _assemble(spec, merged, rows)
        header["sources"] = list(hdr.get("sources", [])) + [str(source)]
        header["n_invalid"] = int(hdr.get("n_invalid", 0)) + len(new["invalid"])
        del old
        invalid_old = (index / "invalid.tsv").read_text() if (index / "invalid.tsv").exists() else ""
        write_index(index, arrays, header, overwrite=True)
        (index / "invalid.tsv").write_text(invalid_old)
    _write_invalid(index, new["invalid"], str(source))
    rep = BuildReport(index, n_old + n_new, n_new, len(new["invalid"]), new["invalid"], time.perf_counter() - t0)
    log.info(rep.summary())
    return rep
