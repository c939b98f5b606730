"""Shared parts of the molecule generators: feature encoding, size distribution, conditioning, sampling loop."""

from __future__ import annotations

import logging
import time
import warnings

import torch
from torch import nn

from ._batch import NUM_TYPES, MolBatch
from ._dynamics import EGNNDynamics
from ._qm9 import check_property

log = logging.getLogger(__name__)

CHARGES = torch.tensor([1.0, 6.0, 7.0, 8.0, 9.0])  # atomic numbers: EDM's "charges" channel


class MoleculeGenerator(nn.Module):
    """Base class: joint continuous positions + one-hot element types + charges, as in EDM.

    Features are ``h = [one_hot / 4, Z / 10]`` (EDM's normalisation factors ``[1, 4, 10]``); element types are
    decoded by ``argmax`` over the one-hot channels. The molecule size is drawn from the training histogram
    ``p(M)`` (EDM section 3.3). A conditional model sees ``(c - mean) / MAD`` of one property as an extra node
    feature (EDM section 3.4).

    Args:
        hidden: EGNN width. num_layers: EGNN depth. attention, coords_range: EGNN options.
        condition: QM9 property name to condition on (``alpha``, ``gap``, ``homo``, ``lumo``, ``mu``, ``Cv``),
            or None for an unconditional model.
        max_atoms: largest molecule size the size histogram can hold.
    """

    norm_onehot = 4.0
    norm_charge = 10.0

    def __init__(self, hidden: int = 128, num_layers: int = 6, condition: str | None = None,
                 max_atoms: int = 29, attention: bool = True, coords_range: float = 15.0):
        super().__init__()
        self.condition = check_property(condition) if condition else None
        self.dynamics = EGNNDynamics(NUM_TYPES + 1, 1 if condition else 0, hidden, num_layers, attention,
                                     coords_range)
        self.register_buffer("size_hist", torch.zeros(max_atoms + 1))
        # mean, MAD, min, max of the conditioning property on the training set
        self.register_buffer("prop_stats", torch.tensor([0.0, 1.0, float("-inf"), float("inf")]))

    # -- data statistics ---------------------------------------------------------------------------------
    def set_statistics(self, n_atoms: torch.Tensor, prop: torch.Tensor | None = None) -> None:
        """Fill the size histogram (and the property's mean / MAD / range) from the training set."""
        n_atoms = torch.as_tensor(n_atoms).long()
        if int(n_atoms.max()) >= len(self.size_hist):
            raise ValueError(f"training molecules have up to {int(n_atoms.max())} atoms; "
                             f"set max_atoms >= {int(n_atoms.max())} in the model config")
        self.size_hist.zero_().index_add_(0, n_atoms.to(self.size_hist.device),
                                         torch.ones(len(n_atoms), dtype=self.size_hist.dtype,
                                                    device=self.size_hist.device))
        if self.condition is not None:
            if prop is None:
                raise ValueError(f"conditional model on {self.condition!r}: pass the training property values")
            prop = torch.as_tensor(prop, dtype=torch.float64)
            mean = prop.mean()
            self.prop_stats.copy_(torch.stack([mean, (prop - mean).abs().mean(), prop.min(), prop.max()]).float())

    def normalise_context(self, values: torch.Tensor) -> torch.Tensor:
        """Property values ``(G,)`` -> model context ``(G, 1)``."""
        mean, mad = self.prop_stats[0], self.prop_stats[1]
        v = torch.as_tensor(values, dtype=torch.float32, device=mean.device)
        return ((v - mean) / mad)[:, None]

    def sample_sizes(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        if self.size_hist.sum() == 0:
            raise RuntimeError("size distribution is empty: train the model (or call set_statistics) first")
        return torch.multinomial(self.size_hist, n, replacement=True, generator=generator)

    def check_sizes(self, sizes: torch.Tensor) -> None:
        seen = torch.nonzero(self.size_hist).flatten()
        bad = sorted({int(s) for s in sizes if int(s) >= len(self.size_hist) or self.size_hist[int(s)] == 0})
        if bad:
            raise ValueError(f"molecule sizes {bad} were never seen in training (seen: {int(seen.min())}-"
                             f"{int(seen.max())} atoms); ask for sizes the model saw or leave sizes unset")

    # -- encoding -----------------------------------------------------------------------------------------
    def encode(self, mb: MolBatch) -> tuple[torch.Tensor, torch.Tensor]:
        """Positions ``(N, 3)`` and normalised features ``(N, 6)`` of a batch."""
        onehot = torch.nn.functional.one_hot(mb.types, NUM_TYPES).to(mb.x.dtype) / self.norm_onehot
        charge = CHARGES.to(mb.x)[mb.types][:, None] / self.norm_charge
        return mb.x, torch.cat([onehot, charge], -1)

    @staticmethod
    def decode(h: torch.Tensor) -> torch.Tensor:
        """Element index ``(N,)`` from features ``(N, 6)``."""
        return h[:, :NUM_TYPES].argmax(-1)

    def context_of(self, mb: MolBatch) -> torch.Tensor | None:
        """Normalised context ``(G, 1)`` from the raw property values in ``mb.context`` (None if unconditional)."""
        if not self.condition:
            return None
        if mb.context is None:
            raise ValueError(f"this model is conditioned on {self.condition!r} but the batch has no property values")
        return self.normalise_context(mb.context.flatten()).to(mb.x)

    # -- to implement -------------------------------------------------------------------------------------
    def loss(self, mb: MolBatch) -> torch.Tensor:
        raise NotImplementedError

    def sample_batch(self, mb: MolBatch, generator: torch.Generator | None = None) -> MolBatch:
        raise NotImplementedError

    # -- sampling -----------------------------------------------------------------------------------------
    @torch.no_grad()
    def sample(self, n: int, condition: float | torch.Tensor | None = None, sizes: torch.Tensor | None = None,
               batch_size: int = 256, seed: int | None = None, progress: bool = False):
        """Sample ``n`` molecules.

        Args:
            n: number of molecules.
            condition: property value(s) in the property's unit (scalar or ``(n,)``); required for a
                conditional model, refused for an unconditional one. Values outside the training range warn.
            sizes: ``(n,)`` atom counts; default: drawn from the training size histogram.
            batch_size: molecules per network call.
            seed: for reproducible samples.

        Returns:
            ``(molecules, seconds)``: a list of ``(positions (n_i, 3) Å, element indices (n_i,))`` and the
            wall-clock sampling time.
        """
        if seed is None:
            return self._sample(n, condition, sizes, batch_size, None, progress)
        with torch.random.fork_rng(devices=[]):  # reproducible without touching the caller's RNG state
            torch.manual_seed(seed)
            return self._sample(n, condition, sizes, batch_size, torch.Generator().manual_seed(seed), progress)

    def _sample(self, n, condition, sizes, batch_size, gen, progress):
        ctx_all = self._condition_values(n, condition)
        sizes = self.sample_sizes(n, gen) if sizes is None else torch.as_tensor(sizes).long()
        if len(sizes) != n:
            raise ValueError(f"got {len(sizes)} sizes for {n} molecules")
        self.check_sizes(sizes)
        dev = self.size_hist.device
        out, t0 = [], time.perf_counter()
        from rich.progress import Progress

        with Progress(disable=not progress, transient=True) as bar:
            task = bar.add_task("sampling", total=n)
            for s in range(0, n, batch_size):
                ctx = None if ctx_all is None else ctx_all[s:s + batch_size]
                mb = MolBatch.from_sizes(sizes[s:s + batch_size], context=ctx).to(dev)
                res = self.sample_batch(mb, gen)
                out.extend((x.numpy(), t.numpy()) for x, t in res.split())
                bar.advance(task, mb.num_graphs)
        return out, time.perf_counter() - t0

    def _condition_values(self, n: int, condition) -> torch.Tensor | None:
        if self.condition is None:
            if condition is not None:
                raise ValueError("this model is unconditional: drop --condition, or train a model with "
                                 "`condition: <property>` in its config")
            return None
        if condition is None:
            raise ValueError(f"this model is conditioned on {self.condition!r}: pass a value, "
                             f"e.g. --condition {self.condition}=<value>")
        vals = torch.as_tensor(condition, dtype=torch.float32).flatten()
        vals = vals.expand(n).clone() if vals.numel() == 1 else vals
        lo, hi = float(self.prop_stats[2]), float(self.prop_stats[3])
        out = (vals < lo) | (vals > hi)
        if out.any():
            warnings.warn(f"{int(out.sum())} requested {self.condition} value(s) lie outside the training range "
                          f"[{lo:.4g}, {hi:.4g}]; the model extrapolates and samples may not match", stacklevel=3)
        return vals
