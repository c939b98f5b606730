"""Committee training: members with their own seeds and run folders, threads from compscope.runtime."""

from __future__ import annotations

import yaml

from compscope.forcefield import train_committee

from .conftest import tiny_config


def test_serial_committee_members_train_and_resume_as_finished(tmp_path):
    cfg = tiny_config(tmp_path / "unused", trainer={"max_epochs": 1, "num_threads": None})
    paths = train_committee(cfg, n=2, out=tmp_path / "committee", base=tmp_path)
    assert [p.parent.name for p in paths] == ["member_0", "member_1"] and all(p.exists() for p in paths)
    seeds = [yaml.safe_load((p.parent / "config.yaml").read_text())["seed"] for p in paths]
    assert seeds == [0, 1]
    # a rerun finds the members finished and trains nothing
    mtimes = [p.stat().st_mtime for p in paths]
    assert train_committee(cfg, n=2, out=tmp_path / "committee", base=tmp_path) == paths
    assert [p.stat().st_mtime for p in paths] == mtimes


def test_parallel_members_get_their_share_of_the_threads(tmp_path):
    from compscope.forcefield._committee import _fit_member

    cfg = tiny_config(tmp_path / "m", trainer={"max_epochs": 1, "num_threads": None})
    path = _fit_member(cfg, str(tmp_path), 1)
    assert cfg["trainer"]["num_threads"] == 1
    assert yaml.safe_load((tmp_path / "m" / "config.yaml").read_text())["trainer"]["num_threads"] == 1
    assert path.endswith("model.pt")
