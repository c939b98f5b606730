"""Training the learned finite volumes by unrolling: a tiny run, resume, the shipped config, loading, CLI."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from compscope.errors import ConfigError, ResumeError
from compscope.pde import (
    EquationMismatchError,
    LearnedFluxFV,
    LearnedFVSolver,
    coarsen,
    generate,
    load_coarse,
    load_learned_fv,
    load_split,
    resolve_fv_config,
    train_learned_fv,
)
from compscope.train import read_metrics

CONFIGS = sorted((Path(__file__).resolve().parents[2] / "configs" / "pde").glob("learned_fv_*.yaml"))


def _config(cache, **sections):
    cfg = {"seed": 0, "model": {"hidden": 4, "layers": 1},
           "data": {"equation": "E1", "nx": 25, "n_train": 8, "n_valid": 2, "cache": str(cache), "batch_size": 4,
                    "workers": 1},
           "module": {"unroll": [1, 2], "lr": 1e-2},
           "trainer": {"max_epochs": 1, "progress_bar": False, "num_threads": 1}}
    for name, values in sections.items():
        cfg[name] = {**cfg[name], **values}
    return cfg


@pytest.fixture(scope="module")
def fv_run(tmp_path_factory, pde_cache):
    out = tmp_path_factory.mktemp("fv_run")
    return train_learned_fv(_config(pde_cache), out=out), out


def test_coarse_data_are_block_averages_of_the_reference(pde_cache):
    path = generate("E1", "valid", 2, 0, pde_cache, 1, progress=False)
    d25 = load_coarse(path, "E1", 25)  # not stored: averaged from nx_ref = 200
    np.testing.assert_allclose(d25["u"], coarsen(load_split(path, 200)["u"], 25), rtol=1e-6)
    assert d25["u"].shape == (2, 250, 25) and d25["x"].shape == (25,)
    np.testing.assert_array_equal(load_coarse(path, "E1", 50)["u"], load_split(path, 50)["u"])


def test_training_moves_the_weights_and_resumes(fv_run, pde_cache):
    result, out = fv_run
    rows = read_metrics(out)
    assert rows[-1]["epoch"] == 0 and np.isfinite(rows[-1]["val_acc_error"])
    fv = load_learned_fv(result.best, "E1", 25)
    assert fv.net.out.weight.abs().max() > 0  # zero at initialisation: training changed the corrections
    with pytest.raises(ResumeError, match=r"module.lr"):
        train_learned_fv(_config(pde_cache, module={"lr": 0.5}, trainer={"max_epochs": 2}), out=out, resume=True)
    train_learned_fv(_config(pde_cache, trainer={"max_epochs": 2}), out=out, resume=True)
    rows = read_metrics(out)
    assert [r["epoch"] for r in rows if "val_acc_error" in r] == [0, 1]
    assert [r["unroll"] for r in rows if "unroll" in r] == [1.0, 2.0]  # the curriculum, continued after resume
    last = torch.load(out / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert last["epoch"] == 1


def test_loading_checks_equation_and_grid(fv_run):
    result, _ = fv_run
    with pytest.raises(EquationMismatchError, match=r"trained for E1 at nx=25.*E2 at nx=25"):
        load_learned_fv(result.best, "E2")
    with pytest.raises(EquationMismatchError, match=r"E1 at nx=50"):
        load_learned_fv(result.best, "E1", 50)
    with pytest.raises(FileNotFoundError, match="train-fv"):
        load_learned_fv(Path(result.best).parent / "missing.ckpt")


def test_pushforward_and_noise_keep_training_finite_across_an_unroll_increase(tmp_path, pde_cache):
    cfg = _config(pde_cache, module={"unroll": [1, 3], "pushforward": 4, "noise": 0.02},
                  trainer={"max_epochs": 2})
    train_learned_fv(cfg, out=tmp_path)
    rows = [r for r in read_metrics(tmp_path) if "train_loss" in r]
    assert [r["unroll"] for r in rows] == [1.0, 3.0]
    for r in rows:
        assert np.isfinite(r["train_loss"]) and np.isfinite(r["val_acc_error"]) and r["train_loss"] > 0
        assert np.isfinite(r["grad_norm"]) and r["grad_norm"] > 0
        assert 0.0 <= r["pushforward"] <= 4.0
    assert max(r["pushforward"] for r in rows) > 0  # the windows started from the model's own states


def test_pushforward_window_starts_from_the_models_state(pde_cache):
    """Unroll 1 after p = 3 no-gradient steps (5 stored steps: the window can only start at 0): the loss is the
    one-step error of the model's own rollout at step 4, computed here independently."""
    module = LearnedFVSolver("E1", 25, model={"hidden": 4, "layers": 1}, unroll=[1], pushforward=20)
    with torch.no_grad():
        module.fv.net.out.weight.normal_(0.0, 0.1)
    d = load_coarse(generate("E1", "valid", 2, 0, pde_cache, 1, progress=False), "E1", 25)
    u = torch.tensor(d["u"][:, :5], dtype=torch.float64)  # 5 stored steps: s = 0, p = 3 is the only draw
    cond = torch.tensor(d["cond"], dtype=torch.float64)
    f = torch.stack([torch.tensor(d["params"][k], dtype=torch.float64) for k in ("A", "omega", "phi", "l")], 1)
    module.times = module.times[:5]
    seed = next(k for k in range(100) if torch.manual_seed(k) and int(torch.randint(0, 21, ())) >= 3)
    torch.manual_seed(seed)  # its first draw is p >= 3, capped at nt - 1 - unroll = 3
    with torch.no_grad():
        loss, n, p = module.unrolled_loss((u, cond, f))
    assert (n, p) == (1, 3)
    from compscope.pde._learned_fv_train import _forcing

    with torch.no_grad():
        pred = module.fv.solve(u[:, 0], module.times, cond, _forcing(module.fv, f))
    assert float(loss) == pytest.approx(float(((pred[:, 4] - u[:, 4]) ** 2).mean()), rel=1e-10)
    with pytest.raises(ConfigError, match="pushforward"):
        LearnedFVSolver("E1", 25, pushforward=-1)


@pytest.mark.parametrize("path", CONFIGS, ids=[p.stem for p in CONFIGS])
def test_shipped_configs_build(path):
    cfg = resolve_fv_config(yaml.safe_load(path.read_text()))
    assert cfg["trainer"]["monitor"] == "val_acc_error" and cfg["out"]
    module = LearnedFVSolver(cfg["data"]["equation"], cfg["data"]["nx"], model=cfg["model"], **cfg["module"])
    assert isinstance(module.fv, LearnedFluxFV) and module.fv.nx == cfg["data"]["nx"]


def test_config_errors_name_the_key(pde_cache):
    with pytest.raises(ConfigError, match="unknown top-level"):
        resolve_fv_config({**_config(pde_cache), "lr": 1.0})
    with pytest.raises(ConfigError, match="data.equation and data.nx"):
        resolve_fv_config({"data": {"equation": "E1"}})
    with pytest.raises(ConfigError, match="equation"):
        resolve_fv_config(_config(pde_cache, model={"equation": "E2"}))
    with pytest.raises(ConfigError, match="unroll"):
        LearnedFVSolver("E1", 25, unroll=[])


def test_cli_train_fv_reports_a_bad_config(tmp_path):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text(yaml.safe_dump({"data": {"equation": "E1", "nx": 30}}))
    exe = os.path.join(os.path.dirname(sys.executable), "compscope")
    r = subprocess.run([exe, "pde", "train-fv", str(cfg), "--out", str(tmp_path / "run")], capture_output=True,
                       text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert r.returncode == 2 and "nx=30" in r.stderr, r.stderr
