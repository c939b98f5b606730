"""LJ55 end to end at 165 degrees of freedom on a tiny budget: our MCMC reference as train/valid data, flow-matching
training, exact log q (165 autograd passes per field evaluation) invariant under rotation and permutation, drawing
with log weights and the report."""

from __future__ import annotations

import numpy as np
import torch

from compscope.sampling import (
    draw_samples,
    get_target,
    load_flow,
    make_reference,
    read_reference,
    report_samples,
    train_flow,
)


def test_lj55_reference_train_draw_report(tmp_path):
    target = get_target("lj55")
    ref = make_reference("lj55", n_samples=8, n_chains=4, burn_in=4, thin=1, out=tmp_path / "ref",
                         checkpoint_every=4)
    data = read_reference(ref)
    assert data["positions"].shape == (8, 55, 3) and torch.isfinite(data["energy"]).all()
    cfg = {"seed": 0, "flow": {"hidden": 4, "num_layers": 1, "n_steps": 1},
           "data": {"target": "lj55", "train": str(ref), "valid": str(ref), "n_valid": 1, "batch_size": 4},
           "module": {"loss": "flow_matching", "alignment": "equivariant", "lr": 1e-3},
           "trainer": {"max_epochs": 1, "progress_bar": False, "num_threads": 1}}
    train_flow(cfg, out=tmp_path / "run")
    flow, info = load_flow(tmp_path / "run", dtype=torch.float64)
    assert info["target"] == "lj55" and flow.n_particles == 55
    x = data["positions"][:1].double()
    q, _ = torch.linalg.qr(torch.randn(3, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0)))
    moved = (x @ q)[:, torch.randperm(55, generator=torch.Generator().manual_seed(1))] + 0.3
    lq = flow.log_prob(torch.cat([x, moved]))  # exact: 165 passes per field evaluation
    assert torch.isfinite(lq).all() and abs(lq[0] - lq[1]) < 1e-8 * abs(lq[0]).clamp(min=1)
    s = draw_samples(flow, target, 2, batch_size=2, seed=0)
    assert s["positions"].shape == (2, 55, 3) and np.isfinite(s["log_q"]).all()
    rep = report_samples(s, data["energy"].numpy())
    assert rep["n"] == 2 and rep["n_invalid"] == int((~np.isfinite(s["log_w"])).sum())
    assert 0 < rep["ess"] <= 1
