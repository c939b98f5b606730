"""Stability monitors: stop a replica that blows up, keep its last good frame, let the others go on.

Checks (per replica):
- ``nonfinite``: NaN/inf in positions, forces or energy (every step);
- ``bond_stretch``: a bond of the start structure longer than ``max_bond_stretch`` x its initial length;
- ``min_distance``: two atoms closer than ``min_distance`` Å;
- ``temperature``: instantaneous temperature above ``max_temperature`` K;
- ``drift``: the integrator's conserved quantity moved more than ``max_drift`` eV/atom from its start
  (NVE and Nosé-Hoover only).
All but the first run every ``check_every`` steps; the frame at the last passing check is the "last good"
one: a violating replica is reset to it and frozen (zero momenta, masked forces).
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass

import numpy as np
import torch

from compscope.data import AtomicGraph

from ._checks import MDInputError
from ._integrators import Integrator
from ._state import MDState, temperature

__all__ = ["StabilityMonitor", "Violation", "find_bonds", "bond_lengths", "summary_table"]

log = logging.getLogger(__name__)


@dataclass
class Violation:
    """Why and when a replica was stopped."""

    replica: int
    step: int  # step at which the violation was seen
    last_good_step: int  # step of the saved frame the replica was reset to
    reason: str  # nonfinite | bond_stretch | min_distance | temperature | drift
    detail: str

    def to_dict(self) -> dict:
        return asdict(self)


def find_bonds(graph: AtomicGraph, scale: float = 1.2) -> torch.Tensor:
    """Covalent bonds ``i < j`` closer than ``scale * (r_cov_i + r_cov_j)`` in ``graph``, shape (B, 2).

    The graph's edges must include all such pairs (any cutoff above ~2 Å does); a graph without edges (blocked
    evaluation keeps none) gets a neighbour list at the longest possible bond.
    """
    from ase.data import covalent_radii

    if graph.num_edges == 0 and graph.num_nodes > 1:
        rc_max = float(np.max(covalent_radii[graph.atomic_numbers.cpu().numpy()]))
        graph = graph.rebuild_edges(2.0 * scale * rc_max)
    send, recv = graph.edge_index
    r = graph.edge_vectors().norm(dim=-1)
    rc = torch.as_tensor(covalent_radii, dtype=r.dtype)[graph.atomic_numbers.cpu()].to(r.device)
    keep = (send < recv) & (r < scale * (rc[send] + rc[recv]))
    return torch.stack([send[keep], recv[keep]], dim=1)


def bond_lengths(positions: torch.Tensor, bonds: torch.Tensor, graph: AtomicGraph) -> torch.Tensor:
    """Lengths (B,) of bonds (B, 2), with the minimum-image convention along periodic directions."""
    if bonds.numel() == 0:
        return positions.new_zeros(0)
    i, j = bonds[:, 0], bonds[:, 1]
    d = positions[j] - positions[i]  # (B, 3)
    g = graph.batch[i]
    pbc = graph.pbc[g]  # (B, 3)
    if bool(pbc.any()):
        cell = graph.cell.to(d.dtype)[g]  # (B, 3, 3)
        eye = torch.eye(3, dtype=d.dtype, device=d.device).expand_as(cell)
        cell_safe = torch.where(pbc[:, :, None], cell, eye)
        frac = torch.einsum("bi,bij->bj", d, torch.linalg.inv(cell_safe))
        frac = torch.where(pbc, frac - torch.round(frac), frac)
        d = torch.einsum("bi,bij->bj", frac, cell_safe)
    return d.norm(dim=-1)


class StabilityMonitor:
    """Watches every replica of a run; see the module docstring for the checks.

    Args:
        max_bond_stretch: stop when a bond exceeds this factor of its initial length; None: no bond check, for
            systems whose bonds may legitimately change partner (liquid water, where a proton can hop to the next
            oxygen: the start's O-H bond then "stretches" although nothing blew up); the other checks still run.
        min_distance: stop when two atoms come closer than this, Å.
        max_temperature: stop above this temperature, K (default ``temperature_factor * max(T, 100 K)``).
        temperature_factor: see ``max_temperature``.
        max_drift: stop when the conserved energy drifts by more than this, eV/atom (NVE/NHC only).
        check_every: steps between the geometric/thermal checks (NaN/inf is checked every step).
        bond_scale: bonds are pairs closer than ``bond_scale`` x the sum of covalent radii at the start.
    """

    def __init__(
        self,
        max_bond_stretch: float | None = 1.6,
        min_distance: float = 0.5,
        max_temperature: float | None = None,
        temperature_factor: float = 5.0,
        max_drift: float = 0.05,
        check_every: int = 10,
        bond_scale: float = 1.2,
    ):
        if max_bond_stretch is not None and max_bond_stretch <= 1.0:
            raise MDInputError(f"max_bond_stretch is a factor > 1 (or None: no bond check), got {max_bond_stretch}")
        if check_every < 1:
            raise MDInputError(f"check_every must be >= 1, got {check_every}")
        self.max_bond_stretch = None if max_bond_stretch is None else float(max_bond_stretch)
        self.min_distance = float(min_distance)
        self.max_temperature = max_temperature
        self.temperature_factor = float(temperature_factor)
        self.max_drift = float(max_drift)
        self.check_every = int(check_every)
        self.bond_scale = float(bond_scale)
        self.violations: list[Violation] = []

    def config(self) -> dict:
        return {k: getattr(self, k) for k in ("max_bond_stretch", "min_distance", "max_temperature",
                                               "temperature_factor", "max_drift", "check_every", "bond_scale")}

    # ------------------------------------------------------------------------------------------
    def setup(self, state: MDState, integrator: Integrator, reference: dict | None = None,
              temperature_K: float | None = None) -> None:
        """Record bonds, their initial lengths and the initial conserved energy (or restore them).

        ``temperature_K`` is the run's nominal temperature, the reference of the runaway check when the
        integrator has no thermostat (default: the median initial temperature of the replicas).
        """
        self.integrator = integrator
        if reference is not None:  # resuming: keep the references of the original start
            self.bonds = reference["bonds"]
            self.bond_ref = reference["bond_ref"]
            self.conserved0 = reference["conserved0"]
            self.violations = [Violation(**v) for v in reference.get("violations", [])]
        else:
            self.bonds = (find_bonds(state.graph, self.bond_scale) if self.max_bond_stretch is not None
                          else torch.zeros((0, 2), dtype=torch.long))  # (B, 2)
            self.bond_ref = bond_lengths(state.positions, self.bonds, state.graph)  # (B,)
            self._check_minimum_image(state)
            c = integrator.conserved(state)
            self.conserved0 = None if c is None else c.clone()
            self.violations = []
        t_ref = integrator.temperature_K if integrator.temperature_K is not None else temperature_K
        if self.max_temperature is not None:
            self.t_max = float(self.max_temperature)
        else:
            t0 = float(t_ref) if t_ref is not None else float(
                temperature(state.momenta, state.masses, state.batch, state.num_graphs).median())
            self.t_max = self.temperature_factor * max(t0, 100.0)
        self.n_atoms = torch.bincount(state.batch, minlength=state.num_graphs).to(state.momenta.dtype)
        self._snapshot(state)

    def _check_minimum_image(self, state: MDState) -> None:
        """Bond lengths are taken under the minimum-image convention: a periodic cell thinner than twice the
        longest bond the monitor may see (initial length x ``max_bond_stretch``) would report wrong lengths."""
        g = state.graph
        if not bool(g.pbc.any()) or self.bonds.numel() == 0:
            return
        from ._checks import MDInputError

        longest = float(self.bond_ref.max()) * (self.max_bond_stretch or 1.0)
        for k in range(g.num_graphs):
            cell = g.cell[k].double()
            heights = torch.linalg.det(cell).abs() / torch.linalg.cross(cell[[1, 2, 0]], cell[[2, 0, 1]]).norm(dim=1)
            thin = [ax for ax, h, p in zip("abc", heights.tolist(), g.pbc[k].tolist()) if p and h < 2 * longest]
            if thin:
                raise MDInputError(
                    f"replica {k}: the periodic cell is {min(heights.tolist()):.3f} Å thin along {thin}, under twice "
                    f"the longest bond the stability monitor checks ({longest:.3f} Å = longest bond x "
                    f"max_bond_stretch): bond lengths under the minimum-image convention would be wrong",
                    hint="replicate the cell (--supercell / supercell=) or lower max_bond_stretch")

    def reference(self) -> dict:
        """What a restart file must keep so that a resumed run checks against the original start."""
        return {"bonds": self.bonds, "bond_ref": self.bond_ref, "conserved0": self.conserved0,
                "violations": [v.to_dict() for v in self.violations]}

    def _snapshot(self, state: MDState) -> None:
        self.good_positions = state.positions.detach().clone()
        self.good_momenta = state.momenta.detach().clone()
        self.good_step = state.step

    # ------------------------------------------------------------------------------------------
    def _nonfinite(self, state: MDState) -> torch.Tensor:  # (G,) bool
        G = state.num_graphs
        bad_atom = ~(torch.isfinite(state.positions).all(-1) & torch.isfinite(state.forces).all(-1)
                     & torch.isfinite(state.momenta).all(-1))
        bad = torch.zeros(G, dtype=torch.bool, device=bad_atom.device).index_put_(
            (state.batch[bad_atom],), torch.tensor(True, device=bad_atom.device))
        return bad | ~torch.isfinite(state.energy)

    def _geometry(self, state: MDState) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        """Per check: (violating (G,) bool, value (G,))."""
        G = state.num_graphs
        dt = state.positions.dtype
        out = {}
        if self.bonds.numel():
            ratio = bond_lengths(state.positions, self.bonds, state.graph) / self.bond_ref  # (B,)
            worst = torch.zeros(G, dtype=dt).scatter_reduce(0, state.batch[self.bonds[:, 0]], ratio, "amax")
            out["bond_stretch"] = (worst > self.max_bond_stretch, worst)
        graph = state.graph
        if graph.num_edges == 0 and graph.num_nodes > 1 and bool(torch.isfinite(graph.positions).all()):
            graph = graph.rebuild_edges(max(self.min_distance, 1.0))  # blocked evaluation keeps no neighbour list
        send, recv = graph.edge_index
        if send.numel():
            r = graph.edge_vectors().norm(dim=-1)
            dmin = torch.full((G,), float("inf"), dtype=dt).scatter_reduce(0, state.batch[send], r, "amin")
            out["min_distance"] = (dmin < self.min_distance, dmin)
        T = temperature(state.momenta, state.masses, state.batch, G, self.integrator.removed_dof)
        out["temperature"] = (T > self.t_max, T)
        if self.conserved0 is not None:
            drift = (self.integrator.conserved(state) - self.conserved0).abs() / self.n_atoms
            out["drift"] = (drift > self.max_drift, drift)
        return out

    _UNITS = {"bond_stretch": "x initial", "min_distance": "Å", "temperature": "K", "drift": "eV/atom"}

    def check(self, state: MDState) -> tuple[MDState, list[Violation]]:
        """Check ``state`` after a step; stop violating replicas. Returns the (possibly reset) state."""
        bad = self._nonfinite(state) & state.active
        reasons: dict[int, tuple[str, str]] = {int(g): ("nonfinite", "NaN/inf in positions, forces or energy")
                                              for g in torch.nonzero(bad).flatten().tolist()}
        full = state.step % self.check_every == 0
        if full:
            for name, (viol, val) in self._geometry(state).items():
                for g in torch.nonzero(viol & state.active & ~bad).flatten().tolist():
                    if g not in reasons:
                        lim = {"bond_stretch": self.max_bond_stretch, "min_distance": self.min_distance,
                               "temperature": self.t_max, "drift": self.max_drift}[name]
                        reasons[g] = (name, f"{name} = {float(val[g]):.4g} {self._UNITS[name]} (limit {lim:.4g})")
        new = []
        if reasons:
            stop = torch.zeros_like(state.active)
            for g in reasons:
                stop[g] = True
            atom_stop = stop[state.batch][:, None]
            pos = torch.where(atom_stop, self.good_positions, state.positions)
            mom = torch.where(atom_stop, torch.zeros_like(state.momenta), state.momenta)
            frc = torch.where(atom_stop, torch.zeros_like(state.forces), state.forces)
            energy = torch.where(stop, torch.zeros_like(state.energy), state.energy)
            state = state.replace(graph=state.graph.with_positions(pos), momenta=mom, forces=frc, energy=energy,
                                  active=state.active & ~stop)
            for g, (name, detail) in sorted(reasons.items()):
                v = Violation(replica=g, step=state.step, last_good_step=self.good_step, reason=name, detail=detail)
                log.warning("replica %d stopped at step %d (%s); last good frame: step %d", g, state.step, detail,
                            self.good_step)
                new.append(v)
            self.violations.extend(new)
        if full:
            # the frame that passed every check becomes the last good one (stopped replicas keep theirs)
            act = state.active[state.batch][:, None]
            self.good_positions = torch.where(act, state.positions, self.good_positions).detach().clone()
            self.good_momenta = torch.where(act, state.momenta, self.good_momenta).detach().clone()
            self.good_step = state.step
        return state, new

    def last_good_momenta(self) -> torch.Tensor:
        return self.good_momenta


def summary_table(num_replicas: int, steps_done: int, dt_fs: float, violations: list[Violation]) -> list[dict]:
    """One row per replica: stable?, steps and ps simulated stably, reason."""
    by = {v.replica: v for v in violations}
    rows = []
    for g in range(num_replicas):
        v = by.get(g)
        good = steps_done if v is None else v.last_good_step
        rows.append({
            "replica": g, "stable": v is None, "stable_steps": int(good),
            "stable_ps": float(np.round(good * dt_fs / 1000.0, 6)),
            "stopped_at_step": None if v is None else v.step,
            "reason": "" if v is None else v.detail,
        })
    return rows
