"""Learned transition kernels ``q(x(t + tau) | x(t))`` with exact log-density, and their training pairs from MD.

**Pairs** (:func:`transition_pairs`): frames ``(x(t), x(t + tau))`` of the trajectories in a ``compscope md reference``
HDF5 file (``/replicas/XXXX/positions``, Å; ``time_ps``). The split is **by trajectory**: the replicas are
shuffled with ``seed`` and dealt into train/valid/test by the fractions given, so that no test pair comes from a
training trajectory (the split, with its replica names, is returned and stored with a trained model). Each
``x(t + tau)`` is translated onto the centroid of its ``x(t)`` (the target is translation-invariant; the kernel
keeps the centroid fixed).

**Kernel** (:class:`ConditionalCouplingFlow`, Timewarp-style, Klein et al. NeurIPS 2023, over Cartesian
coordinates): the displacement ``d = y - x`` is expressed in a frame attached to the conditioning structure ``x``
(centroid at the origin, rotated by Kabsch onto a stored reference structure), so the kernel is equivariant under
rotations and translations of ``(x, y)`` together. The displacement lives in the centroid-free subspace (the
centroid does not move): ``d = Q z`` with ``Q`` (n, n - 1) orthonormal columns orthogonal to ``(1, ..., 1)``
(Helmert), and the ``3 (n - 1)`` numbers ``z`` are the output of a stack of affine coupling layers (RealNVP, Dinh
et al. 2017) conditioned on the aligned ``x``, from a Gaussian of learned per-coordinate scale. ``Q`` and the
rotation are isometries (unit Jacobian) and the coupling layers have a triangular one, so

    log q(y | x) = log N(z; 0, diag(sigma^2)) - sum_layers sum s_l(z, x),

exactly, in one network pass (no ODE). :meth:`ConditionalCouplingFlow.sample` draws ``k`` proposals per state with
their ``log q``; :meth:`~ConditionalCouplingFlow.log_prob` evaluates the reverse density for the MH ratio.

**Training** (:mod:`._transition_train`, which loads Lightning): maximum likelihood on the pairs through
:func:`compscope.train.fit` (run folder, resume, time budget); validation reports the exact NLL per degree of
freedom on the validation trajectories.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from torch import nn

from compscope.models.artifacts import read_model_file
from compscope.nn import kabsch

from ._errors import SamplingInputError

__all__ = ["transition_pairs", "ConditionalCouplingFlow", "load_transition"]


def _centre(x: torch.Tensor) -> torch.Tensor:
    return x - x.mean(-2, keepdim=True)


def transition_pairs(path: str | Path, lag_ps: float, fractions=(0.8, 0.1, 0.1), seed: int = 0, stride: int = 1,
                     ) -> dict:
    """Pairs ``(x(t), x(t + lag))`` from an MD reference file, split by trajectory.

    Args:
        path: HDF5 of ``compscope md reference alanine-dipeptide``.
        lag_ps: the lag ``tau`` in ps (a multiple of the frame spacing).
        fractions: train/valid/test fractions of the *trajectories* (at least one trajectory for training).
        seed: of the shuffle of trajectories.
        stride: take a pair every ``stride`` frames.

    Returns:
        ``{"train"|"valid"|"test": (x0 (m, n, 3), x1 (m, n, 3)) float64 tensors, "replicas": {split: [names]},
        "lag_frames": int, "frame_ps": float, "atomic_numbers": (n,), "solvent": the file's (default vacuum)}``.
    """
    import h5py

    path = Path(path)
    if not path.exists():
        raise SamplingInputError(f"{path} does not exist",
                                 hint="make it with `compscope md reference alanine-dipeptide`")
    with h5py.File(path, "r") as h5:
        if "replicas" not in h5 or not len(h5["replicas"]):
            raise SamplingInputError(f"{path} has no /replicas group", hint="pass a `compscope md reference` file")
        names = sorted(h5["replicas"])
        frame_ps = float(np.diff(h5["replicas"][names[0]]["time_ps"][:2])[0])
        lag = lag_ps / frame_ps
        if lag < 1 or abs(lag - round(lag)) > 1e-6:
            raise SamplingInputError(f"lag {lag_ps} ps is not a positive multiple of the frame spacing {frame_ps} ps",
                                     hint=f"use a multiple of {frame_ps} ps")
        lag = int(round(lag))
        trajs = {n: h5["replicas"][n]["positions"][:] for n in names}
        z = h5["atomic_numbers"][:] if "atomic_numbers" in h5 else None
        solvent = str(h5.attrs.get("solvent", "vacuum"))
    fr = np.asarray(fractions, dtype=float)
    if fr.shape != (3,) or (fr < 0).any() or fr[0] <= 0:
        raise SamplingInputError(f"fractions {fractions}: need three non-negative numbers, train > 0",
                                 hint="e.g. (0.8, 0.1, 0.1)")
    order = [names[i] for i in np.random.default_rng(seed).permutation(len(names))]
    counts = np.floor(fr / fr.sum() * len(names)).astype(int)
    counts[0] = max(counts[0], 1)
    counts[0] += len(names) - counts.sum()  # rounding leftovers go to training
    if counts[0] < 1:
        raise SamplingInputError("no trajectory left for training", hint="generate more replicas")
    bounds = np.cumsum([0, *counts])
    out: dict = {"replicas": {}, "lag_frames": lag, "frame_ps": frame_ps, "atomic_numbers": z, "solvent": solvent}
    for k, split in enumerate(("train", "valid", "test")):
        reps = order[bounds[k]:bounds[k + 1]]
        out["replicas"][split] = reps
        x0s, x1s = [], []
        for r in reps:
            x = trajs[r]
            if len(x) > lag:
                x0s.append(x[:-lag:stride])
                x1s.append(x[lag::stride])
        if x0s:
            x0 = torch.as_tensor(np.concatenate(x0s), dtype=torch.float64)
            x1 = torch.as_tensor(np.concatenate(x1s), dtype=torch.float64)
            x1 = x1 - x1.mean(1, keepdim=True) + x0.mean(1, keepdim=True)
        else:
            x0 = x1 = torch.zeros((0,) + tuple(next(iter(trajs.values())).shape[1:]), dtype=torch.float64)
        out[split] = (x0, x1)
    if not len(out["train"][0]):
        raise SamplingInputError(f"no training pair at a lag of {lag} frames", hint="use a shorter lag")
    return out


class _Coupling(nn.Module):
    def __init__(self, mask: torch.Tensor, n_cond: int, hidden: int, max_log_scale: float):
        super().__init__()
        self.register_buffer("mask", mask)
        d = len(mask)
        self.net = nn.Sequential(nn.Linear(d + n_cond, hidden), nn.SiLU(), nn.Linear(hidden, hidden), nn.SiLU(),
                                 nn.Linear(hidden, 2 * d))
        nn.init.zeros_(self.net[-1].weight)
        nn.init.zeros_(self.net[-1].bias)
        self.max_log_scale = max_log_scale

    def _st(self, z_fixed, cond):
        s, t = self.net(torch.cat([z_fixed, cond], -1)).chunk(2, -1)
        s = self.max_log_scale * torch.tanh(s / self.max_log_scale)
        free = 1 - self.mask
        return s * free, t * free

    def forward(self, z, cond):  # z -> y, log|det|
        s, t = self._st(z * self.mask, cond)
        return z * torch.exp(s) + t, s.sum(-1)

    def inverse(self, y, cond):  # y -> z, log|det dz/dy|
        s, t = self._st(y * self.mask, cond)
        return (y - t) * torch.exp(-s), -s.sum(-1)


class ConditionalCouplingFlow(nn.Module):
    """A conditional affine-coupling flow ``q(y | x)`` over Cartesian displacements, rotation/translation
    equivariant through a frame attached to ``x`` (module docstring).

    Args:
        reference: (n_atoms, 3) structure that fixes the frame (e.g. the mean training structure), Å.
        hidden: width of the coupling MLPs.
        num_layers: coupling layers (alternating random halves of the coordinates).
        init_scale: initial standard deviation of the base Gaussian (Å).
        max_log_scale: bound of each layer's log scale (tanh-limited; keeps the flow invertible in practice).
        seed: of the coordinate masks.
    """

    def __init__(self, reference, hidden: int = 256, num_layers: int = 8, init_scale: float = 0.1,
                 max_log_scale: float = 2.0, seed: int = 0):
        super().__init__()
        ref = _centre(torch.as_tensor(reference, dtype=torch.float64).reshape(-1, 3))
        self.n_atoms = int(ref.shape[0])
        self.register_buffer("reference", ref)
        d = 3 * (self.n_atoms - 1)
        self.dof = d
        self.hparams = {"hidden": int(hidden), "num_layers": int(num_layers), "init_scale": float(init_scale),
                        "max_log_scale": float(max_log_scale), "seed": int(seed)}
        g = torch.Generator().manual_seed(int(seed))
        layers = []
        for k in range(int(num_layers)):
            perm = torch.randperm(d, generator=g) if k % 2 == 0 else None
            if perm is not None:
                mask = torch.zeros(d)
                mask[perm[: d // 2]] = 1.0
            else:
                mask = 1.0 - layers[-1].mask
            layers.append(_Coupling(mask, 3 * self.n_atoms, int(hidden), float(max_log_scale)))
        self.layers = nn.ModuleList(layers)
        self.log_sigma = nn.Parameter(torch.full((d,), math.log(init_scale)))

    def config(self) -> dict:
        return {"name": "ConditionalCouplingFlow", "n_atoms": self.n_atoms, **self.hparams}

    def _frame(self, x: torch.Tensor):
        """Centroid (b, 1, 3), rotation R (b, 3, 3) (``x_aligned = (x - c) @ R``) and the conditioning vector."""
        c = x.mean(1, keepdim=True)
        xc = x - c
        r = kabsch(xc.double(), self.reference.expand(len(x), -1, -1).double(), proper=True).to(x.dtype)
        cond = (xc @ r).reshape(len(x), -1)
        return c, r, cond

    def _basis(self, dtype) -> torch.Tensor:
        """``Q`` (n, n - 1): orthonormal, every column orthogonal to the all-ones vector (Helmert sub-matrix)."""
        n = self.n_atoms
        q = torch.zeros(n, n - 1, dtype=torch.float64)
        for k in range(1, n):
            q[:k, k - 1] = 1.0 / math.sqrt(k * (k + 1))
            q[k, k - 1] = -k / math.sqrt(k * (k + 1))
        return q.to(dtype)

    def _check(self, x: torch.Tensor, what: str) -> torch.Tensor:
        if x.ndim != 3 or tuple(x.shape[1:]) != (self.n_atoms, 3):
            raise SamplingInputError(f"{what} has shape {tuple(x.shape)}; this kernel was trained on "
                                     f"{self.n_atoms} atoms (batch, {self.n_atoms}, 3)",
                                     hint="use a kernel trained on this molecule")
        return x

    def _base_log_prob(self, z: torch.Tensor) -> torch.Tensor:
        ls = self.log_sigma.to(z.dtype)
        return (-0.5 * (z * torch.exp(-ls)).pow(2) - ls - 0.5 * math.log(2 * math.pi)).sum(-1)

    def log_prob(self, y: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """``log q(y | x)`` (batch,) for ``y, x`` (batch, n_atoms, 3) with equal centroids (Å; density on the
        centroid-preserving subspace, parametrised by the first ``n - 1`` atoms' displacements)."""
        x, y = self._check(x, "x"), self._check(y, "y")
        p = next(self.parameters())
        x, y = x.to(p.dtype), y.to(p.dtype)
        _, r, cond = self._frame(x)
        d = (self._basis(x.dtype).T @ ((y - x) @ r)).reshape(len(x), -1)  # (b, 3 (n - 1))
        logdet = torch.zeros(len(x), dtype=d.dtype, device=d.device)
        for layer in reversed(self.layers):
            d, ld = layer.inverse(d, cond)
            logdet = logdet + ld
        return self._base_log_prob(d) + logdet

    def sample(self, x: torch.Tensor, k: int = 1, generator: torch.Generator | None = None):
        """``(y (batch, k, n, 3), log q(y | x) (batch, k))``: ``k`` proposals from each state."""
        x = self._check(x, "x")
        p = next(self.parameters())
        b = len(x)
        xr = x.to(p.dtype).repeat_interleave(k, 0)
        c, r, cond = self._frame(xr)
        z = torch.randn(b * k, self.dof, generator=generator, dtype=p.dtype) * torch.exp(self.log_sigma)
        lq = self._base_log_prob(z)
        d = z
        for layer in self.layers:
            d, ld = layer(d, cond)
            lq = lq - ld
        d = self._basis(d.dtype) @ d.reshape(b * k, self.n_atoms - 1, 3)  # (b k, n, 3), centroid-free
        y = xr + d @ r.transpose(1, 2)
        return y.reshape(b, k, self.n_atoms, 3).to(x.dtype), lq.reshape(b, k)


def read_kernel_file(path: str | Path, what: str, fmt: str, trainer: str, system: str | None,
                     n_atoms: int | None, doc: dict | None = None) -> tuple[Path, dict]:
    """A kernel's ``model.pt`` (or run folder) of format ``fmt``; refuses one of another system or molecule size.
    ``doc``: the file's content when the caller has already read it (checked, not read again)."""
    if doc is None:
        path, doc = read_model_file(path, what=what, weights_only=False, hint=f"pass the model.pt of {trainer}")
    p = Path(path)
    if not isinstance(doc, dict) or doc.get("format") != fmt:
        raise SamplingInputError(f"{p} is not a {what} (format {fmt})", hint=f"pass the model.pt of {trainer}")
    if system is not None and doc["system"] != system:
        raise SamplingInputError(f"{p} was trained on {doc['system']!r}, not {system!r}",
                                 hint="use a kernel trained on this system")
    if n_atoms is not None and doc["n_atoms"] != n_atoms:
        raise SamplingInputError(f"{p} was trained on a molecule of {doc['n_atoms']} atoms, not {n_atoms}",
                                 hint="use a kernel trained on this molecule")
    return p, doc


def load_transition(path: str | Path, system: str | None = None, n_atoms: int | None = None,
                    dtype: torch.dtype = torch.float64, doc: dict | None = None
                    ) -> tuple[ConditionalCouplingFlow, dict]:
    """A trained kernel and its metadata from ``model.pt`` (or its run folder); refuses another system/molecule.
    ``doc``: the file's content when already read."""
    p, ck = read_kernel_file(path, "transition kernel", "compscope-transition/1", "train_transition", system,
                             n_atoms, doc)
    model = ConditionalCouplingFlow(ck["reference"], **ck["flow"])
    model.load_state_dict(ck["state_dict"])
    model = model.to(dtype)
    model.eval()
    return model, {k: ck[k] for k in ("system", "lag_ps", "replicas", "n_atoms")}
