"""Resume after a hard kill mid-epoch, and DDP with 2 CPU processes, both through the real CLI."""

import os
import subprocess
import sys

import pytest
import yaml

from compscope.testing import assert_same_metrics, assert_same_weights, cli_command, kill_and_resume_training

from .conftest import tiny_config

pytestmark = pytest.mark.slow


def _write(cfg, path):
    path.write_text(yaml.safe_dump(cfg))
    return path


def _cli(*args, **kw):
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "compscope", *args], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, **kw)


def test_kill_mid_epoch_and_resume_exactly(tmp_path):
    """`compscope forcefield train` killed early in an epoch, resumed: the weights (EMA) and metrics of the
    uninterrupted run, which goes through the top-level alias `compscope train` (the same command)."""
    epochs_total = 8
    over = {"trainer": {"max_epochs": epochs_total}, "data": {"n_train": 40, "batch_size": 2},
            "task": {"scheduler": "cosine"}}
    ref_cfg = _write(tiny_config(tmp_path / "ref", **over), tmp_path / "ref.yaml")
    cfg_path = _write(tiny_config(tmp_path / "run", **over), tmp_path / "run.yaml")
    res = kill_and_resume_training(cli_command("forcefield", "train", cfg_path), tmp_path / "run", after_epochs=1,
                                   total_epochs=epochs_total, final="model.pt", reference_dir=tmp_path / "ref",
                                   reference_cmd=cli_command("train", ref_cfg))
    assert res.extra["epochs_before_kill"] < epochs_total
    assert_same_weights(tmp_path / "run" / "model.pt", tmp_path / "ref" / "model.pt", atol=1e-9)
    assert_same_metrics(tmp_path / "run", tmp_path / "ref", rtol=1e-9)


def test_ddp_two_processes_matches_single(tmp_path):
    """Full-batch training: 2 gloo processes x 10 graphs == 1 process x 20 graphs (averaged gradients)."""
    common = {"data": {"n_train": 20, "batch_size": 20, "shuffle": False}, "task": {"scheduler": "none"}}
    trainer = {"max_epochs": 3, "early_stopping_patience": 0, "ema_decay": 0.0}
    single = tiny_config(tmp_path / "single", trainer=trainer, **common)
    ddp = tiny_config(tmp_path / "ddp", trainer={**trainer, "devices": 2, "strategy": "ddp"}, **common)
    ddp["data"]["init_args"]["batch_size"] = 10
    p1 = _cli("train", str(_write(single, tmp_path / "single.yaml")))
    out1, _ = p1.communicate(timeout=300)
    assert p1.returncode == 0, out1[-3000:]
    p2 = _cli("train", str(_write(ddp, tmp_path / "ddp.yaml")))
    out2, _ = p2.communicate(timeout=300)
    assert p2.returncode == 0, out2[-3000:]
    assert "distributed_backend=gloo" in out2 or "world_size" in out2.lower() or "GLOBAL_RANK" in out2
    assert_same_weights(tmp_path / "ddp" / "model.pt", tmp_path / "single" / "model.pt", atol=1e-8)
