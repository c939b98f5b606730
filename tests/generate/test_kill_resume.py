"""`compscope generate train` killed with SIGKILL after a validation checkpoint and resumed ends with the weights
and metrics of an uninterrupted run at the same seed (batches, diffusion noise and EMA included)."""

from __future__ import annotations

import yaml

from compscope.testing import assert_same_metrics, assert_same_weights, cli_command, kill_and_resume_training


def test_generate_train_killed_and_resumed_equals_uninterrupted(tmp_path, qm9):
    cfg = {
        "seed": 0,
        "model": {"class_path": "compscope.generate.EDM",
                  "init_args": {"hidden": 8, "num_layers": 1, "sample_steps": 3}},
        "data": {"init_args": {"split": "train", "batch_size": 8, "max_molecules": 64, "val_molecules": 16}},
        "module": {"init_args": {"lr": 1e-3}},
        "trainer": {"max_steps": 40, "max_time_minutes": None, "val_check_interval": 4, "ema_decay": 0.9,
                    "progress_bar": False},
    }
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(cfg))
    run, ref = tmp_path / "run", tmp_path / "ref"
    res = kill_and_resume_training(
        cli_command("generate", "train", path, "--out", run), run, after_epochs=1,
        reference_cmd=cli_command("generate", "train", path, "--out", ref), reference_dir=ref,
        resume_cmd=cli_command("generate", "train", path, "--out", run, "--resume"))
    assert 1 <= res.extra["epochs_before_kill"] < 10  # validations (every 4 of 40 steps) seen at the kill
    assert_same_weights(run / "checkpoints" / "last.ckpt", ref / "checkpoints" / "last.ckpt", atol=0.0)
    assert_same_metrics(run, ref, keys=["val_loss"], rtol=1e-7)
