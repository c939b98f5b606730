"""Force-field speed: energy + forces and a force-loss training step, dense contractions vs fused kernels.

Times the trained benchmark force field (``--model``; a freshly initialised ``small`` model when the file is
missing: weights do not change the cost) on 1 and 64 ethanol molecules batched in one graph (``--sizes``), for

- ``dense_inference`` / ``fused``: energy + forces with the tensor products as dense torch contractions
  ((edges, K, channels) temporaries) or as the fused numba kernels (``compscope.nn._fused``), the default on CPU;
- ``train_step_dense`` / ``train_step_fused``: forces with ``create_graph``, a force + energy loss and its backward
  (second derivatives through the kernels), what one training step costs.

Each figure is the median over ``--repeat`` calls after warm-up, single-threaded by default.

Usage:
    COMPSCOPE_DATA=/work/shared/data python benchmarks/model_speed.py [--model PATH] [--threads 1]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

if not __package__:  # run as `python benchmarks/<name>.py`: put the repository root on the path
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks._common import ROOT, write_result  # noqa: E402


def _time(fn, repeat: int) -> float:
    for _ in range(3):
        fn()
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def time_paths(model, graph, repeat: int) -> dict[str, float]:
    """Median ms per call: energy+forces (inference) and a force-loss training step, dense vs fused kernels."""

    def infer(fused):
        def call():
            model.fused_kernels = fused
            return model(graph)
        return call

    def train_step(fused):
        def call():
            model.fused_kernels = fused
            model.zero_grad(set_to_none=True)
            out = model(graph, training=True)
            (out["energy"].pow(2).sum() + out["forces"].pow(2).sum()).backward()
        return call

    calls = {"dense_inference": infer(False), "fused": infer(True),
             "train_step_dense": train_step(False), "train_step_fused": train_step(True)}
    res = {name: _time(fn, repeat) * 1e3 for name, fn in calls.items()}
    model.fused_kernels = True
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=str(ROOT / "benchmarks/work/ours_30min/model.pt"))
    ap.add_argument("--sizes", default="1,5,64", help="molecules per batch (5 = the training batch)")
    ap.add_argument("--dtype", default="float32", help="float64 is the training default")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeat", type=int, default=20)
    ap.add_argument("--result", default="model_speed", help="name of the JSON in benchmarks/results/")
    ap.add_argument("--sweep", action="store_true",
                    help="a variant of the headline run (other threads, dtype...): write to benchmarks/results/sweeps/")
    args = ap.parse_args()

    import torch
    from ase.build import molecule

    from compscope.data import AtomicGraph, graphs_from_atoms
    from compscope.models import build_model
    from compscope.runtime import configure_threads

    configure_threads(args.threads)
    dtype = getattr(torch, args.dtype)
    if Path(args.model).exists():
        from compscope.md import load_potential

        model, source = load_potential(args.model, dtype=dtype), args.model
        for p in model.parameters():
            p.requires_grad_(True)  # the training-step timing needs parameter gradients
    else:
        model, source = build_model(preset="small", species=[1, 6, 8]).to(dtype), "fresh small preset"
    n_params = sum(p.numel() for p in model.parameters())
    atoms = molecule("CH3CH2OH")
    rows = {}
    for n in (int(s) for s in args.sizes.split(",")):
        graph = AtomicGraph.collate(graphs_from_atoms([atoms] * n, cutoff=model.cutoff)).to(dtype=dtype)
        row = {"molecules": n, "atoms": graph.num_nodes, "edges": int(graph.edge_index.shape[1])}

        for name, ms in time_paths(model, graph, args.repeat).items():
            row[f"{name}_ms"] = ms
        row["fused_speedup_vs_dense_inference"] = row["dense_inference_ms"] / row["fused_ms"]
        row["fused_atom_evals_per_s"] = graph.num_nodes / (row["fused_ms"] * 1e-3)
        row["train_step_speedup_fused"] = row["train_step_dense_ms"] / row["train_step_fused_ms"]
        rows[str(n)] = row
        print(row)
    path = write_result(args.result, {"model": source, "n_params": n_params, "dtype": args.dtype,
                                        "threads": args.threads, "repeat": args.repeat, "sizes": rows},
                        sweep=args.sweep)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
