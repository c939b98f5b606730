"""A seed ensemble of fast CG models as one model: the members' forces averaged exactly, at one model's MD cost.

Members that share the prior and the feature standardisation (trained on the same frames with other seeds) differ
only in their :class:`~compscope.models.CGFeatureNet` weights. Their average ``U = U_prior + (1/K) sum_k U_k`` is
itself a CGnet-style MLP: the first layers stacked (every member reads the same features), the hidden layers
block-diagonal (members do not mix), the output layer concatenated and divided by ``K``. So the ensemble is an
ordinary :class:`~compscope.models.CGPotential` (model package, fused MD kernel) whose energies and forces are
the members' mean to rounding.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from compscope.errors import ConfigError

__all__ = ["average_models"]


def average_models(models: Sequence[torch.nn.Module]) -> torch.nn.Module:
    """One :class:`~compscope.models.CGPotential` whose energy is the mean of ``models``' (see the module docstring).

    Raises:
        ConfigError: fewer than one model, a member with a message-passing network or without a feature network,
            or members whose priors, feature statistics, activations or layer widths differ.
    """
    from compscope.models import build_model

    models = list(models)
    if not models:
        raise ConfigError("average_models needs at least one model")
    first = models[0]
    for m in models:
        if getattr(m, "net", None) is not None or getattr(m, "feature_net", None) is None:
            raise ConfigError("average_models takes fast CG models (model.feature_net, no model.net)",
                              hint="train the members with model.net: null and model.feature_net: {...}")
        if m.energy_scale != first.energy_scale or list(m.atomic_numbers) != list(first.atomic_numbers):
            raise ConfigError("ensemble members differ in energy_scale or beads")
        for a, b in zip([*m.prior.buffers(), *_fixed(m.feature_net)], [*first.prior.buffers(),
                                                                           *_fixed(first.feature_net)]):
            if a.shape != b.shape or not torch.equal(a, b):
                raise ConfigError("ensemble members differ in their prior or feature statistics",
                                  hint="train the members on the same frames (same data section), other seeds")
    k = len(models)
    lin = [[layer for layer in m.feature_net.mlp if isinstance(layer, torch.nn.Linear)] for m in models]
    widths = [layer.out_features for layer in lin[0][:-1]]
    if any([layer.out_features for layer in ls[:-1]] != widths for ls in lin):
        raise ConfigError("ensemble members have different hidden widths")
    act = "tanh" if isinstance(first.feature_net.mlp[1], torch.nn.Tanh) else "silu"
    if any(("tanh" if isinstance(m.feature_net.mlp[1], torch.nn.Tanh) else "silu") != act for m in models):
        raise ConfigError("ensemble members have different activations")
    fn = first.feature_net
    kwargs = {"name": "CGPotential", "bead_z": list(first.atomic_numbers), "energy_scale": first.energy_scale,
              "net": None, "prior": _prior_kwargs(first.prior),
              "feature_net": {"hidden": [k * w for w in widths], "activation": act, "angles": fn.angles.tolist(),
                              "dihedrals": fn.dihedrals.tolist(), "feature_mean": fn.feature_mean.tolist(),
                              "feature_std": fn.feature_std.tolist()}}
    out = build_model(**kwargs).to(next(first.parameters()).dtype)
    new = [layer for layer in out.feature_net.mlp if isinstance(layer, torch.nn.Linear)]
    with torch.no_grad():
        for li, layer in enumerate(new):
            layer.weight.zero_()
            layer.bias.zero_()
            for mi, ls in enumerate(lin):
                w, b = ls[li].weight, ls[li].bias
                rows = slice(mi * w.shape[0], (mi + 1) * w.shape[0]) if li < len(new) - 1 else slice(0, 1)
                cols = slice(None) if li == 0 else slice(mi * w.shape[1], (mi + 1) * w.shape[1])
                if li < len(new) - 1:
                    layer.weight[rows, cols] = w
                    layer.bias[rows] = b
                else:  # the output: the members' mean
                    layer.weight[rows, cols] = w / k
                    layer.bias += b / k
    return out.eval()


def _fixed(net) -> list[torch.Tensor]:
    return [net.pairs, net.angles, net.dihedrals, net.feature_mean, net.feature_std]


def _prior_kwargs(prior) -> dict:
    """The :class:`~compscope.models.CGPrior` arguments of a prior (from its buffers)."""
    names = ["bonds", "bond_r0", "bond_k", "angles", "angle_theta0", "angle_k", "repulsion_pairs", "repulsion_sigma",
             "repulsion_epsilon", "dihedrals", "dihedral_cos", "dihedral_sin", "cmap", "cmap_modes", "cmap_cos",
             "cmap_sin"]
    return {n: getattr(prior, n).tolist() for n in names}
