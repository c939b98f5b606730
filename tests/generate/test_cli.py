"""`compscope generate train|sample|evaluate` end to end on real QM9 (a few steps), and bad input."""

import shutil

import pytest
import torch
import yaml
from typer.testing import CliRunner

from compscope.cli import app

runner = CliRunner()


def _config(tmp_path, **model_args):
    cfg = {
        "model": {"class_path": "compscope.generate.FlowMatching",
                  "init_args": {"hidden": 8, "num_layers": 1, "sample_steps": 3, **model_args}},
        "data": {"split": "train", "batch_size": 8, "max_molecules": 64, "val_molecules": 16},
        "module": {"lr": 1e-3, "ema_decay": 0.9},
        "run": {"out": str(tmp_path / "run"), "max_steps": 3, "max_time": None, "val_every_steps": 2},
    }
    p = tmp_path / "cfg.yaml"
    p.write_text(yaml.safe_dump(cfg))
    return p, cfg


def test_train_resume_sample_evaluate(tmp_path, qm9):
    cfg_path, cfg = _config(tmp_path)
    r = runner.invoke(app, ["generate", "train", str(cfg_path)])
    assert r.exit_code == 0, r.output
    model = tmp_path / "run" / "model.pt"
    assert model.exists() and (tmp_path / "run" / "checkpoints" / "last.ckpt").exists()
    # a second start without --resume refuses, resume continues to a larger step budget
    r = runner.invoke(app, ["generate", "train", str(cfg_path)])
    assert r.exit_code == 2 and "--resume" in r.output
    r = runner.invoke(app, ["generate", "train", str(cfg_path), "--resume", "--max-steps", "5"])
    assert r.exit_code == 0, r.output
    assert torch.load(model, weights_only=False)["train_info"]["global_step"] == 5
    # resuming with a changed model section is refused
    cfg["model"]["init_args"]["hidden"] = 16
    cfg_path.write_text(yaml.safe_dump(cfg))
    r = runner.invoke(app, ["generate", "train", str(cfg_path), "--resume"])
    assert r.exit_code == 2 and "refusing to resume" in r.output

    out = tmp_path / "mols.sdf"
    r = runner.invoke(app, ["generate", "sample", str(model), "--n", "12", "--out", str(out),
                            "--png", str(tmp_path / "grid.png")])
    assert r.exit_code == 0, r.output
    assert "ms/molecule" in r.output and out.exists() and out.with_suffix(".xyz").exists()
    assert (tmp_path / "grid.png").stat().st_size > 1000
    from compscope.generate._io import read_molecules

    sdf, xyz = read_molecules(out), read_molecules(out.with_suffix(".xyz"))
    assert len(sdf) == len(xyz) == 12
    assert all(len(a[1]) == len(b[1]) for a, b in zip(sdf, xyz))
    r = runner.invoke(app, ["generate", "evaluate", str(out), "--no-novelty", "--json", str(tmp_path / "m.json")])
    assert r.exit_code == 0 and "mol stable" in r.output
    # unconditional model + --condition
    r = runner.invoke(app, ["generate", "sample", str(model), "--n", "2", "--condition", "alpha=80",
                            "--out", str(tmp_path / "x.sdf")])
    assert r.exit_code == 2 and "unconditional" in r.output


def test_conditional_train_and_sample(tmp_path, qm9):
    cfg_path, cfg = _config(tmp_path, condition="alpha")
    cfg["data"]["split"] = "second_half"
    cfg["run"]["max_steps"] = 2
    cfg_path.write_text(yaml.safe_dump(cfg))
    r = runner.invoke(app, ["generate", "train", str(cfg_path)])
    assert r.exit_code == 0, r.output
    model, out = tmp_path / "run" / "model.pt", tmp_path / "a80.sdf"
    r = runner.invoke(app, ["generate", "sample", str(model), "--n", "4", "--condition", "alpha=80",
                            "--out", str(out)])
    assert r.exit_code == 0, r.output
    from rdkit import Chem

    sdf = [m for m in Chem.SDMolSupplier(str(out), sanitize=False, removeHs=False)]
    assert len(sdf) == 4 and all(m.GetProp("alpha") == "80.0" for m in sdf)
    with pytest.warns(UserWarning, match="outside the training range"):
        r = runner.invoke(app, ["generate", "sample", str(model), "--n", "2", "--condition", "alpha=900",
                                "--out", str(tmp_path / "a900.sdf")])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["generate", "sample", str(model), "--n", "2", "--condition", "gap=3000",
                            "--out", str(tmp_path / "g.sdf")])
    assert r.exit_code == 2 and "conditioned on 'alpha', not 'gap'" in r.output
    r = runner.invoke(app, ["generate", "sample", str(model), "--n", "2", "--out", str(tmp_path / "none.sdf")])
    assert r.exit_code == 2 and "--condition alpha=" in r.output


def test_evaluate_real_qm9_molecules_from_xyz(tmp_path, qm9, splits):
    from compscope.generate._io import write_sdf

    mols = [(x.numpy(), t.numpy()) for x, t in qm9.molecules(splits["test"][:200])]
    write_sdf(mols, tmp_path / "real.sdf")
    r = runner.invoke(app, ["generate", "evaluate", str(tmp_path / "real.sdf"), "--no-novelty"])
    assert r.exit_code == 0, r.output
    stable = float(r.output.split("mol stable ")[1].split(" %")[0])
    assert stable > 85.0


@pytest.mark.parametrize("content,suffix,msg", [
    ("3\ncomment\nC 0 0 0\nH 1 0\n", ".xyz", "malformed xyz frame"),
    ("two\ncomment\n", ".xyz", "malformed xyz frame"),
    ("1\ncomment\nCl 0 0 0\n", ".xyz", "not QM9 elements"),
    ("not a mol block\n$$$$\n", ".sdf", "not a valid MOL block"),
    ("", ".sdf", "no molecules"),
    ("C 0 0 0\n", ".pdb", "use .sdf or .xyz"),
])
def test_evaluate_malformed_files(tmp_path, content, suffix, msg):
    p = tmp_path / f"bad{suffix}"
    p.write_text(content)
    r = runner.invoke(app, ["generate", "evaluate", str(p), "--no-novelty"])
    assert r.exit_code == 2 and msg in r.output, r.output


def test_sample_bad_condition_and_missing_model(tmp_path):
    r = runner.invoke(app, ["generate", "sample", str(tmp_path / "nope.pt"), "--out", str(tmp_path / "a.sdf")])
    assert r.exit_code == 2 and "not found" in r.output
    r = runner.invoke(app, ["generate", "sample", str(tmp_path / "nope.pt"), "--condition", "polar=3"])
    assert r.exit_code == 2 and "unknown QM9 property 'polar'" in r.output
    r = runner.invoke(app, ["generate", "sample", str(tmp_path / "nope.pt"), "--condition", "alpha"])
    assert r.exit_code == 2 and "NAME=VALUE" in r.output
    shutil.rmtree(tmp_path, ignore_errors=True)


def test_train_bad_config(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("data: {split: train}\n")
    r = runner.invoke(app, ["generate", "train", str(p)])
    assert r.exit_code == 2 and "'model' section" in r.output
    p.write_text(yaml.safe_dump({"model": {"class_path": "compscope.generate.Nope"}}))
    r = runner.invoke(app, ["generate", "train", str(p)])
    assert r.exit_code == 2 and "not found" in r.output
    p.write_text(yaml.safe_dump({"model": {"class_path": "compscope.generate.EDM",
                                           "init_args": {"condition": "polarizability"}}}))
    r = runner.invoke(app, ["generate", "train", str(p)])
    assert r.exit_code == 2 and "unknown QM9 property 'polarizability'" in r.output


def test_resumed_run_does_not_replay_the_first_epoch_order(qm9):
    from types import SimpleNamespace

    from compscope.generate import QM9DataModule

    dm = QM9DataModule(batch_size=8, max_molecules=64, val_molecules=8)
    dm.setup()

    def first_batch(step):
        dm.trainer = SimpleNamespace(global_step=step)
        return next(iter(dm.train_dataloader())).x

    assert torch.equal(first_batch(0), first_batch(0))  # reproducible
    assert not torch.equal(first_batch(0), first_batch(40))  # a resumed run reshuffles
