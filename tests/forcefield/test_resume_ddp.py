"""Resume after a hard kill mid-epoch, and DDP with 2 CPU processes, both through the real CLI."""

import os
import signal
import subprocess
import sys
import time

import pytest
import torch
import yaml

from .conftest import tiny_config

pytestmark = pytest.mark.slow


def _write(cfg, path):
    path.write_text(yaml.safe_dump(cfg))
    return path


def _cli(*args, **kw):
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "compscope", *args], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, **kw)


def _final_weights(run):
    doc = torch.load(run / "model.pt", weights_only=True)
    return doc["state_dict"]


def _assert_same(a, b, atol):
    assert a.keys() == b.keys()
    worst = max(float((a[k].double() - b[k].double()).abs().max()) for k in a
                if a[k].is_floating_point() and a[k].numel())
    assert worst <= atol, f"weights differ by {worst:.3e}"


def test_kill_mid_epoch_and_resume_exactly(tmp_path):
    epochs_total = 12  # enough that the kill lands while training runs, however fast the machine is
    over = {"trainer": {"max_epochs": epochs_total}, "data": {"n_train": 40, "batch_size": 2},
            "task": {"scheduler": "cosine"}}
    ref = _cli("train", str(_write(tiny_config(tmp_path / "ref", **over), tmp_path / "ref.yaml")))
    cfg_path = _write(tiny_config(tmp_path / "run", **over), tmp_path / "run.yaml")
    proc = _cli("train", str(cfg_path))
    metrics = tmp_path / "run" / "metrics.jsonl"
    deadline = time.time() + 240
    # wait for the first epoch's checkpoint, then kill during the second epoch
    while time.time() < deadline and proc.poll() is None:
        if metrics.exists() and len(metrics.read_text().splitlines()) >= 1:
            time.sleep(0.3)
            break
        time.sleep(0.05)
    assert proc.poll() is None, "training ended before it could be killed: " + proc.stdout.read()[-2000:]
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert not (tmp_path / "run" / "model.pt").exists()
    done = len(metrics.read_text().splitlines())
    assert done < epochs_total
    resumed = _cli("train", str(cfg_path), "--resume")
    out, _ = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, out[-3000:]
    out_ref, _ = ref.communicate(timeout=300)
    assert ref.returncode == 0, out_ref[-3000:]
    epochs = [yaml.safe_load(line)["epoch"] for line in metrics.read_text().splitlines()]
    assert epochs[-1] == epochs_total - 1 and sorted(set(epochs)) == list(range(epochs_total))
    _assert_same(_final_weights(tmp_path / "run"), _final_weights(tmp_path / "ref"), atol=1e-9)


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
    _assert_same(_final_weights(tmp_path / "ddp"), _final_weights(tmp_path / "single"), atol=1e-8)
