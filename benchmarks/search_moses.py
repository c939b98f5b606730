"""Benchmark compscope.search against FPSim2 (similarity) and RDKit SubstructLibrary (substructure) on MOSES.

Database: the first 1,000,000 SMILES of MOSES train; queries: 100 SMILES sampled with seed 0 from MOSES
test. Both engines get the same molecules and the same fingerprints (Morgan radius 2, 2048 bits) in the
same run, single core for every per-query figure. Writes ``benchmarks/results/search_moses.json``.

Usage::

    COMPSCOPE_DATA=/work/shared/data nice -n 10 python benchmarks/search_moses.py [--n 1000000] \
        [--workdir /tmp/compscope_search_bench] [--reuse]

``--reuse`` keeps built indexes in ``--workdir`` and reuses them (and their recorded build times).
"""

from __future__ import annotations

import argparse
import gzip
import json
import logging
import os
import sys
import time
from pathlib import Path

import numpy as np

if not __package__:  # run as `python benchmarks/<name>.py`: put the repository root on the path
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks._common import write_result  # noqa: E402

SUBSTRUCTURE_QUERIES = {  # name -> SMARTS/SMILES, from unselective to rare
    "benzene": "c1ccccc1", "pyridine": "c1ccncc1", "amide": "[CX3](=O)[NX3]",
    "carboxylic_acid": "C(=O)[OX2H1]", "thiophene": "c1ccsc1", "piperazine": "C1CNCCN1",
    "sulfonamide": "S(=O)(=O)N", "indole": "c1ccc2[nH]ccc2c1", "furan": "c1ccoc1", "morpholine": "C1COCCN1",
    "urea": "[NX3]C(=O)[NX3]", "trifluoromethyl": "C(F)(F)F", "nitrile": "C#N", "tetrazole": "c1nnn[nH]1",
    "quinoline": "c1ccc2ncccc2c1", "ester": "[CX3](=O)[OX2][#6]", "aryl_halide": "c[Cl,Br,I]",
    "piperidine": "C1CCNCC1", "benzimidazole": "c1ccc2[nH]cnc2c1", "adamantane": "C1C2CC3CC1CC(C2)C3",
}

TARGETS = {  # single-core CPU ms per query, seconds, fraction
    "query_mean_ms": 15, "hit_set_agreement": 1.0, "load_s": 2, "build_s_per_core_on_2_cores": 120,
    "substructure_median_ms": 50,
}
"""The benchmark's targets (stored in the JSON)."""


def cpu_s() -> float:
    """CPU seconds of this process and its finished children (load-independent build cost)."""
    import resource

    a, b = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return a.ru_utime + a.ru_stime + b.ru_utime + b.ru_stime


def rss_mb() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS"):
                return int(line.split()[1]) / 1024
    return float("nan")


def stats_ms(ts: list[float], cpu: list[float] | None = None) -> dict:
    a = np.asarray(ts) * 1e3
    out = {"mean_ms": float(a.mean()), "median_ms": float(np.median(a)), "p95_ms": float(np.percentile(a, 95)),
           "max_ms": float(a.max()), "n": len(a)}
    if cpu is not None:  # thread CPU time: what the query costs on an otherwise idle core
        c = np.asarray(cpu) * 1e3
        out |= {"cpu_mean_ms": float(c.mean()), "cpu_median_ms": float(np.median(c)),
                "cpu_p95_ms": float(np.percentile(c, 95))}
    return out


def moses_path(name: str) -> Path:
    from compscope.data import dataset_path

    return Path(dataset_path("moses", name))


def prepare(workdir: Path, n: int) -> tuple[Path, list[str]]:
    smi = workdir / f"moses_train_{n}.smi"
    if not smi.exists():
        with gzip.open(moses_path("train.csv.gz"), "rt") as fh, smi.open("w") as out:
            next(fh)
            for i, line in enumerate(fh):
                if i >= n:
                    break
                out.write(f"{line.strip()} {i}\n")
    with gzip.open(moses_path("test.csv.gz"), "rt") as fh:
        test = [ln.strip() for ln in fh][1:]
    rng = np.random.default_rng(0)
    queries = [test[i] for i in rng.choice(len(test), 100, replace=False)]
    return smi, queries


BUILDS = {  # name -> (index directory, build options)
    "simonly": ("lib_simonly.csi", {"inchikey": False, "pattern": False, "properties": False}),  # = what FPSim2 builds
    "subs": ("lib_subs.csi", {"inchikey": False, "properties": False}),  # + pattern fingerprints
    "full": ("lib_full.csi", {}),  # + InChIKeys and properties
}


def build_ours(smi: Path, workdir: Path, reuse: bool, which: str) -> dict:
    """Build one of :data:`BUILDS`, recording wall and CPU time (worker processes included)."""
    from compscope.search import build_index

    name, kw = BUILDS[which]
    rec_path = workdir / f"build_ours_{which}_{smi.stem}.json"
    if reuse and rec_path.exists() and (workdir / name).exists():
        return json.loads(rec_path.read_text()) | {"reused": True}
    t, c = time.perf_counter(), cpu_s()
    rep = build_index(smi, workdir / name, n_jobs=2, progress=False, overwrite=True, chunk_size=10000, **kw)
    rec = {"wall_s": time.perf_counter() - t, "cpu_s": cpu_s() - c, "loadavg_after": list(os.getloadavg()),
           "n_molecules": rep.n_molecules, "n_invalid": rep.n_invalid,
           "index_bytes": sum(f.stat().st_size for f in (workdir / name).iterdir()),
           "cpu_s_per_core_on_2_cores": (cpu_s() - c) / 2}
    rec_path.write_text(json.dumps(rec))
    return rec


def build_fpsim2(smi: Path, workdir: Path, reuse: bool) -> dict:
    from FPSim2.io import create_db_file

    tag = "" if smi.stem.endswith("_1000000") else "_" + smi.stem.rsplit("_", 1)[-1]
    h5 = workdir / f"fpsim2{tag}.h5"
    rec_path = workdir / f"build_fpsim2{tag}.json"
    if reuse and rec_path.exists() and h5.exists():
        return json.loads(rec_path.read_text()) | {"reused": True}
    t, c = time.perf_counter(), cpu_s()
    create_db_file(str(smi), str(h5), "smiles", "Morgan", {"radius": 2, "fpSize": 2048})
    rec = {"build_s": time.perf_counter() - t, "build_cpu_s": cpu_s() - c, "file_bytes": h5.stat().st_size,
           "loadavg_after": list(os.getloadavg())}
    rec_path.write_text(json.dumps(rec))
    return rec


def similarity_bench(workdir: Path, queries: list[str], index_name: str = "lib_simonly.csi",
                     h5_name: str | None = "fpsim2.h5") -> dict:
    """Load times, RSS and per-query times of both engines (FPSim2 skipped when ``h5_name`` is None)."""
    from FPSim2 import FPSim2Engine

    from compscope.search import SearchIndex

    out: dict = {}
    r0 = rss_mb()
    t = time.perf_counter()
    idx = SearchIndex.open(workdir / index_name)
    out["n_database"], out["index"], out["fpsim2_file"] = len(idx), index_name, h5_name
    out["ours_load_mmap_s"] = time.perf_counter() - t
    t = time.perf_counter()
    idx_mem = SearchIndex.open(workdir / index_name, in_memory=True)
    out["ours_load_in_memory_s"] = time.perf_counter() - t
    out["ours_rss_in_memory_mb"] = rss_mb() - r0
    del idx_mem
    out["ours_fps_mb"] = idx.fps.nbytes / 2**20
    eng = None
    if h5_name is not None:
        r1 = rss_mb()
        t = time.perf_counter()
        eng = FPSim2Engine(str(workdir / h5_name), in_memory_fps=True)
        out["fpsim2_load_s"] = time.perf_counter() - t
        out["fpsim2_rss_mb"] = rss_mb() - r1
        eng.similarity(queries[0], 0.7, n_workers=1)
    idx.top_k(queries[0], k=10)  # compile/warm the kernels and page in the fingerprints
    idx.similarity(queries[0], 0.7)
    res: dict = {}
    for name, ours_fn, fp_fn in [
        ("threshold_0.7", lambda q: idx.similarity(q, 0.7), lambda q: eng.similarity(q, 0.7, n_workers=1)),
        ("top10", lambda q: idx.top_k(q, k=10), lambda q: eng.top_k(q, k=10, threshold=0.0, n_workers=1)),
    ]:
        t_ours, t_fp, c_ours, c_fp, same_set, same_scores, same_mod_ties, n_hits = [], [], [], [], 0, 0, 0, []
        for q in queries:
            t, c = time.perf_counter(), time.thread_time()
            r = ours_fn(q)
            t_ours.append(time.perf_counter() - t)
            c_ours.append(time.thread_time() - c)
            n_hits.append(len(r))
            if eng is None:
                continue
            t, c = time.perf_counter(), time.thread_time()
            f = fp_fn(q)
            t_fp.append(time.perf_counter() - t)
            c_fp.append(time.thread_time() - c)
            a = {(int(i), round(float(s), 5)) for i, s in zip(r.ids, r.scores)}
            b = {(int(i), round(float(s), 5)) for i, s in zip(f["mol_id"], f["coeff"])}
            same_set += a == b
            same_scores += sorted(s for _, s in a) == sorted(s for _, s in b)
            lo = min((s for _, s in a), default=1.0)  # top-k: ids tied at the k-th score may differ
            same_mod_ties += {x for x in a if x[1] > lo} == {x for x in b if x[1] > lo}
        res[name] = {"ours": stats_ms(t_ours, c_ours), "hits_per_query_mean": float(np.mean(n_hits))}
        if eng is not None:
            res[name] |= {
                "fpsim2": stats_ms(t_fp, c_fp),
                "speedup_mean": float(np.mean(t_fp) / np.mean(t_ours)),
                "speedup_mean_cpu": float(np.mean(c_fp) / np.mean(c_ours)),
                "hit_set_agreement": same_set / len(queries),
                "score_list_agreement": same_scores / len(queries),
                "agreement_modulo_ties_at_kth": same_mod_ties / len(queries),
            }
    out["queries"] = res
    return out


def substructure_bench(workdir: Path, smi: Path, time_limit: float, index_name: str) -> dict:
    from rdkit import Chem, RDLogger
    from rdkit.Chem import rdSubstructLibrary as SL

    from compscope.search import SearchIndex

    RDLogger.DisableLog("rdApp.*")
    idx = SearchIndex.open(workdir / index_name)
    t = time.perf_counter()
    holder, pats = SL.CachedTrustedSmilesMolHolder(), SL.PatternHolder()
    lib = SL.SubstructLibrary(holder, pats)
    with smi.open() as fh:
        for line in fh:
            s = line.split()[0]
            m = Chem.MolFromSmiles(s, sanitize=False)
            m.UpdatePropertyCache(strict=False)
            Chem.FastFindRings(m)
            holder.AddSmiles(s)
            pats.AddFingerprint(Chem.PatternFingerprint(m))
    rdkit_build = time.perf_counter() - t
    out = {"n_database": len(idx), "index": index_name, "rdkit_substructlibrary_build_s": rdkit_build,
           "time_limit_s": time_limit, "limit": 100, "per_query": {}}
    t_ours, t_rd, c_ours, c_rd = [], [], [], []
    idx.substructure("c1ccccc1", limit=10)
    for name, sma in SUBSTRUCTURE_QUERIES.items():
        t, c = time.perf_counter(), time.thread_time()
        r = idx.substructure(sma, syntax="smarts", limit=100, time_limit=time_limit)  # same query as RDKit
        t_ours.append(time.perf_counter() - t)
        c_ours.append(time.thread_time() - c)
        q = Chem.MolFromSmarts(sma)
        t, c = time.perf_counter(), time.thread_time()
        hits, timed_out, start, chunk = [], False, 0, 50_000
        while start < len(lib) and len(hits) < 100:  # same time limit, checked between chunks
            hits += list(lib.GetMatches(q, start, min(start + chunk, len(lib)), numThreads=1,
                                        maxResults=100 - len(hits)))
            start += chunk
            if time.perf_counter() - t > time_limit:
                timed_out = True
                break
        t_rd.append(time.perf_counter() - t)
        c_rd.append(time.thread_time() - c)
        out["per_query"][name] = {
            "smarts": sma, "ours_ms": t_ours[-1] * 1e3, "ours_cpu_ms": c_ours[-1] * 1e3,
            "rdkit_cpu_ms": c_rd[-1] * 1e3, "ours_hits": len(r), "ours_partial": r.partial,
            "ours_screen_candidates": r.stats["screen_candidates"], "ours_verified": r.stats["verified"],
            "rdkit_ms": t_rd[-1] * 1e3, "rdkit_hits": len(hits), "rdkit_timed_out": timed_out,
        }
    out["ours"] = stats_ms(t_ours, c_ours)
    out["rdkit"] = stats_ms(t_rd, c_rd)
    out["all_bounded_by_time_limit"] = bool(max(t_ours) <= time_limit + 0.5)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=1_000_000)
    p.add_argument("--workdir", default="/tmp/compscope_search_bench")
    p.add_argument("--reuse", action="store_true")
    p.add_argument("--result", default="search_moses", help="name of the JSON in benchmarks/results/")
    p.add_argument("--sweep", action="store_true",
                    help="a variant of the headline run (other threads, dtype...): write to benchmarks/results/sweeps/")
    p.add_argument("--time-limit", type=float, default=5.0)
    p.add_argument("--skip-substructure", action="store_true")
    p.add_argument("--full-n", type=int, default=1_000_000,
                   help="molecules for the all-features build (its cost is linear; a subset keeps the run short)")
    p.add_argument("--phase", choices=["all", "build-ours-full", "build-ours-simonly", "build-ours-subs",
                                       "build-fpsim2"], default="all",
                   help="build phases can run as separate processes; `all --reuse` then picks their records up")
    args = p.parse_args()
    logging.basicConfig(level=logging.INFO)
    workdir = Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    smi, queries = prepare(workdir, args.n)
    full_smi = prepare(workdir, args.full_n)[0] if args.full_n != args.n else smi
    if args.phase.startswith("build-ours-"):
        which = args.phase.removeprefix("build-ours-")
        print(build_ours(full_smi if which == "full" else smi, workdir, args.reuse, which))
        return
    if args.phase == "build-fpsim2":
        print(build_fpsim2(smi, workdir, args.reuse))
        return
    payload: dict = {"n_database": args.n, "n_queries": len(queries), "fingerprint": "Morgan r=2, 2048 bits",
                     "single_core_queries": True, "build_workers_ours": 2, "build_workers_fpsim2": 1,
                     "targets": TARGETS}

    def record(which, path_smi, tag=""):
        f = workdir / (f"build_ours_{which}_{path_smi.stem}.json" if which else f"build_fpsim2{tag}.json")
        return json.loads(f.read_text()) if f.exists() else "not finished in this run"

    small = workdir / f"moses_train_{args.full_n}.smi"
    payload["build"] = {
        "ours_similarity_only_1M": record("simonly", smi), "ours_with_pattern_fps_1M": record("subs", smi),
        f"ours_all_features_{args.full_n}": record("full", small), "fpsim2_1M": record("", smi),
        f"fpsim2_{args.full_n}": record("", small, f"_{args.full_n}"),
    }
    print(json.dumps(payload["build"], indent=1), flush=True)
    payload["complete"] = False  # partial results are written after every phase
    write_result(args.result, payload, seed=0, sweep=args.sweep)
    payload["similarity"] = {}
    for label, index_name, h5 in (("1M", "lib_simonly.csi", "fpsim2.h5"),
                                  (str(args.full_n), "lib_full.csi", f"fpsim2_{args.full_n}.h5")):
        if (workdir / index_name / "header.json").exists():
            h5_ok = (workdir / h5).exists() and not (workdir / (h5 + "_tmp")).exists() and \
                isinstance(record("", smi if label == "1M" else small, "" if label == "1M" else f"_{label}"), dict)
            payload["similarity"][label] = similarity_bench(workdir, queries, index_name, h5 if h5_ok else None)
            print(json.dumps(payload["similarity"][label], indent=1), flush=True)
            write_result(args.result, payload, seed=0, sweep=args.sweep)
    if not args.skip_substructure:
        if (workdir / "lib_subs.csi" / "header.json").exists():
            payload["substructure"] = substructure_bench(workdir, smi, args.time_limit, "lib_subs.csi")
        elif (workdir / "lib_full.csi" / "header.json").exists():
            payload["substructure"] = substructure_bench(workdir, small, args.time_limit, "lib_full.csi")
    payload["complete"] = True
    path = write_result(args.result, payload, seed=0, sweep=args.sweep)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
