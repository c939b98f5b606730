"""``compscope cg refine``: IBI steps on a fast CG model's (phi, psi) term, each from a CG run on the MD engine.

The loop is :func:`compscope.cg.ibi_refine`; this module gives it a sampler that runs
:func:`compscope.md.simulate_dense` (the CLI joins ``cg`` and ``md``). The target is the model's own training frames
(its config's data section: the same split, never the held-out block), replicas start from them; the correction's
histograms and series are the model's own term's settings (its config's ``model.cmap``). Each corrected
model is saved as ``OUT_ibi{k}.pt`` and each step's CG run is kept in ``OUT_ibi/step{k}/``; ``--resume`` continues
from the last saved step with the same schedule.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np


def refine_model(model: Path, out: Path | None, iterations: int, replicas: int, steps: list[int],
                 damping: list[float], dt: float, traj_every: int, burn_frames: int, friction: float, seed: int,
                 data: Path | None, resume: bool, progress: bool) -> dict:
    """Run the IBI steps (the ``compscope cg refine`` verb); returns its summary."""
    from compscope.cg import CGDataError, CGDataModule, ibi_refine, per_step
    from compscope.errors import ConfigError, ResumeError
    from compscope.md import StabilityMonitor, load_potential, simulate_dense
    from compscope.models.artifacts import load_model, save_package

    from .cg import _read_md, start_atoms

    if iterations < 1 or replicas < 1 or min(steps) < 1 or traj_every < 1 or burn_frames < 0:
        raise ConfigError("--iterations, --replicas, --steps and --traj-every must be >= 1, --burn-frames >= 0")
    if max(steps) // traj_every + 1 <= burn_frames:
        raise ConfigError(f"a run of {max(steps)} steps saves {max(steps) // traj_every + 1} frames per replica, "
                          f"all inside --burn-frames {burn_frames}", hint="run longer or lower --burn-frames")
    base = load_potential(model)
    info = getattr(base, "package_info", {}) or {}
    cfg_data = dict((info.get("config", {}) or {}).get("data", {}) or {})
    if data is not None:
        cfg_data["path"] = str(data)
    if "path" not in cfg_data:
        raise CGDataError(f"{model} does not name its training data",
                          hint="pass --data cg.h5 (the `compscope cg map` file it was trained on)")
    dm = CGDataModule(**{**cfg_data, "require_forces": False})
    dm.load()
    frames, temperature = dm.train_positions, dm.cg.temperature
    start_atoms(base.atomic_numbers, frames, cfg_data["path"], 1, seed)  # refuses another map's file before any MD
    out = Path(out) if out is not None else Path(model).with_name(Path(model).stem + "_refined.pt")
    step_file = lambda k: out.with_name(f"{out.stem}_ibi{k}.pt")  # noqa: E731
    done = max((k for k in range(1, iterations + 1) if step_file(k).exists()), default=0)
    if done and not resume:
        raise ResumeError(f"{step_file(done)} exists from an earlier refinement",
                          hint="add --resume to continue it, or choose another --out")
    start_model = load_model(step_file(done)) if done else load_model(model)
    # the correction's histograms and series as the model's own term was fitted (its config's model.cmap)
    cmap = dict(((info.get("config") or {}).get("model") or {}).get("cmap") or {})
    runs = out.with_name(f"{out.stem}_ibi")

    def sample(m, k: int) -> np.ndarray:
        m = m.eval()
        for p in m.parameters():
            p.requires_grad_(False)
        atoms = start_atoms(m.atomic_numbers, frames, cfg_data["path"], replicas, seed + 1000 + k)
        res = simulate_dense(m, atoms, steps=per_step(steps, k), dt=dt, temperature=temperature, friction=friction,
                             seed=seed + 1000 + k, out=runs / f"step{k}", traj_every=traj_every,
                             monitor=StabilityMonitor(check_every=50), progress=progress)
        x, stable = _read_md(runs / f"step{k}" / "trajectory.h5", replicas, res.summary, traj_every)
        kept = [x[r, burn_frames:s] for r, s in enumerate(stable) if s > burn_frames]
        print(f"IBI step {k}: {res.n_stable}/{replicas} replicas stable, "
              f"{sum(len(a) for a in kept)} frames after burn-in", flush=True)
        return np.concatenate(kept) if kept else np.empty((0, *x.shape[2:]))

    res = ibi_refine(start_model, frames, sample, iterations, damping=damping, temperature=temperature,
                     on_step=lambda k, m: save_package(m, step_file(k), config=info.get("config"),
                                                       metrics={"ibi_steps": k}),
                     first_step=done, **cmap)
    log = runs / "refine.json"
    earlier = json.loads(log.read_text())["history"] if done and log.exists() else []
    history = [h for h in earlier if h["step"] < done] + res.history
    if res.steps:
        save_package(res.model, out, config=info.get("config"), metrics={"ibi_steps": res.steps,
                                                                         "ibi_history": history})
    summary = {"out": str(out) if res.steps else None, "ibi_steps": res.steps, "resumed_from": done,
               "stopped": res.stopped, "history": history, "target_frames": int(len(frames)), "runs": str(runs)}
    runs.mkdir(parents=True, exist_ok=True)
    log.write_text(json.dumps(summary, indent=1))
    return summary
