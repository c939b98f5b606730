"""EDM's conditional evaluation protocol on real QM9 rows (small budgets); the predictor trains on compscope.train."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from compscope.errors import ConfigError, ResumeError
from compscope.generate import (
    FlowMatching,
    PropertyPredictor,
    baselines,
    conditional_mae,
    load_predictor,
    train_predictor,
)
from compscope.generate._conditional import DrawnBatches
from compscope.models.artifacts import ArtifactError, ArtifactNotFoundError
from compscope.train import read_metrics

FIXTURE = Path(__file__).parents[1] / "fixtures" / "generate"
SMALL = {"hidden": 8, "num_layers": 1, "batch_size": 16}


def test_predictor_learns_and_protocol_runs(tmp_path, qm9, splits):
    first, second = splits["first_half"][:2000], splits["second_half"][:300]
    pred, prog = train_predictor(tmp_path / "pred", "alpha", qm9, first, max_seconds=600, max_steps=150,
                                 hidden=16, num_layers=2, batch_size=32, lr=3e-3, val_rows=splits["valid"][:200],
                                 val_every=50)
    rows = read_metrics(tmp_path / "pred")
    assert [r["step"] for r in rows] == [50, 100, 150] and prog["val_mae"] == rows[-1]["val_mae"]
    assert rows[-1]["val_mae"] < rows[0]["val_mae"]  # the validation MAE falls
    b = baselines(pred, qm9, first, second)
    # #Atoms and a trained predictor beat shuffled labels (the ordering EDM reports), and the predictor has learned
    # more than the molecule's size
    assert b["qm9"] < b["n_atoms"] < b["naive"]
    gen = FlowMatching(hidden=8, num_layers=1, sample_steps=2, condition="alpha")
    rows = splits["second_half"]
    gen.set_statistics(qm9.num_atoms[rows], qm9.properties["alpha"][rows])
    r = conditional_mae(gen, pred, qm9, rows, n=16)
    assert r["n"] == 16 and np.isfinite(r["mae"]) and r["mae"] > 0 and "molecules" not in r
    r2 = conditional_mae(gen, pred, qm9, rows, n=16, return_molecules=True)
    assert r2["mae"] == r["mae"] and len(r2["molecules"]) == 16  # same seed, same draw


def test_train_predictor_run_folder_resumes_and_refuses_other_settings(tmp_path, qm9, splits):
    out, rows, val = tmp_path / "pred", splits["first_half"][:200], splits["valid"][:32]
    kw = {**SMALL, "val_rows": val}
    p1, prog = train_predictor(out, "alpha", qm9, rows, max_seconds=600, max_steps=3, **kw)
    assert prog["steps"] == 3 and not p1.training and np.isfinite(prog["last_loss"])
    assert {"config.yaml", "versions.json", "model.pt"} <= {p.name for p in out.iterdir()}
    assert (out / "checkpoints" / "last.ckpt").exists()
    w1 = {k: v.clone() for k, v in p1.state_dict().items()}
    # a larger budget continues from the saved weights and Adam state; the seconds add up
    p2, prog2 = train_predictor(out, "alpha", qm9, rows, max_seconds=600, max_steps=5, **kw)
    assert prog2["steps"] == 5 and prog2["train_seconds"] > prog["train_seconds"]
    assert any(not torch.equal(w1[k], v) for k, v in p2.state_dict().items())
    saved = torch.load(out / "checkpoints" / "last.ckpt", weights_only=False)
    assert saved["optimizer_states"][0]["state"][0]["step"] == 5  # Adam moments carried over, not restarted
    # the budget already spent: loads without training
    p3, prog3 = train_predictor(out, "alpha", qm9, rows, max_seconds=600, max_steps=5, **kw)
    assert prog3["steps"] == 5 and all(torch.equal(v, p2.state_dict()[k]) for k, v in p3.state_dict().items())
    exported = load_predictor(out)  # the run folder's model.pt
    assert all(torch.equal(v, p2.state_dict()[k]) for k, v in exported.state_dict().items())
    with pytest.raises(ResumeError, match="hidden: 8 -> 16"):
        train_predictor(out, "alpha", qm9, rows, max_seconds=600, max_steps=6, **{**kw, "hidden": 16})
    with pytest.raises(ResumeError, match="rows_sha1"):
        train_predictor(out, "alpha", qm9, splits["second_half"][:200], max_seconds=600, max_steps=6, **kw)


def test_train_predictor_resumes_exactly(tmp_path, qm9, splits):
    """Stopped at step 4, resumed to 9 (inside the first 'epoch' of 200 // 16 = 12 steps) and to 15 (across its
    end): the same weights and validation metrics as an uninterrupted 15-step run."""
    rows, kw = splits["first_half"][:200], {**SMALL, "val_rows": splits["valid"][:32], "val_every": 5}
    whole, _ = train_predictor(tmp_path / "whole", "alpha", qm9, rows, max_seconds=600, max_steps=15, **kw)
    for steps in (4, 9, 15):
        part, prog = train_predictor(tmp_path / "parts", "alpha", qm9, rows, max_seconds=600, max_steps=steps, **kw)
        assert prog["steps"] == steps
    for k, v in whole.state_dict().items():
        assert torch.equal(v, part.state_dict()[k]), k
    def untimed(run):  # Lightning's epoch counter goes on one further after a resume from a mid-epoch checkpoint
        return [{k: v for k, v in r.items() if k not in ("time_s", "epoch")} for r in read_metrics(tmp_path / run)]

    assert [r["step"] for r in untimed("whole")] == [5, 10, 15] and untimed("parts") == untimed("whole")


def test_drawn_batches_are_the_seeded_draws_at_every_step():
    rng = np.random.default_rng(3)
    draws = [rng.choice(50, size=8, replace=False).tolist() for _ in range(20)]
    s = DrawnBatches(50, 8, seed=3)
    assert len(s) == 6 and list(s) == draws[:6]
    late = DrawnBatches(50, 8, seed=3, step=9)  # resumed at step 9: the rest of the second "epoch"
    assert list(late) == draws[9:12]
    assert late.batch(2) == draws[2] and late.batch(13) == draws[13]  # back and forth
    assert len(DrawnBatches(5, 8).batch(0)) == 5  # a batch larger than the rows takes them all
    with pytest.raises(ConfigError):
        DrawnBatches(0, 8)


def test_predictor_pt_of_the_earlier_train_predictor_loads(tmp_path, small_molecules):
    """predictor_v0.pt was written by train_predictor before it moved onto compscope.train (see the .json)."""
    old = load_predictor(FIXTURE / "predictor_v0.pt")
    expected = json.loads((FIXTURE / "predictor_v0.json").read_text())["predictions_qm9_first12"]
    assert isinstance(old, PropertyPredictor) and old.prop == "alpha" and not old.training
    np.testing.assert_array_equal(old.predict(small_molecules), np.array(expected, dtype=np.float32))
    with pytest.raises(ConfigError, match="is a file"):
        train_predictor(FIXTURE / "predictor_v0.pt", "alpha", None, [0], max_seconds=1)
    with pytest.raises(ArtifactNotFoundError, match="not found"):
        load_predictor(tmp_path / "nothing.pt")
    (tmp_path / "junk.pt").write_text("not torch")
    with pytest.raises(ArtifactError, match="not a readable property predictor"):
        load_predictor(tmp_path / "junk.pt")
    torch.save({"kind": "something else"}, tmp_path / "other.pt")
    with pytest.raises(ArtifactError, match="not a compscope property predictor"):
        load_predictor(tmp_path / "other.pt")


def test_train_predictor_reproduces_the_earlier_loop_bit_for_bit(tmp_path, qm9, splits):
    """The settings that wrote predictor_v0.pt with the earlier loop (3 steps, seed 0, initial weights from
    torch.manual_seed(0), 1 torch thread as every test here) give the same weights, Adam moments and losses on
    compscope.train.fit."""
    old = torch.load(FIXTURE / "predictor_v0.pt", weights_only=True)
    pred, prog = train_predictor(tmp_path / "new", "alpha", qm9, splits["first_half"][:200], max_seconds=600,
                                 max_steps=3, val_rows=splits["valid"][:16], **SMALL)
    for k, v in old["state_dict"].items():
        assert torch.equal(v, pred.state_dict()[k]), k
    assert prog["last_loss"] == old["progress"]["last_loss"]
    adam = torch.load(tmp_path / "new" / "checkpoints" / "last.ckpt", weights_only=False)["optimizer_states"][0]
    for i, s in old["optimizer"]["state"].items():
        assert all(torch.equal(s[k], adam["state"][i][k]) for k in ("step", "exp_avg", "exp_avg_sq")), i
