"""`compscope md run` through the real typer app; every shipped configs/md/*.yaml builds."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from ase.io import write
from typer.testing import CliRunner

from compscope.cli import app
from compscope.md import build_from_config, load_potential
from compscope.models.artifacts import ArtifactError

CONFIGS = sorted((Path(__file__).resolve().parents[2] / "configs" / "md").glob("*.yaml"))


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_every_shipped_config_builds(path):
    pot = build_from_config(yaml.safe_load(path.read_text()))
    assert pot.cutoff > 0


def test_cli_run_and_resume(ar_cluster, tmp_path):
    start = tmp_path / "ar13.xyz"
    write(start, ar_cluster)
    cfg = str(CONFIGS[[p.name for p in CONFIGS].index("lj_argon.yaml")])
    out = tmp_path / "run"
    args = ["md", "run", cfg, str(start), "--steps", "40", "--dt", "4", "--temperature", "60", "--replicas", "3",
            "--out", str(out), "--traj-every", "20", "--integrator", "nhc", "--no-progress"]
    r = CliRunner().invoke(app, args)
    assert r.exit_code == 0, r.output
    assert "3/3 replicas stable" in r.output and "ns/day" in r.output
    for f in ("trajectory.h5", "trajectory.extxyz", "restart.pt", "summary.json", "energy_temperature.png"):
        assert (out / f).exists(), f
    r = CliRunner().invoke(app, [*args[:5], "60", *args[6:], "--resume"])
    assert r.exit_code == 0, r.output
    assert "60 steps" in r.output


def test_cli_no_bond_check_runs_on_where_a_bond_breaks(tmp_path):
    """H2 started compressed to 0.52 Å (1.4 eV of Morse energy, still bound) swings out past 1.1 Å: the default bond
    check stops it (1.6 x its start length), --no-bond-check lets it run on (the hot start only sets the
    temperature limit, 5 x 4000 K, out of the way)."""
    from ase import Atoms

    start = tmp_path / "h2.extxyz"
    write(start, Atoms("H2", positions=[[0, 0, 0], [0, 0, 0.52]]))
    cfg = str(CONFIGS[[p.name for p in CONFIGS].index("morse_h2.yaml")])
    base = ["md", "run", cfg, str(start), "--steps", "200", "--dt", "0.25", "--integrator", "nve",
            "--temperature", "4000", "--no-progress", "--no-extxyz", "--no-plots"]
    r = CliRunner().invoke(app, [*base, "--out", str(tmp_path / "a")])
    assert r.exit_code == 0, r.output
    assert "0/1 replicas stable" in r.output and "bond_stretch" in r.output
    r = CliRunner().invoke(app, [*base, "--out", str(tmp_path / "b"), "--no-bond-check"])
    assert r.exit_code == 0, r.output
    assert "1/1 replicas stable" in r.output


def test_cli_bad_input(ar_cluster, tmp_path):
    start = tmp_path / "ar13.xyz"
    write(start, ar_cluster)
    r = CliRunner().invoke(app, ["md", "run", str(tmp_path / "nope.pt"), str(start), "--steps", "1"])
    assert r.exit_code == 2 and "model file" in r.output and "not found" in r.output
    cfg = str(CONFIGS[[p.name for p in CONFIGS].index("lj_argon.yaml")])
    r = CliRunner().invoke(app, ["md", "run", cfg, str(tmp_path / "missing.xyz")])
    assert r.exit_code == 2 and "start structure" in r.output
    bad = ar_cluster.copy()
    bad.positions[1] = bad.positions[0] + [0.2, 0, 0]
    write(start, bad)
    r = CliRunner().invoke(app, ["md", "run", cfg, str(start), "--steps", "1", "--out", str(tmp_path / "o")])
    assert r.exit_code == 2 and "overlapping atoms" in r.output
    write(start, ar_cluster)
    r = CliRunner().invoke(app, ["md", "run", cfg, str(start), "--steps", "1", "--repartition"])
    assert r.exit_code == 2 and "--hydrogen-mass" in r.output
    r = CliRunner().invoke(app, ["md", "run", cfg, str(start), "--steps", "1", "--hydrogen-mass", "3",
                                 "--repartition", "--out", str(tmp_path / "hmr")])
    assert r.exit_code == 0, r.output  # argon has no hydrogens: nothing to change, the run goes on
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a model")
    with pytest.raises(ArtifactError, match="not a readable"):
        load_potential(junk)


def test_cli_reference_bad_input(tmp_path):
    r = CliRunner().invoke(app, ["md", "reference", "chignolin", "--out", str(tmp_path / "x.h5")])
    assert r.exit_code == 2 and "only 'alanine-dipeptide'" in r.output
    r = CliRunner().invoke(app, ["md", "reference", "alanine-dipeptide", "--solvent", "water",
                                 "--out", str(tmp_path / "x.h5")])
    assert r.exit_code == 2 and "unknown solvent" in r.output
