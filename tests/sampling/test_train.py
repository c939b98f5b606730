"""Flow training on compscope.train: a tiny config trains, writes its run folder, resumes, refuses changes; the
shipped config resolves."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from compscope.cli import app
from compscope.errors import ConfigError, ResumeError
from compscope.sampling import load_positions, train_flow
from compscope.sampling._train import resolve_config
from compscope.train import load_yaml, read_metrics

from .conftest import FIXTURES

# flow configs (kernel configs, with a top-level `kind`, are tested by test_chain_cli.py)
CONFIGS = sorted(p for p in (Path(__file__).resolve().parents[2] / "configs" / "sampling").glob("*.yaml")
                 if "kind" not in load_yaml(p))
runner = CliRunner()


def _config(tmp_path: Path) -> dict:
    data = str(FIXTURES / "dw4_test_300.npy")
    return {"seed": 0, "flow": {"hidden": 8, "num_layers": 1, "n_steps": 2},
            "data": {"target": "dw4", "train": data, "valid": data, "n_train": 32, "n_valid": 16, "batch_size": 16},
            "module": {"lr": 1e-3, "train_steps": 1},
            "trainer": {"max_epochs": 1, "progress_bar": False, "num_threads": 1}}


def test_train_resume_and_refuse(tmp_path):
    cfg = _config(tmp_path)
    res = train_flow(cfg, out=tmp_path / "run")
    assert res.best.exists() and (tmp_path / "run" / "config.yaml").exists()
    rows = read_metrics(tmp_path / "run")
    assert np.isfinite(rows[-1]["val_nll"]) and "val_nll_per_dof" in rows[-1]
    more = {**cfg, "trainer": {**cfg["trainer"], "max_epochs": 2}}
    train_flow(more, out=tmp_path / "run", resume=True)
    assert len(read_metrics(tmp_path / "run")) == 2
    with pytest.raises(ResumeError, match="flow.hidden"):
        train_flow({**more, "flow": {**cfg["flow"], "hidden": 16}}, out=tmp_path / "run", resume=True)


def test_cli_train_errors(tmp_path):
    res = runner.invoke(app, ["sample", "train", str(tmp_path / "missing.yaml")])
    assert res.exit_code == 2 and "not found" in res.output
    import yaml

    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({**_config(tmp_path), "flow": {"hiden": 8}}))
    res = runner.invoke(app, ["sample", "train", str(path), "--out", str(tmp_path / "r")])
    assert res.exit_code == 2 and "hiden" in res.output


@pytest.mark.parametrize("path", CONFIGS, ids=[p.stem for p in CONFIGS])
def test_shipped_configs_resolve(path):
    cfg = resolve_config(load_yaml(path))
    from compscope.sampling import get_target

    n = get_target(cfg["data"]["target"]).n_particles
    assert cfg["flow"]["n_particles"] == n and cfg["trainer"]["monitor"] == "val_nll"
    assert len(cfg["flow"].get("atom_types") or [0] * n) == n
    with pytest.raises(ConfigError, match="unknown top-level"):
        resolve_config({**load_yaml(path), "lr": 1.0})


def test_load_positions_shapes(tmp_path):
    x = load_positions(FIXTURES / "dw4_test_300.npy", "dw4")
    assert x.shape == (300, 4, 2) and x.mean(1).abs().max() < 1e-12 and x.dtype == torch.float64
    from compscope.sampling import SamplingInputError

    with pytest.raises(SamplingInputError, match="coordinates"):
        load_positions(FIXTURES / "lj13_test_300.npy", "dw4")
    with pytest.raises(SamplingInputError, match="expected"):
        load_positions(tmp_path / "x.txt", "dw4")


def test_flow_matching_alignment_shortens_paths_and_trains(tmp_path, dw4_frames):
    from compscope.sampling import FlowModule

    torch.manual_seed(0)
    module = FlowModule({"n_particles": 4, "dim": 2, "hidden": 8, "num_layers": 1}, loss="flow_matching")
    module.flow.double()
    # a near-identity field at initialisation: the loss is the mean squared path length per dof, which the
    # equivariant alignment (OT pairing + permutation + orthogonal map) shortens most
    losses = {}
    for a in ("none", "ot", "equivariant"):
        module.hparams.alignment = a
        torch.manual_seed(1)
        losses[a] = module.flow_matching_loss(dw4_frames[:64]).item()
    assert losses["equivariant"] < losses["ot"] < losses["none"]
    # trains through the shared trainer; validation is the exact NLL
    cfg = _config(tmp_path)
    cfg["module"] = {"lr": 1e-3, "loss": "flow_matching", "alignment": "equivariant", "sigma": 0.01}
    train_flow(cfg, out=tmp_path / "fm")
    rows = read_metrics(tmp_path / "fm")
    assert np.isfinite(rows[-1]["val_nll"]) and np.isfinite(rows[-1].get("train_loss", rows[-1]["val_nll"]))
    with pytest.raises(ConfigError, match="module.loss"):
        train_flow({**cfg, "module": {"loss": "kl"}}, out=tmp_path / "bad")


def test_init_from_fine_tunes_a_trained_flow(tmp_path):
    from compscope.models.artifacts import ArtifactError
    from compscope.sampling import load_flow

    cfg = _config(tmp_path)
    cfg["module"] = {"lr": 1e-3, "loss": "flow_matching"}
    train_flow(cfg, out=tmp_path / "fm")
    start, _ = load_flow(tmp_path / "fm")
    tune = {**_config(tmp_path), "init_from": str(tmp_path / "fm"),
            "module": {"lr": 0.0, "loss": "likelihood", "train_steps": 1}}
    train_flow(tune, out=tmp_path / "ft")
    tuned, _ = load_flow(tmp_path / "ft" / "checkpoints" / "last.ckpt")
    for a, b in zip(start.state_dict().values(), tuned.state_dict().values()):  # lr 0: the weights it started from
        assert torch.equal(a, b)
    with pytest.raises(ArtifactError, match="differs"):
        train_flow({**tune, "flow": {**tune["flow"], "hidden": 16}}, out=tmp_path / "bad")


def test_runs_from_before_added_options_resume(tmp_path):
    # a run folder written before `init_from` and module.loss/alignment/sigma existed resumes unchanged
    import yaml

    cfg = _config(tmp_path)
    train_flow(cfg, out=tmp_path / "old")
    path = tmp_path / "old" / "config.yaml"
    saved = yaml.safe_load(path.read_text())
    del saved["init_from"]
    for k in ("loss", "alignment", "sigma"):
        del saved["module"][k]
    path.write_text(yaml.safe_dump(saved))
    train_flow({**cfg, "trainer": {**cfg["trainer"], "max_epochs": 2}}, out=tmp_path / "old", resume=True)
    assert len(read_metrics(tmp_path / "old")) == 2
