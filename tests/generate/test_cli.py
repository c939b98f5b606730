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
        "seed": 0,
        "out": str(tmp_path / "run"),
        "model": {"class_path": "compscope.generate.FlowMatching",
                  "init_args": {"hidden": 8, "num_layers": 1, "sample_steps": 3, **model_args}},
        "data": {"init_args": {"split": "train", "batch_size": 8, "max_molecules": 64, "val_molecules": 16}},
        "module": {"init_args": {"lr": 1e-3}},
        "trainer": {"max_steps": 3, "max_time_minutes": None, "val_check_interval": 2, "ema_decay": 0.9,
                    "progress_bar": False},
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
    r = runner.invoke(app, ["generate", "train", str(cfg_path), "--resume", "--set", "trainer.max_steps=5"])
    assert r.exit_code == 0, r.output
    assert torch.load(model, weights_only=False)["train_info"]["global_step"] == 5
    saved = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    assert saved["data"]["init_args"]["seed"] == 0 and saved["trainer"]["ema_warmup"] is False  # defaults written
    # resuming with a changed model (or module) section is refused, naming the key
    r = runner.invoke(app, ["generate", "train", str(cfg_path), "--resume", "--set", "model.hidden=16"])
    assert r.exit_code == 2 and "model.init_args.hidden: 8 -> 16" in r.output, r.output
    r = runner.invoke(app, ["generate", "train", str(cfg_path), "--resume", "--set", "module.lr=0.1"])
    assert r.exit_code == 2 and "module.init_args.lr" in r.output, r.output
    # --out puts the run elsewhere
    r = runner.invoke(app, ["generate", "train", str(cfg_path), "--out", str(tmp_path / "other"),
                            "--set", "trainer.max_steps=1"])
    assert r.exit_code == 0 and (tmp_path / "other" / "model.pt").exists(), r.output

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
    cfg["data"]["init_args"]["split"] = "second_half"
    cfg["trainer"]["max_steps"] = 2
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
    for cfg, msg in [
        ({"data": {"init_args": {"split": "train"}}}, "'model' section"),
        ({"model": {"class_path": "compscope.generate.Nope"}}, "has no 'Nope'"),
        ({"model": {"class_path": "compscope.generate.EDM", "init_args": {"condition": "polarizability"}}},
         "unknown QM9 property 'polarizability'"),
        ({"model": {"class_path": "compscope.generate.EDM", "init_args": {"hiden": 8}}}, "['hiden']"),
        ({"model": {"class_path": "EDM"}, "run": {"max_steps": 3}}, "unknown top-level key(s) ['run']"),
        ({"model": {"class_path": "EDM"}, "data": {"init_args": {"condition": "alpha"}}},
         "the model conditions on None"),
        ({"model": {"class_path": "EDM"}, "module": {"init_args": {"ema_decay": 0.9}}}, "['ema_decay']"),
        ({"model": {"class_path": "EDM"}, "trainer": {"max_time": "00:01:00:00"}}, "['max_time']"),
        ({"model": {"class_path": "EDM"}, "data": {"init_args": {"split": "everything"}}}, "unknown split"),
    ]:
        p.write_text(yaml.safe_dump({**cfg, "out": str(tmp_path / "run")}))
        r = runner.invoke(app, ["generate", "train", str(p)])
        assert r.exit_code == 2 and msg in r.output, (cfg, r.output)
        assert "Traceback" not in r.output
    assert not (tmp_path / "run").exists()  # a bad config leaves no run folder behind
    r = runner.invoke(app, ["generate", "train", str(tmp_path / "missing.yaml")])
    assert r.exit_code == 2 and "not found" in r.output
    r = runner.invoke(app, ["generate", "train", str(p), "--resume", "--set", "data.init_args.split=train"])
    assert r.exit_code == 2 and "nothing to resume" in r.output


def test_killed_and_resumed_run_equals_an_uninterrupted_one(tmp_path, qm9):
    """Stopped at step 5 (mid-epoch: 8 batches per epoch) and resumed to 11, the generator ends bit for bit where
    an uninterrupted 11-step run ends: same batches, same noise, same EMA."""
    from compscope.generate import train

    _, cfg = _config(tmp_path)
    cfg["trainer"].update(val_check_interval=4, ema_decay=0.9)
    first = {**cfg, "trainer": {**cfg["trainer"], "max_steps": 5}}
    train(first, out=tmp_path / "a")
    train(cfg | {"trainer": {**cfg["trainer"], "max_steps": 11}}, out=tmp_path / "a", resume=True)
    train(cfg | {"trainer": {**cfg["trainer"], "max_steps": 11}}, out=tmp_path / "b")
    a, b = (torch.load(tmp_path / d / "model.pt", weights_only=False) for d in ("a", "b"))
    assert a["train_info"]["global_step"] == b["train_info"]["global_step"] == 11
    assert all(torch.equal(v, b["state_dict"][k]) for k, v in a["state_dict"].items())
    ra, rb = (torch.load(tmp_path / d / "checkpoints" / "last.ckpt", weights_only=False)["current_model_state"]
              for d in ("a", "b"))
    assert all(torch.equal(v, rb[k]) for k, v in ra.items())
