"""Two DDP processes (CPU, gloo) train the same solver as one process with the same global batch."""

from __future__ import annotations

import os
import subprocess
import sys

import torch
import yaml

from compscope.train import read_metrics

from .conftest import tiny_config


def _train(cfg: dict, folder, env) -> None:
    path = folder.with_suffix(".yaml")
    path.write_text(yaml.safe_dump(cfg))
    exe = os.path.join(os.path.dirname(sys.executable), "compscope")
    r = subprocess.run([exe, "pde", "train", str(path), "--out", str(folder)], capture_output=True, text=True,
                       env=env, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]


def test_two_ddp_processes_match_one_process(tmp_path, pde_cache):
    # One window per trajectory (K=125, one given window: the only start is t=125), no pushforward and no
    # augmentation, so a step's gradient is the mean over the same 8 trajectories however they are split:
    # 1 process x batch 8 and 2 processes x batch 4 (gradients all-reduced) take the same optimiser steps.
    env = {**os.environ, "COMPSCOPE_PDE_CACHE": str(pde_cache), "OMP_NUM_THREADS": "1"}
    cfg = tiny_config(pde_cache, model="fno-tiny", data={"n_train": 8, "n_valid": 4, "batch_size": 8},
                      module={"time_window": 125, "given_windows": 1, "max_unroll": 0, "lr": 3e-3},
                      trainer={"max_epochs": 3})
    ddp = {**cfg, "data": {**cfg["data"], "batch_size": 4},
           "trainer": {**cfg["trainer"], "devices": 2, "strategy": "ddp"}}
    _train(cfg, tmp_path / "one", env)
    _train(ddp, tmp_path / "two", env)

    one, two = read_metrics(tmp_path / "one"), read_metrics(tmp_path / "two")
    assert [r["step"] for r in one] == [r["step"] for r in two] == [1, 2, 3]  # one optimiser step per epoch
    v1 = torch.tensor([r["val_acc_error"] for r in one])
    v2 = torch.tensor([r["val_acc_error"] for r in two])
    assert v1[-1] < v1[0]  # it learns (a comparison of two frozen models would prove nothing)
    torch.testing.assert_close(v2, v1, rtol=1e-4, atol=0.0)  # float32 all-reduce vs one sum: round-off only

    w1 = torch.load(tmp_path / "one" / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    w2 = torch.load(tmp_path / "two" / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    keys = [k for k in w1["state_dict"] if k.startswith("model.")]
    gap = max((w2["state_dict"][k] - w1["state_dict"][k]).abs().max().item() for k in keys)
    print(f"DDP vs one process: max |dw| = {gap:.3g}, val rel. diff = {((v2 - v1) / v1).abs().max().item():.3g}")
    assert gap < 1e-5  # round-off (~1e-7 here); each Adam step moves a weight by up to lr = 3e-3
