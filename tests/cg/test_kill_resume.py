"""`compscope cg train` killed with SIGKILL after an end-of-epoch checkpoint and resumed ends with the weights and
metrics of an uninterrupted run at the same seed (denoising noise and batch order included)."""

from __future__ import annotations

import pytest
import yaml

from compscope.testing import assert_same_metrics, assert_same_weights, cli_command, kill_and_resume_training

from .test_train import TINY_NET


@pytest.mark.slow
def test_cg_train_killed_and_resumed_equals_uninterrupted(tmp_path, cg_file):
    epochs = 4
    cfg = {"seed": 0, "data": {"path": str(cg_file), "n_train": 300, "n_valid": 40, "batch_size": 10},
           "model": {"net": TINY_NET}, "module": {"loss": "denoising", "noise": 0.02},
           "trainer": {"max_epochs": epochs, "ema_decay": 0.9, "progress_bar": False}}
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(cfg))
    run, ref = tmp_path / "run", tmp_path / "ref"
    res = kill_and_resume_training(cli_command("cg", "train", path, "--out", run), run, after_epochs=1,
                                   total_epochs=epochs, reference_cmd=cli_command("cg", "train", path, "--out", ref),
                                   reference_dir=ref,
                                   resume_cmd=cli_command("cg", "train", path, "--out", run, "--resume"))
    assert 1 <= res.extra["epochs_before_kill"] < epochs
    assert_same_weights(run / "checkpoints" / "last.ckpt", ref / "checkpoints" / "last.ckpt", atol=1e-6)
    assert_same_metrics(run, ref, keys=["train_loss", "val_force_rmse"], rtol=1e-5)
