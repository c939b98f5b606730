"""Training a :class:`TorusKernel` by maximum likelihood on dihedral pairs ``(a(t), a(t + tau))`` with the shared
trainer (:func:`compscope.train.fit`: run folder, resume, time budget, metrics), and loading it as an MH proposal.

``model.pt`` (format ``compscope-torsion-kernel/1``) holds the kernel's arguments and weights, the system, its
dihedrals and pivot groups, the number of atoms, the lag and the trajectory split of the training pairs.
"""

from __future__ import annotations

import json
from pathlib import Path

import lightning as L
import torch

from ._errors import SamplingInputError
from ._openmm_target import dihedral_angles
from ._torsion import TorsionProposal, TorusKernel
from ._transition import read_kernel_file

__all__ = ["TORSION_FORMAT", "TorusKernelModule", "torsion_pairs", "train_torsion_kernel", "load_torsion_kernel",
           "train_kernel"]

TORSION_FORMAT = "compscope-torsion-kernel/1"


class TorusKernelModule(L.LightningModule):
    """Maximum likelihood of a :class:`TorusKernel` on angle pairs: loss = NLL per angle (nats)."""

    def __init__(self, kernel: TorusKernel, lr: float = 3e-3, weight_decay: float = 0.0):
        super().__init__()
        self.kernel, self.lr, self.weight_decay = kernel, float(lr), float(weight_decay)

    def _nll(self, batch):
        a0, a1 = batch
        return -self.kernel.log_prob(a1, a0).mean() / self.kernel.n_angles

    def training_step(self, batch, _):
        loss = self._nll(batch)
        self.log("train_nll_per_angle", loss, prog_bar=True)
        return loss

    def validation_step(self, batch, _):
        self.log("val_nll_per_angle", self._nll(batch), prog_bar=True)

    def configure_optimizers(self):
        return torch.optim.AdamW(self.parameters(), lr=self.lr, weight_decay=self.weight_decay)


def torsion_pairs(pairs: dict, dihedrals) -> dict:
    """Angle pairs ``{split: (a0 (m, D), a1 (m, D))}`` of the position pairs of :func:`transition_pairs`."""
    ang = lambda x: torch.stack([dihedral_angles(x, tuple(d)) for d in dihedrals], -1)  # noqa: E731
    out = {k: v for k, v in pairs.items() if k not in ("train", "valid", "test")}
    for split in ("train", "valid", "test"):
        x0, x1 = pairs[split]
        out[split] = (ang(x0), ang(x1)) if len(x0) else (torch.zeros(0, len(dihedrals)),) * 2
    return out


def train_torsion_kernel(pairs: dict, out: str | Path, dihedrals, groups, n_atoms: int, kernel: dict | None = None,
                         lr: float = 3e-3, batch_size: int = 512, trainer: dict | None = None, seed: int = 0,
                         resume: bool = False, system: str = "alanine-dipeptide"):
    """Train a :class:`TorusKernel` on angle pairs (:func:`torsion_pairs`) into the run folder ``out``.

    Returns ``(kernel, FitResult)``; ``model.pt`` is what :func:`load_torsion_kernel` and ``compscope sample chain``
    read.
    """
    from torch.utils.data import DataLoader, TensorDataset

    from compscope.train import RunDir, fit

    a0, a1 = pairs["train"]
    if len(a0) == 0:
        raise SamplingInputError("no training pairs", hint="use a shorter lag or longer trajectories")
    torch.manual_seed(int(seed))
    kargs = {"n_angles": len(dihedrals), **(kernel or {})}
    lag_ps = pairs.get("lag_frames", 0) * pairs.get("frame_ps", 0.0)
    config = {"system": system, "lag_ps": lag_ps, "kernel": kargs, "lr": lr, "batch_size": batch_size,
              "seed": seed, "replicas": pairs.get("replicas"), "dihedrals": [list(map(int, d)) for d in dihedrals],
              "trainer": trainer or {}}
    run = RunDir(out, resume=resume, config=config, safe=("trainer",)).start()
    model = TorusKernel(**kargs).double()
    module = TorusKernelModule(model, lr=lr)
    g = torch.Generator().manual_seed(int(seed))
    train = DataLoader(TensorDataset(a0.double(), a1.double()), batch_size=batch_size, shuffle=True, generator=g)
    va0, va1 = pairs["valid"] if len(pairs["valid"][0]) else pairs["train"]
    valid = DataLoader(TensorDataset(va0.double(), va1.double()), batch_size=4096)
    tcfg = {"monitor": "val_nll_per_angle", "max_epochs": 20, "ema_decay": 0.0, "precision": "64-true",
            **(trainer or {})}
    result = fit(module, None, run, tcfg, train_dataloaders=train, val_dataloaders=valid)
    doc = {"format": TORSION_FORMAT, "state_dict": model.state_dict(), "kernel": model.config(), "system": system,
           "dihedrals": config["dihedrals"], "groups": [list(map(int, gr)) for gr in groups],
           "n_atoms": int(n_atoms), "lag_ps": lag_ps, "replicas": pairs.get("replicas")}
    torch.save(doc, run.model)
    (run.path / "torsion_kernel.json").write_text(json.dumps(
        {k: doc[k] for k in ("system", "lag_ps", "dihedrals", "n_atoms", "kernel", "replicas")}, indent=2))
    return model, result


def load_torsion_kernel(path: str | Path, system: str | None = None, n_atoms: int | None = None,
                        doc: dict | None = None) -> tuple[TorsionProposal, dict]:
    """The MH proposal of a trained kernel (``model.pt`` or its run folder) and its metadata; refuses a kernel of
    another system or molecule size. ``doc``: the file's content when already read."""
    _, doc = read_kernel_file(path, "torsion kernel", TORSION_FORMAT, "train_torsion_kernel", system, n_atoms, doc)
    kernel = TorusKernel(**doc["kernel"]).double()
    kernel.load_state_dict(doc["state_dict"])
    meta = {k: doc[k] for k in ("system", "lag_ps", "dihedrals", "groups", "n_atoms", "replicas")}
    return TorsionProposal(kernel, doc["dihedrals"], doc["groups"]), meta


KERNEL_KEYS = {"kind", "data", "kernel", "lr", "batch_size", "seed", "trainer", "out", "system"}
DATA_KEYS = {"md", "lag_ps", "fractions", "seed", "stride"}


def train_kernel(config: dict, out: str | None = None, resume: bool = False):
    """``compscope sample kernel CONFIG``: a transition kernel for ``sample chain`` from MD pairs.

    Config keys: ``kind`` (``torsion``: a :class:`TorusKernel` over phi/psi with pivot moves; ``cartesian``: the
    :class:`ConditionalCouplingFlow`), ``data`` (``md``: a ``compscope md reference`` file, ``lag_ps``, and
    optionally ``fractions``, ``seed``, ``stride`` of :func:`transition_pairs`), ``kernel`` (the model's
    arguments), ``lr``, ``batch_size``, ``seed``, ``trainer`` (:class:`compscope.train.TrainerConfig`), ``out``.
    Returns ``(model, FitResult)``.
    """
    from compscope.errors import ConfigError
    from compscope.train import run_folder

    from ._openmm_target import alanine_dipeptide
    from ._transition import transition_pairs

    cfg = dict(config)
    unknown = sorted(set(cfg) - KERNEL_KEYS)
    data = dict(cfg.get("data") or {})
    unknown += [f"data.{k}" for k in sorted(set(data) - DATA_KEYS)]
    if unknown:
        raise ConfigError(f"kernel config: unknown key(s) {unknown}",
                          hint=f"top-level keys: {sorted(KERNEL_KEYS)}; data keys: {sorted(DATA_KEYS)}")
    kind = cfg.get("kind", "torsion")
    if kind not in ("torsion", "cartesian"):
        raise ConfigError(f"kind={kind!r}: use torsion or cartesian", hint="kind: torsion")
    if "md" not in data or "lag_ps" not in data:
        raise ConfigError("kernel config: data.md (an MD reference file) and data.lag_ps are required",
                          hint="data: {md: md.h5, lag_ps: 100}")
    where = run_folder(cfg, out, example="runs/torsion_kernel")
    pairs = transition_pairs(data["md"], lag_ps=float(data["lag_ps"]), fractions=tuple(data.get("fractions",
                             (0.8, 0.2, 0.0))), seed=int(data.get("seed", 0)), stride=int(data.get("stride", 1)))
    system = _system_of(cfg.get("system"), pairs["solvent"], data["md"])
    common = {"lr": float(cfg.get("lr", 3e-3 if kind == "torsion" else 1e-3)),
              "batch_size": int(cfg.get("batch_size", 512 if kind == "torsion" else 256)),
              "trainer": cfg.get("trainer"), "seed": int(cfg.get("seed", 0)), "resume": resume, "system": system}
    if kind == "cartesian":
        from ._transition_train import train_transition

        return train_transition(pairs, where, flow=cfg.get("kernel"), **common)
    from ._chain import SYSTEMS

    target = alanine_dipeptide(solvent=SYSTEMS[system])
    dih = list(target.phi_psi)
    from ._torsion import pivot_groups

    groups = pivot_groups(target.n_particles, target.bonds(), dih)
    return train_torsion_kernel(torsion_pairs(pairs, dih), where, dih, groups, target.n_particles,
                                kernel=cfg.get("kernel"), **common)


def _system_of(system: str | None, solvent: str, md: str) -> str:
    """The ``sample chain`` system a kernel is trained for: ``system`` if given (checked against ``solvent``, the one
    the MD file ``md`` was run in), else the one of that solvent."""
    from compscope.errors import ConfigError

    from ._chain import SYSTEMS

    by_solvent = {v: k for k, v in SYSTEMS.items()}
    if system is None:
        if solvent not in by_solvent:
            raise ConfigError(f"{md} was run in solvent {solvent!r}, which no sampling system uses",
                              hint=f"use MD of one of: {', '.join(f'{k} ({v})' for k, v in SYSTEMS.items())}")
        return by_solvent[solvent]
    if system not in SYSTEMS:
        raise ConfigError(f"unknown system {system!r}", hint=f"choose one of {', '.join(SYSTEMS)}")
    if SYSTEMS[system] != solvent:
        raise ConfigError(f"system {system!r} is alanine dipeptide in {SYSTEMS[system]}, but {md} was run in "
                          f"{solvent}", hint=f"set system: {by_solvent.get(solvent, '?')} or use MD of {system}")
    return system
