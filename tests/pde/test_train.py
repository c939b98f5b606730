import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from compscope.errors import CompscopeError, ConfigError, ResumeError, RunExistsError
from compscope.pde import (
    EquationMismatchError,
    NeuralPDESolver,
    RolloutDivergedError,
    accumulated_error,
    build,
    generate,
    load_solver,
    load_split,
    per_step_error,
    resolve_config,
    rollout,
    train,
    training_time,
    trajectory_errors,
)
from compscope.train import read_metrics

from .conftest import tiny_config


def test_tiny_training_reduces_loss(tiny_run):
    ckpt, out = tiny_run
    rows = read_metrics(out)
    assert [r["epoch"] for r in rows] == [0, 1, 2, 3]
    losses = [r["train_loss"] for r in rows if "train_loss" in r]  # the sink sees an epoch's mean one row later
    assert len(losses) >= 3
    assert losses[-1] < 0.5 * losses[0], losses
    assert (out / "losses.png").stat().st_size > 0
    assert ckpt.exists() and ckpt.parent == out / "checkpoints"
    last = torch.load(out / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert last["epoch"] == 3  # the end of the run, whichever epoch was best


def test_trained_rollout_beats_untrained(tiny_run, pde_cache):
    ckpt, _ = tiny_run
    solver = load_solver(ckpt, "E1", 40)
    va = load_split(generate("E1", "valid", 4, 0, pde_cache, 1, progress=False), 40)
    u, cond = torch.tensor(va["u"]), torch.tensor(va["cond"], dtype=torch.float32)
    trained = accumulated_error(solver.rollout_from_given(u, cond).numpy(), va["u"], 50)
    torch.manual_seed(1)
    fresh = NeuralPDESolver("E1", 40, "mp-pde-tiny")
    untrained = accumulated_error(fresh.rollout_from_given(u, cond).numpy(), va["u"], 50)
    assert trained < untrained


def test_evaluate_reports_the_mean_error_and_its_standard_error(tiny_run, pde_cache):
    from compscope.pde import evaluate

    ckpt, _ = tiny_run
    res = evaluate(ckpt, "E1", 40, n_test=4, cache=pde_cache, workers=1, timing=False)
    per = trajectory_errors(res["prediction"], res["reference"], res["given_steps"])
    assert res["accumulated_error"] == pytest.approx(per.mean())
    assert res["accumulated_error_se"] == pytest.approx(per.std(ddof=1) / 2.0)  # sqrt(4 trajectories)
    assert "s_per_traj_single" not in res


def test_metrics_definition():
    ref = np.zeros((2, 10, 4))
    pred = np.ones((2, 10, 4))
    pred[1] *= 3.0  # squared errors 1 and 9 -> mean 5 per step
    np.testing.assert_allclose(per_step_error(pred, ref), 5.0)
    assert accumulated_error(pred, ref, 4) == pytest.approx(30.0)
    np.testing.assert_allclose(trajectory_errors(pred, ref, 4), [6.0, 54.0])  # 6 scored steps of 1 and of 9
    with pytest.raises(ValueError, match="shape"):
        per_step_error(pred[:, :5], ref)
    with pytest.raises(ValueError, match="shape"):
        trajectory_errors(pred[:, :5], ref, 4)


def test_trajectory_errors_agree_with_the_per_step_curve():
    rng = np.random.default_rng(0)
    ref = rng.normal(size=(6, 250, 50))
    pred = ref + rng.normal(scale=0.1, size=ref.shape)
    err = trajectory_errors(pred, ref, 50)
    assert err.shape == (6,)
    assert np.isclose(err.mean(), per_step_error(pred, ref)[50:].sum())
    pred[2, 10] += 100.0  # a given step is not scored
    np.testing.assert_allclose(trajectory_errors(pred, ref, 50), err)


def test_nan_in_rollout_stops_and_reports_step():
    solver = NeuralPDESolver("E1", 40, "mp-pde-tiny")
    model = solver.model
    model.dt = 1.0
    with torch.no_grad():  # finite weights, but k * 3e37 overflows float32 from k = 12 on
        model.decoder[-1].weight.zero_()
        model.decoder[-1].bias.fill_(3e37)
    u = torch.zeros(2, 50, 40)
    with pytest.raises(RolloutDivergedError, match="time step 61") as info:
        rollout(_Wrap(model), u, solver.x, solver.times, torch.zeros(2, 3), 250)
    assert info.value.step == 61


class _Wrap(torch.nn.Module):
    def __init__(self, m):
        super().__init__()
        self.m, self.K = m, m.K

    def forward(self, u, x, t, c):
        return self.m(u, x, t, c)


def test_model_on_other_equation_or_grid_is_refused(tiny_run):
    ckpt, _ = tiny_run
    with pytest.raises(EquationMismatchError, match="trained on E1 at nx=40.*E2"):
        load_solver(ckpt, "E2")
    with pytest.raises(EquationMismatchError, match="nx=50"):
        load_solver(ckpt, "E1", 50)
    with pytest.raises(ValueError, match="unknown equation"):
        load_solver(ckpt, "KdV")


def test_resume_continues_and_refuses_changes(tmp_path, pde_cache):
    cfg = tiny_config(pde_cache, model="fno-tiny")
    train(cfg, out=tmp_path)
    first = training_time(tmp_path)
    assert first["train_seconds"] > 0 and first["global_step"] == 1
    with pytest.raises(RunExistsError, match="already holds a run") as err:
        train(cfg, out=tmp_path)
    assert "--resume" in err.value.hint
    longer = tiny_config(pde_cache, model="fno-tiny", trainer={"max_epochs": 2})
    with pytest.raises(ResumeError, match=r"module.lr: 0.001 -> 0.5"):
        train(tiny_config(pde_cache, model="fno-tiny", module={"lr": 0.5}, trainer={"max_epochs": 2}), out=tmp_path,
              resume=True)
    with pytest.raises(ResumeError, match=r"model.init_args.width: 16 -> 32"):
        train({**longer, "model": {"preset": "fno-tiny", "init_args": {"width": 32}}}, out=tmp_path, resume=True)
    train(longer, out=tmp_path, resume=True)  # max_epochs is a budget: it may change
    ck = torch.load(tmp_path / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert ck["epoch"] == 1  # the second epoch ran on top of the first
    both = training_time(tmp_path)  # the timer's state came back from the checkpoint: both epochs count
    assert both["global_step"] == 2 and both["train_seconds"] > first["train_seconds"]
    assert training_time(tmp_path / "no_run") is None
    ck["callbacks"] = {k: v for k, v in ck["callbacks"].items() if not k.startswith("Timer")}
    torch.save(ck, tmp_path / "checkpoints" / "last.ckpt")  # as a checkpoint written before runs timed themselves
    train(tiny_config(pde_cache, model="fno-tiny", trainer={"max_epochs": 3}), out=tmp_path, resume=True)
    assert training_time(tmp_path)["train_seconds"] is None  # unknown, not a wrong number
    assert training_time(tmp_path)["global_step"] == 3


def test_a_moved_finished_run_still_returns_its_best_checkpoint(tmp_path, pde_cache):
    import shutil

    cfg = tiny_config(pde_cache, model="fno-tiny", trainer={"max_epochs": 2})
    first = train(cfg, out=tmp_path / "a").best
    assert first.name.startswith("best")
    shutil.move(tmp_path / "a", tmp_path / "b")  # Lightning would hand back the old folder's path
    again = train(cfg, out=tmp_path / "b", resume=True).best  # nothing left to train; out may change
    assert again == tmp_path / "b" / "checkpoints" / first.name and again.exists()


def test_config_sections_are_checked_with_hints(tmp_path, pde_cache):
    base = tiny_config(pde_cache, model="fno-tiny")
    with pytest.raises(ConfigError, match=r"unknown top-level key\(s\) \['lr'\]") as err:
        resolve_config({**base, "lr": 1e-3})
    assert "module" in err.value.hint
    with pytest.raises(ConfigError, match=r"'module': unknown key\(s\) \['learning_rate'\]"):
        resolve_config(tiny_config(pde_cache, module={"learning_rate": 1e-3}))
    with pytest.raises(ConfigError, match="'equation' is set by data.equation"):
        resolve_config(tiny_config(pde_cache, module={"equation": "E2"}))
    with pytest.raises(ConfigError, match="come from the equation"):
        resolve_config({**base, "model": {"preset": "fno-tiny", "init_args": {"time_window": 10}}})
    with pytest.raises(ConfigError, match="data.equation and data.nx are required"):
        resolve_config({"model": "fno-tiny"})
    with pytest.raises(ConfigError, match="preset 'gnn' unknown"):
        resolve_config({**base, "model": "gnn"})
    with pytest.raises(ConfigError, match="no run folder"):
        train(base)
    full = resolve_config(base)  # every default written out, the PDE trainer defaults included
    assert full["data"]["seed"] == 0 and full["module"]["time_window"] == 25
    assert full["trainer"]["monitor"] == "val_acc_error" and full["trainer"]["max_epochs"] == 1
    assert full["model"] == {"class_path": "compscope.pde.FNO1d", "init_args": {"width": 16, "modes": 8, "layers": 2}}
    assert resolve_config({**base, "seed": 3})["data"]["seed"] == 3  # the data's seed follows the run's
    assert resolve_config({**base, "seed": 3, "data": {**base["data"], "seed": 1}})["data"]["seed"] == 1


def test_training_bad_inputs(tmp_path, pde_cache):
    with pytest.raises(ValueError, match="does not divide") as err:
        train(tiny_config(pde_cache, data={"equation": "E2", "nx": 64}), out=tmp_path / "a")
    assert isinstance(err.value, CompscopeError) and "use one of" in err.value.hint
    assert not (tmp_path / "a").exists()  # nothing is left behind by a config that cannot run
    with pytest.raises(ValueError, match="unknown equation"):
        NeuralPDESolver("E7", 40)
    with pytest.raises(ValueError, match="exceeds nt"):
        NeuralPDESolver("E1", 40, "fno-tiny", time_window=100)
    with pytest.raises(ConfigError, match="trainer.accelerator='tpu'"):
        train(tiny_config(pde_cache, trainer={"accelerator": "tpu"}), out=tmp_path / "b")
    with pytest.raises(ValueError, match="E3 has no reflection symmetry"):
        NeuralPDESolver("E3", 40, "fno-tiny", augment=True)
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="no CUDA device"):
            train(tiny_config(pde_cache, trainer={"accelerator": "gpu"}), out=tmp_path / "c")


def test_augmented_training_sees_each_sample_or_its_mirror_image():
    class Recorder(torch.nn.Module):
        def forward(self, u, x, t, cond):
            self.seen = u.clone()
            return u + 0.0 * self.w

        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(()))

    u = torch.randn(1, 250, 40).expand(256, -1, -1)  # one trajectory, many draws of the window and the flip
    cond = torch.zeros(256, 3)
    seen = {}
    for augment in (False, True):
        torch.manual_seed(0)
        solver = NeuralPDESolver("E1", 40, "fno-tiny", max_unroll=0, augment=augment)
        solver.model = Recorder()
        solver.log = lambda *args, **kwargs: None  # a bare training_step, outside a Trainer: nothing to log to
        solver.training_step((u, cond), 0)
        seen[augment] = solver.model.seen  # (B, K, N) input windows
    windows = u[0].unfold(0, 25, 1).permute(0, 2, 1)  # every window of the trajectory (S, K, N)

    def matches(batch, pool):
        return (batch[:, None] - pool[None]).abs().amax((-1, -2)).min(1).values < 1e-6

    assert matches(seen[False], windows).all()
    plain, mirrored = matches(seen[True], windows), matches(seen[True], -windows.flip(-1))
    assert (plain | mirrored).all() and 0.3 < mirrored.float().mean() < 0.7


def test_weight_ema_is_what_is_validated_saved_and_loaded(tmp_path, pde_cache):
    ckpts = {}
    for decay in (1e-9, 0.9):  # decay ~0: the average is the last weights; 0.9: a real average
        cfg = tiny_config(pde_cache, model="fno-tiny", data={"batch_size": 4},
                          trainer={"max_epochs": 2, "ema_decay": decay})
        ckpts[decay] = train(cfg, out=tmp_path / str(decay)).best
        ck = torch.load(tmp_path / str(decay) / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
        avg, raw = ck["state_dict"], ck["current_model_state"]
        gap = max((avg[k] - raw[k]).abs().max().item() for k in avg if k.startswith("model."))
        assert (gap < 1e-6) if decay < 1e-6 else (gap > 1e-4)
        assert torch.equal(avg["x"], raw["x"]) and torch.equal(avg["times"], raw["times"])  # constants untouched
    ck = torch.load(ckpts[0.9], map_location="cpu", weights_only=False)
    loaded = load_solver(ckpts[0.9]).state_dict()
    assert all(torch.equal(loaded[k], ck["state_dict"][k]) for k in loaded)  # evaluation rolls the average out
    cfg["trainer"]["max_epochs"] = 3
    train(cfg, out=tmp_path / "0.9", resume=True)  # resumes average and raw weights
    assert training_time(tmp_path / "0.9")["global_step"] == 6
    with pytest.raises(ConfigError, match="ema_decay=1.5"):
        train(tiny_config(pde_cache, trainer={"ema_decay": 1.5}), out=tmp_path / "bad")


# learned_fv_*.yaml train the learned finite volumes (`pde train-fv`): tests/pde/test_learned_fv_train.py builds them;
# learned_spectral_*.yaml (`pde train-spectral`): tests/pde/test_learned_spectral.py
CONFIGS = sorted(p for p in (Path(__file__).resolve().parents[2] / "configs" / "pde").glob("*.yaml")
                 if not p.stem.startswith(("learned_fv", "learned_spectral")))


@pytest.mark.parametrize("path", CONFIGS, ids=[p.stem for p in CONFIGS])
def test_every_shipped_config_builds(path):
    cfg = yaml.safe_load(path.read_text())
    solver, data, trainer = build(cfg)
    assert (data.eq.name, data.nx) == (solver.eq.name, solver.hparams.nx)
    assert trainer.monitor == "val_acc_error" and cfg["out"]
    u = torch.zeros(2, solver.K, data.nx)
    out = solver(u, torch.zeros(2), torch.zeros(2, len(solver.eq.param_names)))
    assert out.shape == u.shape, path


def test_paper_configs_run_the_authors_step_count():
    # the authors' epoch is t_res = 250 passes over the 2048 training trajectories (experiments/train.py):
    # a config that claims the paper's setting must run its 2048 * 250 / 16 * 20 = 640,000 optimiser steps
    paper = [resolve_config(yaml.safe_load(p.read_text())) for p in CONFIGS]
    paper = [c for c in paper if c["data"]["n_train"] == 2048]
    assert paper
    for cfg in paper:
        d = cfg["data"]
        assert cfg["trainer"]["max_epochs"] * d["n_train"] * d["repeat"] // d["batch_size"] == 640_000, cfg


def _cli(*args, env=None):
    exe = os.path.join(os.path.dirname(sys.executable), "compscope")
    return subprocess.run([exe, *args], capture_output=True, text=True, env=env, timeout=600)


def test_cli_errors_and_rollout_plot(tiny_run, tmp_path, pde_cache):
    ckpt, _ = tiny_run
    env = {**os.environ, "COMPSCOPE_PDE_CACHE": str(pde_cache), "OMP_NUM_THREADS": "1"}
    r = _cli("pde", "generate", "E9", "--n", "2", env=env)
    assert r.returncode == 2 and "unknown equation 'E9'" in r.stderr
    r = _cli("pde", "evaluate", str(ckpt), "--equation", "E2", "--n-test", "4", env=env)
    assert r.returncode == 2 and "trained on E1" in r.stderr
    png = tmp_path / "roll.png"
    r = _cli("pde", "rollout", str(ckpt), "--output", str(png), "--n-test", "4", env=env)
    assert r.returncode == 0, r.stderr
    assert png.stat().st_size > 10_000


def test_cli_set_overrides_the_config(tmp_path, pde_cache):
    # --set replaces the config's values in the run itself: the saved config, the model's hyperparameters and
    # the optimiser step count (8 * 3 / 4 = 6 steps, not 2)
    env = {**os.environ, "COMPSCOPE_PDE_CACHE": str(pde_cache), "OMP_NUM_THREADS": "1"}
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(yaml.safe_dump(tiny_config(pde_cache, model="fno-tiny", data={"batch_size": 4, "repeat": 1},
                                              module={"lr": 1e-3, "max_unroll": 2})))
    out = tmp_path / "run"
    r = _cli("pde", "train", str(cfg), "--set", "data.repeat=3", "--set", "module.lr=0.005", "--set",
             "module.max_unroll=0", "--set", "module.augment=true", "--set", "trainer.ema_decay=0.99",
             "--out", str(out), env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout.strip().endswith("best.ckpt")
    saved = yaml.safe_load((out / "config.yaml").read_text())
    assert (saved["data"]["repeat"], saved["module"]["lr"], saved["module"]["max_unroll"]) == (3, 0.005, 0)
    assert saved["module"]["augment"] is True and saved["trainer"]["ema_decay"] == 0.99
    assert saved["out"] == str(out)
    ck = torch.load(out / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert ck["hyper_parameters"]["lr"] == 0.005 and ck["hyper_parameters"]["max_unroll"] == 0
    assert ck["hyper_parameters"]["augment"] is True
    assert ck["global_step"] == 6
    # a user error: message and hint on stderr, exit code 2, no traceback
    r = _cli("pde", "train", str(cfg), "--set", "lr=0.1", "--out", str(tmp_path / "bad"), env=env)
    assert r.returncode == 2 and "unknown top-level key(s) ['lr']" in r.stderr and "hint:" in r.stderr
    assert "Traceback" not in r.stderr
    r = _cli("pde", "train", str(cfg), "--out", str(out), env=env)
    assert r.returncode == 2 and "already holds a run" in r.stderr and "--resume" in r.stderr
    assert "--set" in _cli("pde", "train", "--help", env=env).stdout


def test_plots_write_images(tmp_path):
    from compscope.pde import plot_error_vs_runtime, plot_rollout

    cells = {"E1/nx50": {"classical": {"WENO5": {"error": 0.05, "s_per_traj_single": 0.002}},
                         "neural": {"mp-pde-small": {"error": 28.0, "error_se": 40.0, "s_per_traj_single": 0.05},
                                    "fno": {"error": float("nan"), "s_per_traj_single": 0.01}}},
             # round-off error of an exact solver (drawn on the floor line) and the paper's numbers ("breaks": None)
             "WE1/nx20": {"classical": {"Chebyshev": {"error": 5e-16, "s_per_traj_single": 0.0005}},
                          "paper": {"pseudospectral": [None, 0.2], "MP-PDE": [0.059, 0.07]}}}
    assert plot_error_vs_runtime(cells, tmp_path / "err.png").stat().st_size > 5_000
    assert plot_error_vs_runtime({}, tmp_path / "empty.png").exists()  # nothing finished yet: still a figure
    t, x = np.linspace(0, 4, 250), (np.arange(50) + 0.5) * 16 / 50
    ref = np.sin(x[None] - t[:, None])
    assert plot_rollout(ref, ref + 0.1, x, t, tmp_path / "roll.png").stat().st_size > 10_000
