"""Replica-exchange settings of the tuned baseline (issue 21): hydrogen-mass repartitioning, the integrator guard, a
4 fs HMR run with bonds to hydrogen rigid that stops on a CPU budget and resumes, and what it stores."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from compscope.errors import CompscopeError, ConfigError
from compscope.integrations.openmm_systems import alanine_dipeptide_system, repartition_hydrogen_mass
from compscope.sampling import (
    ALA2_REFERENCE_DEFAULTS,
    alanine_dipeptide,
    check_integrator,
    read_replica_exchange_run,
    run_replica_exchange,
)

pytest.importorskip("openmmtools")


def _masses(system) -> np.ndarray:
    from openmm import unit

    return np.array([system.getParticleMass(i).value_in_unit(unit.dalton) for i in range(system.getNumParticles())])


def test_hydrogen_mass_repartitioning_keeps_the_total_mass():
    pdb, system = alanine_dipeptide_system("vacuum", "HBonds")
    before = _masses(system)
    repartition_hydrogen_mass(system, pdb.topology, 3.024)
    after = _masses(system)
    is_h = np.array([a.element.symbol == "H" for a in pdb.topology.atoms()])
    assert after.sum() == pytest.approx(before.sum(), abs=1e-9)
    np.testing.assert_allclose(after[is_h], 3.024)
    # each heavy atom lost exactly what its hydrogens gained (methyl carbons three times)
    n_h = np.zeros(len(after))
    for a, b in pdb.topology.bonds():
        for x, y in ((a, b), (b, a)):
            if y.element.symbol == "H" and x.element.symbol != "H":
                n_h[x.index] += 1
    np.testing.assert_allclose((before - after)[~is_h], n_h[~is_h] * (3.024 - before[is_h][0]), atol=1e-9)
    assert n_h.max() == 3
    with pytest.raises(ConfigError, match="leaves atom"):  # a methyl carbon would drop below 1 amu
        repartition_hydrogen_mass(alanine_dipeptide_system("vacuum", "HBonds")[1], pdb.topology, 5.0)
    with pytest.raises(ConfigError, match="positive"):
        repartition_hydrogen_mass(system, pdb.topology, 0.0)


@pytest.mark.parametrize("bad, match", [
    ({"timestep_fs": 4.0}, "without constraints"),
    ({"timestep_fs": 4.0, "constraints": "HBonds"}, "repartitioning"),
    ({"timestep_fs": 5.0, "constraints": "HBonds", "hydrogen_mass": 3.024}, "too large"),
    ({"timestep_fs": 2.0, "constraints": "AllBonds"}, "not supported"),
    ({"timestep_fs": 0.0}, "positive"),
])
def test_unstable_integrators_are_refused(bad, match, tmp_path):
    with pytest.raises(CompscopeError, match=match):
        run_replica_exchange({**ALA2_REFERENCE_DEFAULTS, "run": 0, "dir": str(tmp_path / "r"), **bad})
    assert not (tmp_path / "r").exists()  # refused before anything was written
    check_integrator({"timestep_fs": 2.0})
    check_integrator({"timestep_fs": 4.0, "constraints": "HBonds", "hydrogen_mass": 3.024})


def test_hmr_run_stops_on_its_cpu_budget_and_resumes(tmp_path):
    spec = {**ALA2_REFERENCE_DEFAULTS, "n_replicas": 2, "t_max": 600.0, "timestep_fs": 4.0, "constraints": "HBonds",
            "hydrogen_mass": 3.024, "steps_per_iteration": 10, "checkpoint_interval": 2, "n_iterations": 10**6,
            "platform": "Reference", "run": 0, "dir": str(tmp_path / "run_00")}
    p1 = run_replica_exchange(spec, max_cpu_s=0.3)
    assert 2 <= p1["iterations"] < 10**6 and p1["cpu_s"] >= 0.3 and p1["setup_cpu_s"] > 0
    budget = p1["cpu_s"] + 0.3  # resumed from the storage, the budget counts both calls
    p2 = run_replica_exchange(spec, max_cpu_s=budget)
    assert p2["iterations"] > p1["iterations"] and p2["cpu_s"] >= budget
    data = read_replica_exchange_run(tmp_path / "run_00", burn_in=1)
    assert data["progress"]["iterations"] == p2["iterations"] and len(data["acceptance"]) == 1
    pos = data["positions"]
    np.testing.assert_array_equal(data["iteration"], np.arange(1, p2["iterations"] + 1))
    # bonds to hydrogen are held at their constraint lengths through the 4 fs steps
    pdb, system = alanine_dipeptide_system("vacuum", "HBonds")
    from openmm import unit

    for k in range(system.getNumConstraints()):
        i, j, d = system.getConstraintParameters(k)
        r = np.linalg.norm(pos[:, i] - pos[:, j], axis=-1)
        np.testing.assert_allclose(r, d.value_in_unit(unit.angstrom), atol=2e-4)
    # masses and constraints do not change the potential: the stored 300 K energies are the target's
    u = alanine_dipeptide().energy(torch.as_tensor(pos, dtype=torch.float64)).numpy()
    np.testing.assert_allclose(u, data["energy"], atol=0.05)
    assert read_replica_exchange_run(tmp_path / "nothing") is None
