"""Training a CG potential (prior + equivariant network) by force matching or denoising force matching.

A config (YAML or dict; ``compscope cg train CONFIG``) has these sections, every key a constructor argument:

- ``data``: :class:`CGDataModule` (path of a ``compscope cg map`` file, fold / n_folds of the cross-validation by
  trajectory blocks, n_train frames, n_valid and valid_fraction (validation frames come from the end of the
  training blocks, never from the held-out block), batch_size);
- ``model``: ``net`` (arguments of :class:`~compscope.models.EquivariantPotential` except ``species``; null for a
  prior-only model), ``feature_net`` (``{hidden, activation}`` of the CGnet-style
  :class:`~compscope.models.CGFeatureNet`, the fast network for a few beads; null: none), ``dihedral_prior`` (fit
  dihedral terms into the prior; ``dihedral_order`` harmonics, ``dihedral_pseudocount`` per histogram bin, see
  :func:`~compscope.cg.fit_prior`), ``cmap`` (a 2-D (phi, psi) torsion term in the prior, Boltzmann-inverted from the
  training frames' 2-D histogram: ``{bins, pseudocount, smoothing, order}`` or ``{}`` for the defaults of
  :data:`~compscope.cg.CMAP_DEFAULTS`; the dihedrals it covers get no 1-D term; null: none), ``energy_scale``
  (``kT`` or eV);
- ``module``: :class:`CGModule` (loss ``force_matching`` or ``denoising``, noise, denoising weight, lr);
- ``trainer``: :class:`~compscope.train.TrainerConfig` (``monitor`` defaults to ``val_force_rmse``);
- ``seed`` and ``out`` (the run folder, :class:`compscope.train.RunDir`).

Force matching (multiscale coarse graining; Izvekov & Voth 2005, Noid et al. 2008; CGnet, Wang et al. 2019)
regresses the model's forces on the mapped atomistic forces, whose conditional mean is the CG mean force.
``denoising`` adds a denoising score-matching term on the same frames (Vincent 2011): at ``X' = X + sigma eps``
the force of the Gaussian-smoothed CG density is ``kT grad log p_sigma(X') ~ -kT eps / sigma`` in expectation,
an estimate of the mean force that needs no atomistic forces (Arts et al., JCTC 19, 6151 (2023) use the score
of a denoiser at small noise as the CG force field); the loss is ``FM + w * DSM``. The prior is fitted on the
training frames (never the held-out block) before the network trains.

The run folder is :class:`~compscope.train.RunDir`'s; ``model.pt`` is a model package (``CGPotential``) that
``compscope cg simulate`` and ``compscope md run`` load.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import lightning as L
import numpy as np
import torch

from compscope.errors import ConfigError
from compscope.models import build_model
from compscope.models.artifacts import save_package
from compscope.train import FitResult, RunDir, TrainerConfig, fit, resolve_section, run_folder

from ._data import load_cg
from ._errors import CGDataError
from ._prior import fit_prior, kT_eV

__all__ = ["CGDataModule", "CGModule", "train", "resolve_config", "fold_split", "split_frames", "even_stride",
           "model_kwargs", "SECTIONS", "LOSSES", "DEFAULT_NET"]

SECTIONS = ("seed", "out", "data", "model", "module", "trainer")
TRAINER_DEFAULTS = {"monitor": "val_force_rmse", "max_epochs": 20}
RESUME_SAFE = ("out", *(f"trainer.{k}" for k in TrainerConfig.RESUME_SAFE))
LOSSES = ("force_matching", "denoising")
#: a small network for five beads (CPU minutes); every key is an EquivariantPotential argument
DEFAULT_NET = {"r_max": 8.0, "num_bessel": 8, "max_ell": 2, "hidden_irreps": "16x0e+16x1o", "num_interactions": 2,
               "correlation": 2, "radial_hidden": [32, 32], "readout_hidden": 16, "avg_num_neighbors": 4.0}
# the dihedral prior on by default: the network is E(3)-invariant and cannot tell L- from D-alanine (alpha_R from
# alpha_L); the dihedral terms' sine parts can (tests/cg/test_model.py)
MODEL_DEFAULTS = {"net": DEFAULT_NET, "dihedral_prior": True, "energy_scale": "kT", "feature_net": None,
                  "dihedral_order": 3, "dihedral_pseudocount": 1.0, "cmap": None}
#: the fast network (``model.feature_net: {}`` with ``model.net: null``): a CGnet-style MLP on internal coordinates
FEATURE_NET_DEFAULTS = {"hidden": [64, 64], "activation": "tanh"}


def fold_split(lengths: list[int], fold: int | None, n_folds: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """Indices (into the concatenated frames) of training and held-out frames: the frames in replica order cut
    into ``n_folds`` contiguous blocks, block ``fold`` held out (``fold=None``: the last 10 % of every replica held
    out). Contiguous blocks keep correlated neighbouring frames on one side."""
    total = int(sum(lengths))
    if total < 2:
        raise CGDataError(f"{total} frame(s): need at least 2 to hold some out")
    idx = np.arange(total)
    if fold is None:
        starts = np.cumsum([0, *lengths[:-1]])
        held = np.concatenate([np.arange(s + int(0.9 * n), s + n) for s, n in zip(starts, lengths)])
        held = held if len(held) else idx[-1:]
    else:
        if not 0 <= fold < n_folds:
            raise ConfigError(f"data.fold={fold}: must be in 0..{n_folds - 1} (or null)")
        held = np.array_split(idx, n_folds)[fold]
    mask = np.ones(total, bool)
    mask[held] = False
    return idx[mask], idx[~mask]


def split_frames(lengths: list[int], fold: int | None, n_folds: int = 4, n_train: int | None = None,
                 n_valid: int | None = 2000, valid_fraction: float = 0.05) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Training, validation and held-out frame indices (into the concatenated frames) of a CG file.

    The held-out block is :func:`fold_split`'s and is never trained or validated on: validation frames come from
    the last ``valid_fraction`` of the training blocks (a contiguous stretch of trajectory, so that they are not
    the training frames' correlated neighbours) and training frames from the rest; ``n_train`` / ``n_valid`` of
    them at an even stride (:func:`even_stride`). An early-stopping monitor then never selects on the test data.
    """
    if not 0.0 < float(valid_fraction) < 1.0:
        raise ConfigError(f"data.valid_fraction={valid_fraction}: must be in (0, 1)")
    pool, held = fold_split(lengths, fold, n_folds)
    n_pool_valid = max(1, int(round(valid_fraction * len(pool))))
    if n_pool_valid >= len(pool):
        raise CGDataError(f"{len(pool)} training-block frame(s): too few to keep {n_pool_valid} for validation",
                          hint="use a longer reference or a smaller data.valid_fraction")
    train, valid = pool[:-n_pool_valid], pool[-n_pool_valid:]
    return even_stride(train, n_train), even_stride(valid, n_valid), held


class CGDataModule(L.LightningDataModule):
    """Mapped frames and forces of a CG file, split by trajectory blocks.

    Args:
        path: a ``compscope cg map`` file.
        fold, n_folds: the held-out block (see :func:`fold_split`); nothing of it is trained or validated on.
        n_train: training frames, taken at an even stride from the training blocks (None: all).
        n_valid: validation frames, at an even stride from the validation stretch (None: all).
        valid_fraction: the last part of the training blocks kept for validation (:func:`split_frames`).
        batch_size: frames per step.
        require_forces: refuse a file without forces (force matching); NaN frames were dropped by ``cg map``.
    """

    def __init__(self, path: str = "cg.h5", fold: int | None = 0, n_folds: int = 4, n_train: int | None = None,
                 n_valid: int | None = 2000, valid_fraction: float = 0.05, batch_size: int = 64,
                 require_forces: bool = True):
        super().__init__()
        self.path, self.fold, self.n_folds = str(path), fold, int(n_folds)
        self.n_train, self.n_valid, self.batch_size = n_train, n_valid, int(batch_size)
        self.valid_fraction = float(valid_fraction)
        self.require_forces = bool(require_forces)
        self._train = None

    def load(self) -> None:
        if self._train is not None:
            return
        d = load_cg(self.path)
        if self.require_forces:
            d.require_forces()
        self.cg = d
        x = np.concatenate(d.positions)
        f = np.concatenate(d.forces) if d.forces is not None else np.full_like(x, np.nan)
        tr, va, _ = split_frames([len(p) for p in d.positions], self.fold, self.n_folds, self.n_train, self.n_valid,
                                 self.valid_fraction)
        dt = torch.get_default_dtype()
        self._train = torch.utils.data.TensorDataset(torch.as_tensor(x[tr], dtype=dt), torch.as_tensor(f[tr], dtype=dt))
        self._valid = torch.utils.data.TensorDataset(torch.as_tensor(x[va], dtype=dt), torch.as_tensor(f[va], dtype=dt))
        self.train_positions = x[tr]

    def setup(self, stage: str | None = None) -> None:
        self.load()

    def train_dataloader(self):
        from compscope.train import step_loader

        return step_loader(self._train, min(self.batch_size, len(self._train)), seed=0,
                           trainer=getattr(self, "trainer", None), drop_last=True)

    def val_dataloader(self):
        return torch.utils.data.DataLoader(self._valid, batch_size=256)


def even_stride(idx: np.ndarray, n: int | None) -> np.ndarray:
    """``n`` of the frame indices ``idx`` at an even stride (None, or ``n`` >= their number: all): the frames
    :class:`CGDataModule` trains and validates on, for whatever else must see exactly those frames."""
    if n is None or n >= len(idx):
        return idx
    if n < 1:
        raise ConfigError(f"n_train/n_valid={n}: must be >= 1 (or null for all)")
    return idx[np.linspace(0, len(idx) - 1, int(n)).round().astype(int)]


class CGModule(L.LightningModule):
    """Force matching (and the denoising term) for a :class:`~compscope.models.CGPotential`.

    Args:
        model: :func:`compscope.models.build_model` arguments of the CG potential (``name: CGPotential``).
        loss: ``force_matching`` or ``denoising`` (force matching plus denoising score matching).
        noise: ``sigma`` of the denoising term, Å; a list of sigmas is a schedule: each frame draws one of them,
            and its squared error is weighted by ``(sigma / max sigma)^2`` (the target's variance falls as
            ``1/sigma^2``; the usual ``lambda(sigma) = sigma^2`` weighting of multi-level denoising).
        denoising_weight: ``w`` of the denoising term.
        temperature: K of the data (kT of the denoising target).
        force_scale: the loss divides squared force errors by this squared (eV/Å; the data's force std).
        lr, weight_decay: AdamW.
    """

    def __init__(self, model: Mapping[str, Any], loss: str = "force_matching", noise: float | list[float] = 0.05,
                 denoising_weight: float = 1.0, temperature: float = 300.0, force_scale: float = 1.0,
                 lr: float = 3e-3, weight_decay: float = 0.0):
        super().__init__()
        if loss not in LOSSES:
            raise ConfigError(f"module.loss={loss!r}: use one of {list(LOSSES)}")
        sigmas = [float(s) for s in (noise if isinstance(noise, (list, tuple)) else [noise])]
        if not sigmas or min(sigmas) <= 0 or denoising_weight < 0 or force_scale <= 0:
            raise ConfigError(f"module.noise={noise!r}: every sigma and module.force_scale must be > 0, "
                              "denoising_weight >= 0", hint="e.g. noise: 0.01 or noise: [0.005, 0.01, 0.02]")
        self.save_hyperparameters()
        self.sigmas = sigmas
        self.model = build_model(**model)
        self.kT = kT_eV(temperature)

    def _forces(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.energy_forces(x, training=True)[1]

    def training_step(self, batch, batch_idx):
        x, f = batch
        s2 = self.hparams.force_scale ** 2
        fm = ((self._forces(x) - f) ** 2).mean() / s2
        loss = fm
        if self.hparams.loss == "denoising":
            eps = torch.randn_like(x)
            if len(self.sigmas) == 1:
                sig, weight = self.sigmas[0], 1.0
            else:  # one sigma per frame from the schedule
                levels = torch.as_tensor(self.sigmas, dtype=x.dtype, device=x.device)
                sig = levels[torch.randint(len(levels), (len(x),), device=x.device)][:, None, None]
                weight = (sig / levels.max()) ** 2
            target = -self.kT * eps / sig
            dsm = (weight * (self._forces(x + sig * eps) - target) ** 2).mean() / s2
            loss = fm + self.hparams.denoising_weight * dsm
            self.log("train_dsm", dsm, batch_size=len(x))
        self.log("train_fm", fm, batch_size=len(x))
        self.log("train_loss", loss, prog_bar=True, batch_size=len(x))
        return loss

    def validation_step(self, batch, batch_idx):
        x, f = batch
        with torch.enable_grad():
            pred = self.model.energy_forces(x)[1].detach()
        mse = ((pred - f) ** 2).mean()
        self.log("val_loss", mse / self.hparams.force_scale ** 2, batch_size=len(x))
        self.log("val_force_rmse", mse.sqrt(), prog_bar=True, batch_size=len(x))

    def configure_optimizers(self):
        return torch.optim.AdamW(self.parameters(), lr=self.hparams.lr, weight_decay=self.hparams.weight_decay)


def resolve_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """Every section checked against its constructor, every default written out (what ``--resume`` compares)."""
    unknown = sorted(set(config) - set(SECTIONS))
    if unknown:
        raise ConfigError(f"CG config: unknown top-level key(s) {unknown}",
                          hint=f"a CG config has the sections {list(SECTIONS)} (see configs/cg/)")
    model = {**MODEL_DEFAULTS, **(config.get("model") or {})}
    bad = sorted(set(model) - set(MODEL_DEFAULTS))
    if bad:
        raise ConfigError(f"CG config: unknown model key(s) {bad}", hint=f"model takes {sorted(MODEL_DEFAULTS)}")
    if model["net"] is not None:
        from compscope.models import EquivariantPotential
        from compscope.train import check_arguments

        check_arguments("model.net", EquivariantPotential, {**model["net"], "species": [1]})
    if model["feature_net"] is not None:
        bad = sorted(set(model["feature_net"]) - set(FEATURE_NET_DEFAULTS))
        if bad:
            raise ConfigError(f"CG config: unknown model.feature_net key(s) {bad}",
                              hint=f"feature_net takes {sorted(FEATURE_NET_DEFAULTS)} (the angles, dihedrals and "
                                   "feature statistics come from the data)")
        model["feature_net"] = {**FEATURE_NET_DEFAULTS, **model["feature_net"]}
    if model["cmap"] is not None:
        from ._prior import CMAP_DEFAULTS

        if not isinstance(model["cmap"], Mapping) or set(model["cmap"]) - set(CMAP_DEFAULTS):
            raise ConfigError(f"CG config: model.cmap={model['cmap']!r} is not a mapping of known keys",
                              hint=f"model.cmap takes {sorted(CMAP_DEFAULTS)} ({{}} for the defaults) or null")
        model["cmap"] = {**CMAP_DEFAULTS, **model["cmap"]}
    trainer = resolve_section(config, "trainer", TrainerConfig, TRAINER_DEFAULTS)
    TrainerConfig(**trainer)
    return {"seed": int(config.get("seed", 0)), "out": None if config.get("out") is None else str(config["out"]),
            "data": resolve_section(config, "data", CGDataModule),
            "model": model,
            "module": resolve_section(config, "module", CGModule,
                                      provided={"model": "the model section", "temperature": "the data file",
                                                "force_scale": "the data"}),
            "trainer": trainer}


def model_kwargs(cfg: Mapping[str, Any], data: CGDataModule) -> dict[str, Any]:
    """The CG potential's build arguments: the prior fitted on the training frames, the network section."""
    d = data.cg
    m = cfg["model"]
    prior = fit_prior(data.train_positions, d.temperature, dihedrals=bool(m["dihedral_prior"]),
                      fourier_order=int(m["dihedral_order"]), pseudocount=float(m["dihedral_pseudocount"]),
                      cmap=m.get("cmap"))
    scale = kT_eV(d.temperature) if m["energy_scale"] == "kT" else float(m["energy_scale"])
    out = {"name": "CGPotential", "bead_z": list(d.bead_z), "prior": prior,
           "net": None if m["net"] is None else dict(m["net"]), "energy_scale": scale}
    if m.get("feature_net") is not None:
        out["feature_net"] = feature_net_kwargs(data.train_positions, m["feature_net"])
    return out


def feature_net_kwargs(positions: np.ndarray, section: Mapping[str, Any]) -> dict[str, Any]:
    """:class:`~compscope.models.CGFeatureNet` arguments: the chain's angles and dihedrals, the feature mean and
    std of the training frames (T, n_beads, 3)."""
    from compscope.models import CGFeatureNet

    from ._prior import chain_topology

    n = positions.shape[1]
    topo = chain_topology(n)
    args = {**FEATURE_NET_DEFAULTS, **section, "angles": topo["angles"], "dihedrals": topo["dihedrals"]}
    net = CGFeatureNet(n, **args)
    with torch.no_grad():
        f = net.features(torch.as_tensor(positions, dtype=torch.float64)).numpy()
    std = np.maximum(f.std(0), 1e-6)
    return {**args, "feature_mean": f.mean(0).tolist(), "feature_std": std.tolist()}


def train(config: Mapping[str, Any], out: str | os.PathLike | None = None, resume: bool = False) -> FitResult:
    """Train a CG potential as a config describes (module docstring); writes ``model.pt`` into the run folder."""
    cfg = resolve_config(config)
    where = run_folder(cfg, out, example="runs/cg_ala2")
    L.seed_everything(cfg["seed"], workers=True, verbose=False)
    data = CGDataModule(**cfg["data"])
    data.load()  # before the run folder: a file without forces leaves no folder behind
    f = data._train.tensors[1]
    scale = float(f.std()) if torch.isfinite(f).all() and len(f) > 1 else 1.0
    module = CGModule(model_kwargs(cfg, data), temperature=data.cg.temperature, force_scale=scale, **cfg["module"])
    run = RunDir(where, resume=resume, config=cfg, safe=RESUME_SAFE).start()
    result = fit(module, data, run, TrainerConfig(**cfg["trainer"]))
    if run.path.exists():
        save_package(module.model, run.file("model.pt"), config=cfg,
                     metrics={"n_train": len(data._train), "n_valid": len(data._valid),
                              "n_dropped_nonfinite": data.cg.n_dropped_nonfinite})
    return result
