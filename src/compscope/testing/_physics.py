"""Physics assertions shared by every model's tests.

A *potential* here is any callable ``model(graph, compute_forces=True, compute_stress=False) -> dict`` that returns
``keys.ENERGY`` (G,) and ``keys.FORCES`` (N, 3) for an :class:`~compscope.data.AtomicGraph` batch (the contract of
:class:`compscope.models.EquivariantPotential`). Tolerances depend on the dtype (:data:`FLOAT_TOLERANCE`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace

import numpy as np
import torch

from compscope.data import AtomicGraph
from compscope.data import keys as K

#: absolute tolerance on energies/forces (scaled by the magnitude of the values) per dtype
FLOAT_TOLERANCE = {torch.float32: 1e-4, torch.float64: 1e-9}


def random_rotation(gen: torch.Generator, reflect: bool = False) -> torch.Tensor:
    """A uniformly random rotation matrix (3, 3) in float64 (QR of a Gaussian), times -1 if ``reflect``."""
    q, r = torch.linalg.qr(torch.randn(3, 3, generator=gen, dtype=torch.float64))
    q = q * torch.sign(torch.diagonal(r)).unsqueeze(0)
    if torch.det(q) < 0:
        q[:, 0] = -q[:, 0]
    return -q if reflect else q


def _tol(dtype: torch.dtype, scale: float = 1.0) -> float:
    return FLOAT_TOLERANCE[dtype] * max(1.0, scale)


def _eval(model, graph: AtomicGraph, stress: bool = False) -> dict[str, torch.Tensor]:
    out = model(graph, compute_forces=True, compute_stress=stress)
    return {k: v.detach() for k, v in out.items()}


def transform_graph(graph: AtomicGraph, rotation: torch.Tensor, translation: torch.Tensor | None = None):
    """Apply ``r -> r @ R^T + t`` to positions (and ``cell -> cell @ R^T``); edges stay valid."""
    rot = rotation.to(graph.positions.dtype)
    pos = graph.positions @ rot.T
    if translation is not None:
        pos = pos + translation.to(pos.dtype)
    return replace(graph, positions=pos, cell=graph.cell @ rot.T)


def assert_e3_equivariant(model, graph: AtomicGraph, n_trials: int = 3, seed: int = 0) -> None:
    """Energies invariant and forces equivariant under random rotations, reflections and translations.

    Uses :func:`e3nn.util.test.assert_equivariant` (random rotation + parity) on the map
    positions -> (energy, forces), with positions and forces expressed in e3nn's (y, z, x) basis of ``1o``,
    then checks translations separately.
    """
    from e3nn.util.test import assert_equivariant

    dtype = graph.positions.dtype
    perm_to_e3nn = [1, 2, 0]  # xyz -> yzx
    perm_from_e3nn = [2, 0, 1]

    def fn(pos_yzx: torch.Tensor):
        g = replace(graph, positions=pos_yzx[:, perm_from_e3nn])
        if graph.pbc.any():  # rotating a periodic system needs the cell too; handled below instead
            raise RuntimeError("use assert_e3_equivariant_pbc for periodic graphs")
        out = model(g, compute_forces=True)
        return out[K.ENERGY].unsqueeze(-1), out[K.FORCES][:, perm_to_e3nn]

    torch.manual_seed(seed)
    ref = _eval(model, graph)
    scale = float(ref[K.FORCES].abs().max() + ref[K.ENERGY].abs().max())
    for _ in range(n_trials):
        # explicit tolerance: e3nn's default follows torch's *default* dtype, not the model's
        assert_equivariant(
            fn,
            args_in=[graph.positions[:, perm_to_e3nn]],
            irreps_in=["1o"],
            irreps_out=["0e", "1o"],
            tolerance=_tol(dtype, scale),
            do_translation=False,
        )

    # translations (and explicit rotation with reflection, to report a readable message)
    gen = torch.Generator().manual_seed(seed)
    ref = _eval(model, graph)
    for _ in range(n_trials):
        rot = random_rotation(gen, reflect=bool(torch.rand(1, generator=gen) < 0.5))
        shift = torch.randn(3, generator=gen, dtype=torch.float64) * 3.0
        out = _eval(model, transform_graph(graph, rot, shift))
        e_err = float((out[K.ENERGY] - ref[K.ENERGY]).abs().max())
        f_err = float((out[K.FORCES] - ref[K.FORCES] @ rot.T.to(dtype)).abs().max())
        scale = float(ref[K.ENERGY].abs().max())
        assert e_err <= _tol(dtype, scale), f"energy not invariant: {e_err:.3e} ({dtype})"
        assert f_err <= _tol(dtype, float(ref[K.FORCES].abs().max())), f"forces not equivariant: {f_err:.3e}"


def assert_e3_equivariant_pbc(model, graph: AtomicGraph, seed: int = 0) -> None:
    """Periodic version: rotate positions and cell together; energy and stress transform correctly."""
    dtype = graph.positions.dtype
    gen = torch.Generator().manual_seed(seed)
    rot = random_rotation(gen)
    ref = _eval(model, graph, stress=True)
    out = _eval(model, transform_graph(graph, rot, torch.randn(3, generator=gen, dtype=torch.float64)), stress=True)
    r = rot.to(dtype)
    assert float((out[K.ENERGY] - ref[K.ENERGY]).abs().max()) <= _tol(dtype, float(ref[K.ENERGY].abs().max()))
    assert float((out[K.FORCES] - ref[K.FORCES] @ r.T).abs().max()) <= _tol(dtype, float(ref[K.FORCES].abs().max()))
    rotated_stress = r @ ref[K.STRESS] @ r.T
    assert float((out[K.STRESS] - rotated_stress).abs().max()) <= _tol(dtype, float(ref[K.STRESS].abs().max()))


def assert_permutation_equivariant(model, graph: AtomicGraph, seed: int = 0) -> None:
    """Permuting atoms (within each structure) permutes forces and leaves energies unchanged."""
    gen = torch.Generator().manual_seed(seed)
    dtype = graph.positions.dtype
    parts = graph.split()
    permuted, perms = [], []
    offset = 0
    for g in parts:
        p = torch.randperm(g.num_nodes, generator=gen)
        atoms = g.to_atoms()[0]
        atoms = atoms[p.numpy()]
        permuted.append(AtomicGraph.from_atoms(atoms, graph.cutoff, energy_key=None, forces_key=None, dtype=dtype))
        perms.append(p + offset)
        offset += g.num_nodes
    pg = AtomicGraph.collate(permuted)
    perm = torch.cat(perms)
    ref, out = _eval(model, graph), _eval(model, pg)
    assert float((out[K.ENERGY] - ref[K.ENERGY]).abs().max()) <= _tol(dtype, float(ref[K.ENERGY].abs().max()))
    assert float((out[K.FORCES] - ref[K.FORCES][perm]).abs().max()) <= _tol(dtype, float(ref[K.FORCES].abs().max()))


def assert_forces_are_gradients(model, graph: AtomicGraph, eps: float = 1e-4, n_atoms: int = 4,
                                rtol: float = 1e-5, seed: int = 0) -> None:
    """Forces equal -dE/dx by central finite differences (run in float64)."""
    if graph.positions.dtype != torch.float64:
        raise ValueError("finite-difference checks need float64 (model and graph)")
    gen = np.random.default_rng(seed)
    ref = _eval(model, graph)
    atoms = gen.choice(graph.num_nodes, size=min(n_atoms, graph.num_nodes), replace=False)
    for a in atoms:
        for d in range(3):
            plus, minus = graph.positions.clone(), graph.positions.clone()
            plus[a, d] += eps
            minus[a, d] -= eps
            e_plus = _eval(model, replace(graph, positions=plus))[K.ENERGY].sum()
            e_minus = _eval(model, replace(graph, positions=minus))[K.ENERGY].sum()
            fd = -float(e_plus - e_minus) / (2 * eps)
            an = float(ref[K.FORCES][a, d])
            assert abs(fd - an) <= rtol * max(1.0, abs(an)) + 1e-7, (
                f"atom {a} dim {d}: finite-difference force {fd:.8f} != autograd force {an:.8f}"
            )


def assert_stress_is_strain_derivative(model, graph: AtomicGraph, eps: float = 1e-5, rtol: float = 1e-5) -> None:
    """Stress = (1/V) dE/d(strain) by central finite differences of a homogeneous deformation (float64)."""
    if graph.num_graphs != 1 or not graph.pbc.any():
        raise ValueError("stress check needs one periodic structure")
    ref = _eval(model, graph, stress=True)[K.STRESS][0]
    vol = float(torch.linalg.det(graph.cell[0]).abs())
    for i in range(3):
        for j in range(3):
            es = []
            for sgn in (1.0, -1.0):
                strain = torch.eye(3, dtype=torch.float64)
                strain[i, j] += sgn * eps
                g = replace(graph, positions=graph.positions @ strain.T, cell=graph.cell @ strain.T)
                es.append(float(_eval(model, g)[K.ENERGY][0]))
            fd = (es[0] - es[1]) / (2 * eps) / vol
            sym = 0.5 * (float(ref[i, j]) + float(ref[j, i]))
            assert abs(fd - sym) <= rtol * max(1.0, abs(sym)) + 1e-7, f"stress[{i},{j}] fd {fd} != {sym}"
    # a rotation-invariant energy has a symmetric stress (the antisymmetric part of a strain is a rotation)
    asym = float((ref - ref.T).abs().max())
    assert asym <= rtol * max(1.0, float(ref.abs().max())) + 1e-9, f"stress not symmetric: |s - s^T| = {asym:.3e}"


def assert_supercell_extensive(model, atoms, repeats=(2, 2, 2), cutoff: float | None = None,
                               dtype: torch.dtype = torch.float64) -> None:
    """A supercell of a periodic structure: energy = (number of copies) x the cell's, forces = the cell's forces
    tiled, stress (intensive) unchanged.

    Holds for any cutoff, also beyond half the cell, when the neighbour list includes every periodic image.

    Args:
        model: the potential.
        atoms: a periodic :class:`ase.Atoms`.
        repeats: copies along the three lattice vectors.
        cutoff: neighbour-list radius (default: the model's ``cutoff``).
        dtype: of the graphs (and the model).
    """
    r_cut = float(cutoff if cutoff is not None else model.cutoff)
    n = int(np.prod(repeats))
    big = atoms.repeat(repeats)  # ase: copies in order, each with the cell's atom order
    small_g, big_g = (AtomicGraph.from_atoms(a, r_cut, energy_key=None, forces_key=None, dtype=dtype)
                      for a in (atoms, big))
    one, many = _eval(model, small_g, stress=True), _eval(model, big_g, stress=True)
    e1, en = float(one[K.ENERGY].double().sum()), float(many[K.ENERGY].double().sum())
    assert abs(en - n * e1) <= _tol(dtype, abs(n * e1)), (
        f"supercell {repeats}: energy {en:.10g} != {n} x {e1:.10g} (off by {en - n * e1:.3e} eV, {dtype})")
    tiled = one[K.FORCES].repeat(n, 1)
    f_err = float((many[K.FORCES] - tiled).abs().max())
    assert f_err <= _tol(dtype, float(tiled.abs().max())), f"supercell forces differ by {f_err:.3e} eV/Å ({dtype})"
    s_err = float((many[K.STRESS] - one[K.STRESS]).abs().max())
    assert s_err <= _tol(dtype, float(one[K.STRESS].abs().max())), (
        f"supercell stress differs by {s_err:.3e} eV/Å^3 ({dtype})")


def assert_smooth_cutoff(model, z_pair: tuple[int, int], r_max: float, dtype=torch.float64, delta: float = 1e-3):
    """A dimer's energy and force go continuously to the isolated-atom limit as r -> r_max."""
    from ase import Atoms

    def dimer(r: float):
        a = Atoms(numbers=list(z_pair), positions=[[0, 0, 0], [r, 0, 0]])
        return _eval(model, AtomicGraph.from_atoms(a, r_max, energy_key=None, forces_key=None, dtype=dtype))

    far = dimer(r_max + delta)
    near = dimer(r_max - delta)
    tol = max(_tol(dtype), 1e-6)
    assert float(far[K.FORCES].abs().max()) == 0.0, "forces must vanish beyond the cutoff"
    assert float(near[K.FORCES].abs().max()) < 1e-2 * max(1.0, float(dimer(0.5 * r_max)[K.FORCES].abs().max())), \
        "forces must go smoothly to zero at the cutoff"
    assert abs(float(near[K.ENERGY] - far[K.ENERGY])) < tol * 100, "energy must be continuous at the cutoff"


def assert_separable(model, graph_a: AtomicGraph, graph_b: AtomicGraph, separation: float = 100.0) -> None:
    """Two structures far apart: energy is the sum of the parts, forces are the parts' forces."""
    dtype = graph_a.positions.dtype
    atoms = graph_a.to_atoms()[0] + _shifted(graph_b.to_atoms()[0], separation)
    both = AtomicGraph.from_atoms(atoms, graph_a.cutoff, energy_key=None, forces_key=None, dtype=dtype)
    ea, eb, eab = _eval(model, graph_a), _eval(model, graph_b), _eval(model, both)
    scale = float(abs(ea[K.ENERGY]).max() + abs(eb[K.ENERGY]).max())
    assert abs(float(eab[K.ENERGY][0] - ea[K.ENERGY][0] - eb[K.ENERGY][0])) <= _tol(dtype, scale)
    f = torch.cat([ea[K.FORCES], eb[K.FORCES]])
    assert float((eab[K.FORCES] - f).abs().max()) <= _tol(dtype, float(f.abs().max()))


def _shifted(atoms, d: float):
    a = atoms.copy()
    a.positions += np.array([d, 0.0, 0.0])
    return a


def assert_batch_consistent(model, graphs: list[AtomicGraph]) -> None:
    """A batch of graphs gives the same per-graph energies and forces as one graph at a time."""
    dtype = graphs[0].positions.dtype
    batch = _eval(model, AtomicGraph.collate(graphs))
    energies = torch.cat([_eval(model, g)[K.ENERGY] for g in graphs])
    forces = torch.cat([_eval(model, g)[K.FORCES] for g in graphs])
    assert float((batch[K.ENERGY] - energies).abs().max()) <= _tol(dtype, float(energies.abs().max()))
    assert float((batch[K.FORCES] - forces).abs().max()) <= _tol(dtype, float(forces.abs().max()))


def assert_isolated_atoms(model, e0: Mapping[int, float], cutoff: float | None = None,
                          dtype: torch.dtype = torch.float64, separation: float | None = None) -> None:
    """An atom with no neighbour has exactly its reference energy ``e0[Z]`` (eV) and zero force.

    Checked for each species alone (one graph per atom, no edges), for all of them as one batch, and for one
    structure holding every species with the atoms ``separation`` apart (default: twice the cutoff), whose
    energy must be the sum of the E0s. ``cutoff`` defaults to the model's ``cutoff``.
    """
    from ase import Atoms

    r_cut = float(cutoff if cutoff is not None else model.cutoff)
    sep = float(separation if separation is not None else 2.0 * r_cut + 1.0)
    species = sorted(int(z) for z in e0)

    def graph(numbers):
        pos = [[i * sep, 0.0, 0.0] for i in range(len(numbers))]
        return AtomicGraph.from_atoms(Atoms(numbers=numbers, positions=pos), r_cut, energy_key=None,
                                      forces_key=None, dtype=dtype)

    singles = [graph([z]) for z in species]
    assert all(g.num_edges == 0 for g in singles)
    want = torch.tensor([float(e0[z]) for z in species], dtype=torch.float64)
    cases = [(f"Z={z} alone", _eval(model, g), want[i:i + 1]) for i, (z, g) in enumerate(zip(species, singles))]
    cases.append(("every species, batched", _eval(model, AtomicGraph.collate(singles)), want))
    cases.append((f"every species {sep:.1f} Å apart in one structure", _eval(model, graph(species)), want.sum()[None]))
    for what, out, expected in cases:
        energy = out[K.ENERGY].double()
        err = float((energy - expected).abs().max())
        assert err <= _tol(dtype, float(expected.abs().max())), (
            f"isolated atoms ({what}): energy {energy.tolist()} != E0 {expected.tolist()} (off by {err:.3e} eV, "
            f"{dtype})")
        f = float(out[K.FORCES].abs().max()) if out[K.FORCES].numel() else 0.0
        assert f == 0.0, f"isolated atoms ({what}): force {f:.3e} eV/Å, must be exactly zero"


def check_potential(model, graphs: list[AtomicGraph], z_pair: tuple[int, int] | None = None, *,
                    periodic: AtomicGraph | None = None, isolated: Mapping[int, float] | None = None) -> None:
    """Run the whole kit on a potential in the dtype of ``graphs`` (finite differences only in float64).

    Args:
        model: the potential (see the module docstring for the contract).
        graphs: non-periodic structures: equivariance, permutation, batching, separability, forces = -dE/dx.
        z_pair: two atomic numbers for the smooth-cutoff check of a dimer.
        periodic: one periodic structure: rotation of positions and cell with the stress, and in float64
            stress = (1/V) dE/d(strain) and forces by finite differences.
        isolated: ``{Z: E0}``, the reference energy (eV) each species must have with no neighbour
            (:func:`assert_isolated_atoms`).
    """
    batch = AtomicGraph.collate(graphs)
    dtype = batch.positions.dtype
    assert_e3_equivariant(model, batch)
    assert_permutation_equivariant(model, batch)
    assert_batch_consistent(model, graphs)
    if len(graphs) >= 2:
        assert_separable(model, graphs[0], graphs[1])
    if dtype == torch.float64:
        assert_forces_are_gradients(model, graphs[0])
    if z_pair is not None:
        assert_smooth_cutoff(model, z_pair, batch.cutoff, dtype=dtype)
    if periodic is not None:
        assert_e3_equivariant_pbc(model, periodic)
        if dtype == torch.float64:
            assert_stress_is_strain_derivative(model, periodic)
            assert_forces_are_gradients(model, periodic)
    if isolated is not None:
        assert_isolated_atoms(model, isolated, batch.cutoff, dtype=dtype)


def convergence_order(h, errors) -> float:
    """Least-squares slope of log(error) vs log(h): the observed order of a solver."""
    h, errors = np.asarray(h, dtype=float), np.asarray(errors, dtype=float)
    return float(np.polyfit(np.log(h), np.log(errors), 1)[0])
