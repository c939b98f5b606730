"""Cost of the exact CNF divergence: one autograd pass per coordinate vs forward mode through the EGNN.

For the equivariant vector fields of the sampling flows (LJ13 and LJ55: EGNN width 32, 3 layers; alanine
dipeptide: width 64, 4 layers, one atom type per atom, as ``benchmarks/sampling_bg*.py``), in float32 and float64,
on 1 thread, all in the same process:

- ``divergence``: CPU seconds per draw of one exact divergence of the field at a batch of draws, by
  :func:`compscope.nn.divergence_exact` (the autograd loop, the old default) and by
  :func:`compscope.nn.egnn_update_divergence` (eager and ``torch.compile``d; the first compiled call, which
  compiles, is timed apart), and the largest difference between them;
- ``log_q``: CPU seconds per draw of the exact ``log q`` of the LJ55 draw settings (4 RK4 steps, 5-node
  Gauss-Legendre quadrature of the divergence; ``EquivariantCNF.log_prob``) with each divergence, and the
  largest difference of ``log q``.

Weights are random (the cost does not depend on them; the last coordinate layers get a unit gain so that the
field is not near zero). Writes ``benchmarks/results/cnf_divergence.json``::

    python -m benchmarks.cnf_divergence
"""

from __future__ import annotations

import argparse
import os
import time

from benchmarks._common import write_result

SYSTEMS = {  # n_particles, EGNN width, layers, atom types, draws per batch, positional scale
    "lj13": {"n": 13, "hidden": 32, "num_layers": 3, "types": False, "batch": 16, "scale": 1.0},
    "lj55": {"n": 55, "hidden": 32, "num_layers": 3, "types": False, "batch": 4, "scale": 1.5},
    "ala2": {"n": 22, "hidden": 64, "num_layers": 4, "types": True, "batch": 8, "scale": 0.2},
}


def _timed(fn):
    c, w = time.process_time(), time.perf_counter()
    out = fn()
    return out, time.process_time() - c, time.perf_counter() - w


def _children_cpu() -> float:
    t = os.times()
    return t.children_user + t.children_system


def measure(system: str, dtype_name: str, repeats: int = 2) -> dict:
    import torch

    from compscope.nn import divergence_exact
    from compscope.sampling import EquivariantCNF

    s = SYSTEMS[system]
    dtype = getattr(torch, dtype_name)
    torch.manual_seed(0)
    flow = EquivariantCNF(s["n"], 3, hidden=s["hidden"], num_layers=s["num_layers"], init_gain=1.0, n_steps=4,
                          atom_types=list(range(s["n"])) if s["types"] else None, div_nodes=5).to(dtype)
    field, b = flow.field, s["batch"]
    x = torch.randn(b, s["n"], 3, generator=torch.Generator().manual_seed(1), dtype=dtype) * s["scale"]
    x = x - x.mean(1, keepdim=True)
    t = 0.37

    def old():
        xg = x.clone().requires_grad_(True)
        with torch.enable_grad():
            return divergence_exact(field(t, xg), xg).detach()

    def new(compile_: bool):
        return lambda: field.velocity_and_divergence(t, x, compile=compile_)[1]

    res = {"n_coordinates": 3 * s["n"], "batch": b, "hidden": s["hidden"], "num_layers": s["num_layers"]}
    ref, _, _ = _timed(old)
    kids = _children_cpu()
    _, c_first, w_first = _timed(new(True))  # compiles (once per process, dtype and shape)
    res["compile_first_call"] = {"cpu_s": c_first, "child_process_cpu_s": _children_cpu() - kids, "wall_s": w_first}
    best = {}
    for name, fn in (("autograd", old), ("forward_eager", new(False)), ("forward_compiled", new(True))):
        runs = [_timed(fn) for _ in range(repeats)]
        out = runs[-1][0]
        best[name] = min(r[1] for r in runs) / b
        res[name] = {"cpu_s_per_draw": best[name], "wall_s_per_draw": min(r[2] for r in runs) / b,
                     "max_abs_diff_vs_autograd": float((out - ref).abs().max()),
                     "max_rel_diff_vs_autograd": float(((out - ref).abs() / ref.abs().clamp_min(1e-12)).max())}
    res["speedup_eager"] = best["autograd"] / best["forward_eager"]
    res["speedup_compiled"] = best["autograd"] / best["forward_compiled"]
    # exact log q with the draw settings: 4 RK4 steps, 5-node Gauss-Legendre quadrature of the divergence
    lq = {}
    for name, method, comp in (("autograd", "autograd", "0"), ("forward_compiled", "egnn", "1")):
        os.environ["COMPSCOPE_COMPILE_DIVERGENCE"] = comp
        flow.div_method = method
        flow.log_prob(x[:1])  # warm-up (compiles the one-draw shape)
        out, c, w = _timed(lambda: flow.log_prob(x))
        lq[name] = {"cpu_s_per_draw": c / b, "wall_s_per_draw": w / b, "log_q": out.tolist()}
    os.environ.pop("COMPSCOPE_COMPILE_DIVERGENCE", None)
    flow.div_method = "egnn"
    diff = max(abs(a - c) for a, c in zip(lq["autograd"]["log_q"], lq["forward_compiled"]["log_q"]))
    res["log_q"] = {**lq, "max_abs_diff": diff,
                    "speedup": lq["autograd"]["cpu_s_per_draw"] / lq["forward_compiled"]["cpu_s_per_draw"]}
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--systems", nargs="+", default=list(SYSTEMS), choices=list(SYSTEMS))
    ap.add_argument("--dtypes", nargs="+", default=["float32", "float64"], choices=["float32", "float64"])
    ap.add_argument("--name", default="cnf_divergence")
    a = ap.parse_args()
    from compscope.runtime import configure_threads

    configure_threads(1)
    results = {}
    for system in a.systems:
        for dt in a.dtypes:
            r = measure(system, dt)
            results[f"{system}_{dt}"] = r
            print(system, dt, f"divergence {r['autograd']['cpu_s_per_draw']:.4f} -> eager "
                  f"{r['forward_eager']['cpu_s_per_draw']:.4f} / compiled {r['forward_compiled']['cpu_s_per_draw']:.4f}"
                  f" CPU-s per draw; log q x{r['log_q']['speedup']:.2f}", flush=True)
    notes = ["1 thread, CPU seconds of this process (time.process_time); the same run times all methods; the "
             "machine's second core ran another job. compile_first_call: the first compiled call (tracing in this "
             "process, cpu_s; the C++ compiler in child processes, child_process_cpu_s), paid once per process, "
             "model, dtype and shape, not included in the per-draw numbers",
             "speedup = autograd CPU-s per draw / new CPU-s per draw (best of 2 calls each); exact both ways: "
             "max_abs_diff_vs_autograd is round-off"]
    write_result(a.name, {"systems": results}, seed=0, notes=notes)


if __name__ == "__main__":
    main()
