"""`compscope pde train` killed with SIGKILL after an end-of-epoch checkpoint and resumed ends with the weights
and metrics of an uninterrupted run at the same seed (random windows, unrolls and data order included)."""

from __future__ import annotations

import yaml

from compscope.pde import generate
from compscope.testing import assert_same_metrics, assert_same_weights, cli_command, kill_and_resume_training

from .conftest import tiny_config


def test_pde_train_killed_and_resumed_equals_uninterrupted(tmp_path, pde_cache):
    epochs = 4
    cfg = tiny_config(pde_cache, data={"n_train": 16, "repeat": 2, "batch_size": 4},
                      module={"max_unroll": 2, "augment": True}, trainer={"max_epochs": epochs, "ema_decay": 0.9})
    for split, n in (("train", 16), ("valid", 4)):  # the data exist before two runs read them at once
        generate("E1", split, n, 0, pde_cache, 1, progress=False)
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(cfg))
    run, ref = tmp_path / "run", tmp_path / "ref"
    res = kill_and_resume_training(cli_command("pde", "train", path, "--out", run), run, after_epochs=1,
                                   total_epochs=epochs, reference_cmd=cli_command("pde", "train", path, "--out", ref),
                                   reference_dir=ref, resume_cmd=cli_command("pde", "train", path, "--out", run,
                                                                             "--resume"))
    assert 1 <= res.extra["epochs_before_kill"] < epochs
    assert_same_weights(run / "checkpoints" / "last.ckpt", ref / "checkpoints" / "last.ckpt", atol=1e-6)
    assert_same_metrics(run, ref, keys=["train_loss", "val_acc_error", "lr"], rtol=1e-5)
