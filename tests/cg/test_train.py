"""CG training on the shared trainer: shipped configs build, force matching and denoising train, resume replays the
uninterrupted run, bad data is refused (no forces: how to regenerate; NaN forces: left out and counted)."""

from __future__ import annotations

import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from compscope.cg import (
    CGDataError,
    CGDataModule,
    CGModule,
    fold_split,
    load_cg,
    map_reference,
    resolve_config,
    split_frames,
    train,
)
from compscope.errors import ConfigError, ResumeError
from compscope.models import CGPotential
from compscope.testing import assert_same_weights
from compscope.train import load_yaml

from .conftest import REF

CONFIGS = sorted((Path(__file__).resolve().parents[2] / "configs" / "cg").glob("*.yaml"))
TINY_NET = {"r_max": 6.0, "hidden_irreps": "4x0e+4x1o", "num_interactions": 1, "correlation": 2,
            "radial_hidden": [8], "num_bessel": 4, "avg_num_neighbors": 4.0}


def _cfg(path, **module):
    return {"seed": 0, "data": {"path": str(path), "n_train": 120, "n_valid": 40, "batch_size": 40},
            "model": {"net": TINY_NET}, "module": {"lr": 0.01, **module},
            "trainer": {"max_epochs": 2, "progress_bar": False}}


@pytest.mark.parametrize("path", CONFIGS, ids=[p.name for p in CONFIGS])
def test_shipped_configs_build(path, cg_file):
    cfg = load_yaml(path)
    cfg["data"]["path"] = str(cg_file)
    full = resolve_config(cfg)
    assert full["trainer"]["monitor"] == "val_force_rmse" and full["model"]["dihedral_prior"] is True
    from compscope.cg import CGDataModule, model_kwargs

    data = CGDataModule(**full["data"])
    data.load()
    module = CGModule(model_kwargs(full, data), temperature=300.0, **full["module"])
    assert isinstance(module.model, CGPotential)
    assert (module.model.net is not None) != (module.model.feature_net is not None)  # one network each


def test_fold_split_blocks():
    tr, va = fold_split([10, 10, 20], fold=1, n_folds=4)
    assert va.tolist() == list(range(10, 20)) and len(tr) == 30
    tr, va = fold_split([10, 20], fold=None)
    assert va.tolist() == [9, 28, 29]
    with pytest.raises(ConfigError):
        fold_split([10], fold=4)


def test_validation_frames_never_come_from_the_held_out_block():
    lengths = [400, 400, 800]
    for fold in (0, 1, 3, None):
        pool, held = fold_split(lengths, fold)
        tr, va, he = split_frames(lengths, fold, n_train=100, n_valid=30, valid_fraction=0.1)
        assert he.tolist() == held.tolist()
        assert len(tr) == 100 and len(va) == 30
        assert not set(va) & set(held) and not set(tr) & set(held) and not set(tr) & set(va)
        assert set(va) <= set(pool[-len(pool) // 10:])  # the last tenth of the training blocks
        if fold in (0, 3):  # one contiguous training stretch: validation is its end, after every training frame
            assert va.min() > tr.max()
    tr, va, _ = split_frames(lengths, 1, n_train=None, n_valid=None, valid_fraction=0.05)
    assert len(tr) + len(va) == 1200 and len(va) == 60
    with pytest.raises(ConfigError):
        split_frames(lengths, 0, valid_fraction=0.0)
    with pytest.raises(CGDataError):
        split_frames([2], None, valid_fraction=0.5)  # 1 training-block frame cannot give one to validation too


def test_data_module_validates_off_the_held_out_block(cg_file):
    data = CGDataModule(cg_file, fold=2, n_train=50, n_valid=20, valid_fraction=0.1)
    data.load()
    d = load_cg(cg_file)
    x = np.concatenate(d.positions)
    _, held = fold_split([len(p) for p in d.positions], 2)
    held_rows = {x[i].tobytes() for i in held}
    valid = data._valid.tensors[0].numpy().astype(x.dtype)
    assert len(valid) == 20 and not any(v.tobytes() in held_rows for v in valid)


@pytest.mark.parametrize("loss", ["force_matching", "denoising"])
def test_training_lowers_the_force_error(cg_file, tmp_path, loss):
    cfg = _cfg(cg_file, loss=loss, noise=0.02)
    cfg["trainer"]["max_epochs"] = 4
    res = train(cfg, out=tmp_path / "run")
    import json

    rows = [json.loads(s) for s in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    val = [r["val_force_rmse"] for r in rows if "val_force_rmse" in r]
    assert len(val) == 4 and val[-1] < val[0]
    model = res.run.file("model.pt")
    from compscope.models.artifacts import load_model

    m = load_model(model)
    x = torch.as_tensor(np.concatenate(load_cg(cg_file).positions)[:3], dtype=torch.float32)
    assert torch.isfinite(m.energy_forces(x)[1]).all()


def test_resume_continues_the_uninterrupted_run(cg_file, tmp_path):
    cfg = _cfg(cg_file, loss="denoising")
    full = train(cfg, out=tmp_path / "full")
    cfg1 = {**cfg, "trainer": {**cfg["trainer"], "max_epochs": 1}}
    train(cfg1, out=tmp_path / "part")
    resumed = train(cfg, out=tmp_path / "part", resume=True)
    assert resumed.trainer.global_step == full.trainer.global_step == 6
    assert_same_weights(full.run.file("model.pt"), resumed.run.file("model.pt"), atol=1e-6)
    with pytest.raises(ResumeError):
        train(_cfg(cg_file, loss="force_matching"), out=tmp_path / "part", resume=True)


def test_reference_without_forces_is_refused_with_how_to_regenerate(tmp_path):
    ref = tmp_path / "noforces.h5"
    shutil.copy(REF, ref)
    with h5py.File(ref, "a") as f:
        for r in f["replicas"]:
            del f["replicas"][r]["forces"]
    info = map_reference(ref, "backbone", tmp_path / "cg.h5")
    assert info["has_forces"] is False  # positions are still mapped (a prior or a flow can use them)
    with pytest.raises(CGDataError, match="has no forces") as err:
        train(_cfg(tmp_path / "cg.h5"), out=tmp_path / "run")
    assert "compscope md reference" in err.value.hint
    assert not (tmp_path / "run").exists()


def test_nan_forces_are_left_out_and_counted(tmp_path):
    ref = tmp_path / "nan.h5"
    shutil.copy(REF, ref)
    with h5py.File(ref, "a") as f:
        f0 = f["replicas/0000/forces"]
        bad = f0[:]
        bad[[3, 7], 11] = np.nan  # the hydrogen on N: aggregated into a bead
        f0[...] = bad
        f["replicas/0001/positions"][5, 0, 0] = np.inf
    info = map_reference(ref, "backbone", tmp_path / "cg.h5")
    assert info["n_dropped_nonfinite"] == 3 and info["n_frames"] == 397
    d = load_cg(tmp_path / "cg.h5")
    assert d.n_dropped_nonfinite == 3 and all(np.isfinite(f).all() for f in d.forces)
    assert len(d.positions[0]) == 98 and len(d.positions[1]) == 99


def test_denoising_sigma_schedule(cg_file):
    """module.noise as a list: one sigma per frame from the list, squared errors weighted by (sigma / max)^2; a
    list of one repeated sigma is the single-sigma loss; bad schedules are refused."""
    from compscope.cg import CGDataModule, model_kwargs

    full = resolve_config({"data": {"path": str(cg_file), "n_train": 64}, "model": {"net": None, "feature_net": {}}})
    data = CGDataModule(**full["data"])
    data.load()
    kwargs = model_kwargs(full, data)
    x, f = data._train.tensors[0][:16], data._train.tensors[1][:16]

    def loss(noise, seed=3):
        torch.manual_seed(0)
        module = CGModule(kwargs, loss="denoising", noise=noise, denoising_weight=1.0, temperature=300.0)
        module.log = lambda *a, **k: None  # no trainer attached
        torch.manual_seed(seed)
        return module, float(module.training_step((x, f), 0).detach())

    _, single = loss(0.01)
    _, repeated = loss([0.01, 0.01])
    assert abs(single - repeated) < 1e-6 * abs(single)
    module, mixed = loss([0.005, 0.02])
    torch.manual_seed(3)
    eps = torch.randn_like(x)
    sig = torch.tensor([0.005, 0.02])[torch.randint(2, (len(x),))][:, None, None]
    fm = ((module._forces(x) - f) ** 2).mean()
    dsm = ((sig / 0.02) ** 2 * (module._forces(x + sig * eps) + module.kT * eps / sig) ** 2).mean()
    assert abs(mixed - float((fm + dsm).detach())) < 1e-4 * mixed
    for bad in ([], [0.01, -0.01], 0.0):
        with pytest.raises(ConfigError, match="noise"):
            CGModule(kwargs, loss="denoising", noise=bad)
