"""Internal-coordinate coupling flow for molecules (alanine dipeptide): Z-matrix transform + circular spline couplings.

:class:`ZMatrix` maps Cartesian positions (batch, n, 3) to ``3n - 6`` internal coordinates (bonds, angles,
dihedrals; invariant under rotations and translations by construction, not under reflections: a mirror image has
the opposite dihedrals) and back (NeRF placement in a canonical frame: root atom at the origin, the second on +x,
the third in the xy plane). Its volume factor is exact::

    dx = d(translation) d(orientation) * J(z) dz,   log J = sum_placed 2 log b_i + sum_with_angle log sin a_i

(spherical coordinates of every placed atom around its bond partner; Haar measure for the orientation, so a flow
density q(z) on the internal coordinates is the Cartesian density ``q(z) / J(z)`` of its rotated and translated
copies, up to the constant volume of translations x orientations, which cancels in self-normalised weights).
Tested against the determinant of the full 3n x 3n Jacobian of (translation, rotation, z) -> x by autograd.

:class:`ICFlow` standardises bonds and angles with the training data's mean and spread (scaled into the box
[-pi, pi) by ``box_sigmas``), keeps dihedrals as they are, and models the ``3n - 6`` numbers with a neural
circular spline flow (``zuko.flows.NCSF``, rational-quadratic splines on the circle, ``passes=2``: affine-free
coupling layers with random permutations; uniform base on the box). ``log_prob(x)`` is the exact Cartesian
log-density modulo rigid motions (nats; -inf outside the box), ``sample(n)`` returns positions in Å with their
``log q``. :func:`train_ic_flow` fits it by maximum likelihood (Adam, checkpoints, resumable).

:data:`ALA2_ZMATRIX` is alanine dipeptide's (atom order of the committed PDB): root N, CA, C of alanine; phi and psi
are two of its dihedrals (indices :data:`ALA2_IC_PHI`, :data:`ALA2_IC_PSI` among the dihedrals).
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ._errors import SamplingInputError
from ._openmm_target import dihedral_angles

__all__ = ["ZMatrix", "ICFlow", "ALA2_ZMATRIX", "train_ic_flow", "load_ic_flow"]

#: (atom, bond partner, angle partner, dihedral partner) in placement order; the first three rows are the root
#: (atom, partner, angle partner or -1). PDB order: 0 CH3 1 C 2 O 3-5 H (ACE), 6 N 7 CA 8 CB 9 C 10 O 11 H 12 HA
#: 13-15 HB (ALA), 16 N 17 CH3 18 H 19-21 H (NME).
ALA2_ZMATRIX = (
    (6, -1, -1, -1), (7, 6, -1, -1), (9, 7, 6, -1),
    (1, 6, 7, 9),  # phi = dihedral(C', N, CA, C)
    (16, 9, 7, 6),  # psi = dihedral(N, CA, C, N')
    (8, 7, 6, 9), (12, 7, 6, 9), (11, 6, 1, 7), (2, 1, 6, 7), (0, 1, 6, 7),
    (3, 0, 1, 6), (4, 0, 1, 6), (5, 0, 1, 6), (10, 9, 7, 6), (17, 16, 9, 7), (18, 16, 9, 7),
    (13, 8, 7, 6), (14, 8, 7, 6), (15, 8, 7, 6), (19, 17, 16, 9), (20, 17, 16, 9), (21, 17, 16, 9),
)
ALA2_IC_PHI, ALA2_IC_PSI = 0, 1  # positions of phi and psi among the dihedrals


def _angle(a: torch.Tensor, b: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    u, v = a - b, c - b
    cos = (u * v).sum(-1) / (u.norm(dim=-1) * v.norm(dim=-1))
    return torch.arccos(cos.clamp(-1.0, 1.0))


class ZMatrix:
    """Cartesian <-> internal coordinates of a Z-matrix (see the module docstring); ``z = [bonds, angles, dihedrals]``.

    Args:
        rows: ``(atom, bond, angle, dihedral)`` partners in placement order: rows 0-2 are the root (partners -1
            where absent), every partner must be placed before its atom, every atom appears once.
    """

    def __init__(self, rows=ALA2_ZMATRIX):
        rows = np.asarray(rows, dtype=np.int64)
        n = len(rows)
        if n < 3 or rows.shape[1:] != (4,) or sorted(rows[:, 0].tolist()) != list(range(n)):
            raise SamplingInputError("a Z-matrix needs >= 3 rows (atom, bond, angle, dihedral) naming every atom once",
                                     hint="see ALA2_ZMATRIX")
        placed = {int(rows[0, 0])}
        for i, r in enumerate(rows[1:], start=1):
            need = r[1:min(i, 3) + 1]
            if any(int(p) not in placed for p in need) or len(set(need.tolist())) != len(need):
                raise SamplingInputError(f"Z-matrix row {i} {r.tolist()}: partners must be distinct, placed atoms",
                                         hint="order the rows so that every partner comes first")
            placed.add(int(r[0]))
        self.rows, self.n_atoms = rows, n
        self.n_bonds, self.n_angles, self.n_dihedrals = n - 1, n - 2, n - 3
        self.dim = 3 * n - 6

    def split(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return z[..., :self.n_bonds], z[..., self.n_bonds:self.n_bonds + self.n_angles], z[..., -self.n_dihedrals:]

    def to_internal(self, x: torch.Tensor) -> torch.Tensor:
        """(batch, n, 3) -> (batch, 3n - 6)."""
        if x.ndim != 3 or x.shape[1:] != (self.n_atoms, 3):
            raise SamplingInputError(f"positions {tuple(x.shape)} do not fit a {self.n_atoms}-atom Z-matrix",
                                     hint=f"pass (batch, {self.n_atoms}, 3)")
        r = torch.as_tensor(self.rows, device=x.device)
        b = (x[:, r[1:, 0]] - x[:, r[1:, 1]]).norm(dim=-1)
        a = _angle(x[:, r[2:, 0]], x[:, r[2:, 1]], x[:, r[2:, 2]])
        d = dihedral_angles(x, r[3:].reshape(-1, 4))
        return torch.cat([b, a, d.reshape(len(x), -1)], dim=-1)

    def to_cartesian(self, z: torch.Tensor) -> torch.Tensor:
        """(batch, 3n - 6) -> (batch, n, 3) in the canonical frame (NeRF)."""
        b, a, d = self.split(z)
        rows = self.rows
        pos: list[torch.Tensor | None] = [None] * self.n_atoms
        zero = torch.zeros_like(b[:, 0])
        pos[rows[0, 0]] = torch.stack([zero, zero, zero], -1)
        pos[rows[1, 0]] = torch.stack([b[:, 0], zero, zero], -1)
        u = pos[rows[2, 2]] - pos[rows[2, 1]]  # along +-x: bond partner -> angle partner
        u = u / u.norm(dim=-1, keepdim=True)
        ey = torch.stack([zero, zero + 1.0, zero], -1)
        pos[rows[2, 0]] = pos[rows[2, 1]] + b[:, 1, None] * (torch.cos(a[:, :1]) * u + torch.sin(a[:, :1]) * ey)
        for i, (at, j, k, m) in enumerate(rows[3:]):
            pj, pk, pm = pos[j], pos[k], pos[m]
            bc = pj - pk
            bc = bc / bc.norm(dim=-1, keepdim=True)
            nrm = torch.cross(pk - pm, bc, dim=-1)
            nrm = nrm / nrm.norm(dim=-1, keepdim=True)
            mm = torch.stack([bc, torch.cross(nrm, bc, dim=-1), nrm], -1)  # columns
            bi, ai, di = b[:, i + 2], a[:, i + 1], d[:, i]
            loc = torch.stack([-bi * torch.cos(ai), bi * torch.sin(ai) * torch.cos(di),
                               bi * torch.sin(ai) * torch.sin(di)], -1)
            pos[at] = pj + (mm @ loc.unsqueeze(-1)).squeeze(-1)
        return torch.stack(pos, dim=1)

    def log_volume(self, z: torch.Tensor) -> torch.Tensor:
        """log J(z): Cartesian volume per internal-coordinate volume (rigid motions factored out, Haar measure)."""
        b, a, _ = self.split(z)
        return 2.0 * torch.log(b).sum(-1) + torch.log(torch.sin(a)).sum(-1)


class ICFlow(nn.Module):
    """Circular neural spline coupling flow on the internal coordinates of a molecule (see the module docstring).

    Args:
        z_mean, z_std: (3n - 6,) standardisation of bonds and angles (dihedrals: mean 0, std 1 kept as they are);
            :meth:`from_data` computes them.
        rows: the Z-matrix.
        transforms, hidden, bins: flow size (coupling layers, hidden widths of their MLPs, spline bins).
        box_sigmas: standard deviations of a bond/angle that fit into the box half-width pi.
    """

    def __init__(self, z_mean, z_std, rows=ALA2_ZMATRIX, transforms: int = 6, hidden: tuple[int, ...] = (256, 256),
                 bins: int = 16, box_sigmas: float = 8.0):
        super().__init__()
        import zuko

        self.zmatrix = ZMatrix(rows)
        self.hparams = {"rows": [list(map(int, r)) for r in self.zmatrix.rows], "transforms": int(transforms),
                        "hidden": list(map(int, hidden)), "bins": int(bins), "box_sigmas": float(box_sigmas)}
        nb = self.zmatrix.n_bonds + self.zmatrix.n_angles
        mean = torch.as_tensor(z_mean, dtype=torch.float64).clone()
        scale = torch.as_tensor(z_std, dtype=torch.float64) * float(box_sigmas) / math.pi
        mean[nb:], scale[nb:] = 0.0, 1.0
        self.register_buffer("z_mean", mean)
        self.register_buffer("z_scale", scale)
        self.flow = zuko.flows.NCSF(self.zmatrix.dim, bins=int(bins), transforms=int(transforms),
                                    hidden_features=tuple(hidden), passes=2, randperm=True)

    @classmethod
    def from_data(cls, x: torch.Tensor, **kwargs) -> ICFlow:
        z = ZMatrix(kwargs.get("rows", ALA2_ZMATRIX)).to_internal(torch.as_tensor(x, dtype=torch.float64))
        return cls(z.mean(0), z.std(0).clamp_min(1e-3), **kwargs)

    def _to_box(self, z: torch.Tensor) -> torch.Tensor:
        return (z - self.z_mean) / self.z_scale

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """Exact log q(x) (Cartesian, modulo rigid motions; nats), float64; -inf outside the flow's support."""
        x = torch.as_tensor(x, dtype=torch.float64)
        z = self.zmatrix.to_internal(x)
        y = self._to_box(z)
        inside = (y.abs() < math.pi).all(-1)
        dt = next(self.flow.parameters()).dtype
        lp = self.flow().log_prob(torch.where(inside[:, None], y, torch.zeros_like(y)).to(dt)).double()
        lp = lp - torch.log(self.z_scale).sum() - self.zmatrix.log_volume(z)
        return torch.where(inside, lp, torch.full_like(lp, -math.inf))

    def sample(self, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``(positions (n, atoms, 3) float64 Å, log q (n,))`` of n draws (canonical frame, centred)."""
        y, lp = self.flow().rsample_and_log_prob((int(n),))
        y, lp = y.double().clamp(-math.pi, math.pi), lp.double()
        z = y * self.z_scale + self.z_mean
        x = self.zmatrix.to_cartesian(z)
        lq = lp - torch.log(self.z_scale).sum() - self.zmatrix.log_volume(z)
        return x - x.mean(1, keepdim=True), lq


def _save(path: Path, model: ICFlow, opt, step: int, history: list, extra: dict) -> None:
    tmp = path.with_name(path.name + ".tmp")
    torch.save({"format": "compscope-icflow-1", "hparams": model.hparams, "state_dict": model.state_dict(),
                "optimizer": opt.state_dict() if opt is not None else None, "step": step, "history": history,
                "extra": extra, "rng": torch.get_rng_state()}, tmp)
    tmp.replace(path)


def load_ic_flow(path: str | Path) -> ICFlow:
    """An :class:`ICFlow` from a checkpoint of :func:`train_ic_flow` (a ``.pt`` file or its run folder)."""
    path = Path(path)
    if path.is_dir():
        path = path / ("best.pt" if (path / "best.pt").exists() else "last.pt")
    if not path.exists():
        raise FileNotFoundError(f"{path} not found: train with compscope.sampling.train_ic_flow")
    try:
        ck = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # noqa: BLE001 - any unreadable file: one clear error
        raise SamplingInputError(f"{path} could not be read as a checkpoint ({exc})",
                                 hint="pass the best.pt / last.pt written by train_ic_flow") from exc
    if not isinstance(ck, dict) or ck.get("format") != "compscope-icflow-1":
        raise SamplingInputError(f"{path} is not an internal-coordinate flow checkpoint",
                                 hint="pass the best.pt / last.pt written by train_ic_flow")
    sd = ck["state_dict"]
    h = ck["hparams"]
    model = ICFlow(sd["z_mean"], torch.ones_like(sd["z_mean"]), rows=h["rows"], transforms=h["transforms"],
                   hidden=tuple(h["hidden"]), bins=h["bins"], box_sigmas=h["box_sigmas"])
    model.load_state_dict(sd)
    return model.eval()


def train_ic_flow(train: torch.Tensor, valid: torch.Tensor, out: str | Path, steps: int = 5000,
                  batch_size: int = 256, lr: float = 1e-3, eval_every: int = 250, seed: int = 0,
                  time_budget_s: float | None = None, **flow_kwargs) -> dict:
    """Maximum-likelihood training of an :class:`ICFlow` on Cartesian frames; resumable from ``out/last.pt``.

    Cosine learning-rate decay over ``steps``; every ``eval_every`` steps the validation NLL (nats per frame,
    Cartesian modulo rigid motions) is logged to ``out/history.json`` and the best model kept in ``best.pt``.
    Returns the history and the wall and CPU seconds spent (``wall_s``, ``cpu_s``).
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    train = torch.as_tensor(train, dtype=torch.float64)
    valid = torch.as_tensor(valid, dtype=torch.float64)
    torch.manual_seed(seed)
    last = out / "last.pt"
    if last.exists():
        ck = torch.load(last, map_location="cpu", weights_only=False)
        model = load_ic_flow(last).train()
        opt = torch.optim.Adam(model.flow.parameters(), lr=lr)
        opt.load_state_dict(ck["optimizer"])
        step, history, extra = ck["step"], ck["history"], ck["extra"]
        torch.set_rng_state(ck["rng"])
    else:
        model = ICFlow.from_data(train, **flow_kwargs)
        opt = torch.optim.Adam(model.flow.parameters(), lr=lr)
        step, history, extra = 0, [], {"wall_s": 0.0, "cpu_s": 0.0, "best": math.inf}
    z_train = model._to_box(model.zmatrix.to_internal(train)).float()
    z_train = z_train[(z_train.abs() < math.pi).all(-1)]
    t0, t_last, c_last = time.perf_counter(), time.perf_counter(), time.process_time()
    extra.setdefault("cpu_s", 0.0)
    while step < steps:
        for group in opt.param_groups:  # cosine decay, a function of the step alone (exact on resume)
            group["lr"] = lr * 0.5 * (1 + math.cos(math.pi * step / steps))
        idx = torch.randint(len(z_train), (batch_size,))
        loss = -model.flow().log_prob(z_train[idx]).mean()
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.flow.parameters(), 10.0)
        opt.step()
        step += 1
        if step % eval_every == 0 or step == steps:
            model.eval()
            with torch.no_grad():
                lq = model.log_prob(valid)
            model.train()
            extra["wall_s"] += time.perf_counter() - t_last
            extra["cpu_s"] += time.process_time() - c_last  # this process's CPU time (all its threads)
            t_last, c_last = time.perf_counter(), time.process_time()
            nll = float(-lq[torch.isfinite(lq)].mean())
            history.append({"step": step, "train_loss": float(loss.detach()), "val_nll": nll,
                            "val_outside": int((~torch.isfinite(lq)).sum()), "wall_s": extra["wall_s"],
                            "cpu_s": extra["cpu_s"]})
            (out / "history.json").write_text(json.dumps(history, indent=1))
            if nll < extra["best"]:
                extra["best"] = nll
                _save(out / "best.pt", model, None, step, history, extra)
            _save(last, model, opt, step, history, extra)
            if time_budget_s is not None and time.perf_counter() - t0 > time_budget_s:
                break
    return {"history": history, "wall_s": extra["wall_s"], "cpu_s": extra["cpu_s"], "step": step}
