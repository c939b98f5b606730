"""`compscope sample chain` / `compscope sample compare` end to end on alanine dipeptide: real OpenMM MD frames,
pairs split by trajectory, a (briefly) trained kernel, a resumed chain, the comparison with MD."""

import json

import h5py
import numpy as np
import pytest
from typer.testing import CliRunner

from compscope.analysis import ALANINE_DIPEPTIDE_PHI, ALANINE_DIPEPTIDE_PSI, dihedral_angles
from compscope.cli import app

pytest.importorskip("openmm")
runner = CliRunner()


def _md_file(path, n_rep=3, n_frames=40, every=10, seed=0, solvent="vacuum"):
    """A `compscope md reference` layout file written by real OpenMM Langevin MD (2 fs, HBonds, 300 K)."""
    import openmm as mm
    from openmm import unit

    from compscope.integrations.openmm_systems import alanine_dipeptide_system

    pdb, system = alanine_dipeptide_system(solvent, "HBonds")
    with h5py.File(path, "w") as h5:
        h5.attrs.update({"system": "alanine-dipeptide (ACE-ALA-NME)", "temperature_K": 300.0, "dt_fs": 2.0,
                         "save_every": every, "solvent": solvent})
        h5["atomic_numbers"] = np.array([a.element.atomic_number for a in pdb.topology.atoms()])
        for r in range(n_rep):
            integ = mm.LangevinMiddleIntegrator(300 * unit.kelvin, 1 / unit.picosecond, 2 * unit.femtosecond)
            integ.setRandomNumberSeed(seed + r + 1)
            ctx = mm.Context(system, integ, mm.Platform.getPlatformByName("Reference"))
            ctx.setPositions(pdb.positions)
            mm.LocalEnergyMinimizer.minimize(ctx)
            ctx.setVelocitiesToTemperature(300 * unit.kelvin, seed + r + 1)
            frames = []
            for _ in range(n_frames):
                integ.step(every)
                frames.append(ctx.getState(getPositions=True).getPositions(asNumpy=True).value_in_unit(
                    unit.angstrom))
            pos = np.asarray(frames)
            g = h5.create_group(f"replicas/{r:04d}")
            g.attrs.update({"seed": seed + r, "steps": n_frames * every, "wall_s": 1.0})
            g["positions"] = pos
            g["time_ps"] = 0.002 * every * np.arange(1, n_frames + 1)
            g["phi"] = dihedral_angles(pos, ALANINE_DIPEPTIDE_PHI)
            g["psi"] = dihedral_angles(pos, ALANINE_DIPEPTIDE_PSI)


def test_chain_and_compare_cli(tmp_path):
    from compscope.sampling import train_transition, transition_pairs

    md = tmp_path / "md.h5"
    _md_file(md)
    pairs = transition_pairs(md, lag_ps=0.04, fractions=(1, 1, 1), seed=0)
    assert all(len(v) == 1 for v in pairs["replicas"].values())
    train_transition(pairs, tmp_path / "kernel", flow={"hidden": 16, "num_layers": 2, "init_scale": 0.02},
                     batch_size=16, trainer={"max_epochs": 1, "progress_bar": False})
    out = tmp_path / "chain.h5"
    args = ["sample", "chain", str(tmp_path / "kernel"), "--system", "alanine-dipeptide", "--chains", "2",
            "--out", str(out), "--proposals", "4", "--local", "1", "--checkpoint-every", "3"]
    res = runner.invoke(app, [*args, "--steps", "6"])
    assert res.exit_code == 0, res.output
    assert "acceptance" in res.output and "NaN/inf proposals" in res.output
    res = runner.invoke(app, [*args, "--steps", "6"])
    assert res.exit_code == 2 and "--resume" in res.output  # an existing chain is never overwritten
    res = runner.invoke(app, [*args, "--steps", "9", "--resume"])
    assert res.exit_code == 0, res.output
    with h5py.File(out) as h5:
        assert h5["positions"].shape == (9, 2, 22, 3) and h5.attrs["exact"]
        assert h5.attrs["mh_steps"] == 9 * 4 * 2
    res = runner.invoke(app, ["sample", "compare", str(out), str(md), "--out", str(tmp_path / "cmp")])
    assert res.exit_code == 0, res.output
    assert "ESS/s basin indicator" in res.output and "Ramachandran JS" in res.output
    rep = json.loads((tmp_path / "cmp" / "compare.json").read_text())
    assert rep["first"]["n_trajectories"] == 2 and rep["second"]["n_trajectories"] == 3
    assert 0 <= rep["ramachandran_js"] <= np.log(2)
    assert "ESS/s TIC0" in res.output and rep["first"]["ess"]["tic0_first_zero"] >= 0
    for png in ("ess_per_s.png", "ramachandran.png", "phi_profile.png"):
        assert (tmp_path / "cmp" / png).stat().st_size > 3000
    # bad input: another system, a model of another molecule, a file that is no chain
    res = runner.invoke(app, [*args[:4], "dw4", *args[5:], "--steps", "9"])
    assert res.exit_code == 2 and "unknown system" in res.output
    res = runner.invoke(app, ["sample", "compare", str(tmp_path / "kernel" / "config.yaml"), str(md)])
    assert res.exit_code == 2


def test_kernel_cli_trains_the_shipped_torsion_config_and_chains_with_it(tmp_path):
    from pathlib import Path

    config = Path(__file__).resolve().parents[2] / "configs" / "sampling" / "torsion_kernel.yaml"
    md = tmp_path / "md.h5"
    _md_file(md, n_rep=2, n_frames=30)
    args = ["sample", "kernel", str(config), "--out", str(tmp_path / "k"), "--set", f"data.md={md}",
            "--set", "data.lag_ps=0.2", "--set", "trainer.max_epochs=2", "--set", "trainer.progress_bar=false"]
    r = runner.invoke(app, args)
    assert r.exit_code == 0, r.output
    assert (tmp_path / "k" / "model.pt").exists() and "model.pt" in r.output
    r = runner.invoke(app, ["sample", "chain", str(tmp_path / "k"), "--steps", "6", "--chains", "2",
                            "--proposals", "2", "--local", "1", "--out", str(tmp_path / "c.h5")])
    assert r.exit_code == 0, r.output
    with h5py.File(tmp_path / "c.h5") as h5:
        cfg = json.loads(h5.attrs["config"])
        assert cfg["sampler"]["proposal"]["name"] == "torsion" and h5["positions"].shape[:2] == (6, 2)
    # the batched numba energy of the same System and HMC as the local move
    r = runner.invoke(app, ["sample", "chain", str(tmp_path / "k"), "--steps", "4", "--chains", "2",
                            "--proposals", "2", "--local", "1", "--platform", "numba", "--local-sampler", "hmc",
                            "--local-step", "0.01", "--local-leapfrog", "3", "--out", str(tmp_path / "c2.h5")])
    assert r.exit_code == 0, r.output
    with h5py.File(tmp_path / "c2.h5") as h5:
        cfg = json.loads(h5.attrs["config"])
        assert cfg["target"]["platform"] == "numba" and cfg["sampler"]["local"]["name"] == "hmc"
        assert cfg["sampler"]["local"]["n_leapfrog"] == 3 and h5.attrs["local_accepted"] > 0
    bad = runner.invoke(app, ["sample", "kernel", str(config), "--out", str(tmp_path / "k2"), "--set",
                              "data.lag_ps=0.2"])  # the config's md file does not exist here
    assert bad.exit_code != 0 and "does not exist" in bad.output
    bad = runner.invoke(app, ["sample", "kernel", str(config), "--out", str(tmp_path / "k3"), "--set", "colour=1"])
    assert bad.exit_code != 0 and "unknown key" in bad.output


def test_implicit_solvent_is_a_second_system(tmp_path):
    """Alanine dipeptide in OBC2 implicit solvent: the target is OpenMM's energy of that System in kT; a torsion
    kernel trained on implicit-solvent frames chains on it, and is refused on the vacuum system (and vice versa)."""
    from pathlib import Path

    import openmm as mm
    from openmm import unit

    from compscope.integrations.openmm_systems import alanine_dipeptide_system
    from compscope.sampling import MOLAR_GAS_CONSTANT_KJ, alanine_dipeptide

    pdb, system = alanine_dipeptide_system("obc", constraints=None)
    ctx = mm.Context(system, mm.VerletIntegrator(0.001), mm.Platform.getPlatformByName("Reference"))
    ctx.setPositions(pdb.positions)
    e = ctx.getState(getEnergy=True).getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole)
    x = np.asarray(pdb.getPositions(asNumpy=True).value_in_unit(unit.angstrom))[None]
    u_obc, _ = alanine_dipeptide(solvent="obc").evaluate(x)
    u_vac, _ = alanine_dipeptide().evaluate(x)
    np.testing.assert_allclose(u_obc[0], e / (MOLAR_GAS_CONSTANT_KJ * 300.0), rtol=1e-9)
    assert u_obc[0] < u_vac[0] - 10.0  # generalized-Born solvation of the peptide: tens of kT

    config = Path(__file__).resolve().parents[2] / "configs" / "sampling" / "torsion_kernel.yaml"
    md = tmp_path / "md_obc.h5"
    _md_file(md, n_rep=2, n_frames=30, solvent="obc")
    r = runner.invoke(app, ["sample", "kernel", str(config), "--out", str(tmp_path / "k"), "--set", f"data.md={md}",
                            "--set", "data.lag_ps=0.2", "--set", "trainer.max_epochs=1", "--set",
                            "trainer.progress_bar=false", "--set", "system=alanine-dipeptide-obc"])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["sample", "kernel", str(config), "--out", str(tmp_path / "k0"), "--set", f"data.md={md}",
                            "--set", "data.lag_ps=0.2", "--set", "system=alanine-dipeptide"])
    assert r.exit_code != 0 and "was run in obc" in r.output  # a vacuum kernel from implicit-solvent MD
    chain = ["sample", "chain", str(tmp_path / "k"), "--steps", "4", "--chains", "2", "--proposals", "2", "--local",
             "1"]
    r = runner.invoke(app, [*chain, "--system", "alanine-dipeptide-obc", "--out", str(tmp_path / "c.h5")])
    assert r.exit_code == 0, r.output
    with h5py.File(tmp_path / "c.h5") as h5:
        assert json.loads(h5.attrs["config"])["target"]["name"] == "ala2-obc" and h5.attrs["system"] == \
            "alanine-dipeptide-obc"
    r = runner.invoke(app, [*chain, "--system", "alanine-dipeptide", "--out", str(tmp_path / "c2.h5")])
    assert r.exit_code != 0 and "alanine-dipeptide-obc" in r.output  # a kernel of the other system
    r = runner.invoke(app, [*chain, "--system", "alanine-dipeptide-obc", "--platform", "numba", "--out",
                            str(tmp_path / "c3.h5")])
    assert r.exit_code == 0, r.output  # the batched numba energy evaluates OBC2 (integrations.openmm_numba)
    with h5py.File(tmp_path / "c3.h5") as h5:
        assert json.loads(h5.attrs["config"])["target"]["platform"] == "numba"
    r = runner.invoke(app, ["sample", "compare", str(tmp_path / "c.h5"), str(md), "--out", str(tmp_path / "cmp")])
    assert r.exit_code == 0, r.output
