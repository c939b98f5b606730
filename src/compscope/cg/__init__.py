"""Machine-learned coarse graining: maps and force maps, a fitted prior, force matching, CG simulation, comparison.

Atoms become beads (:func:`slice_map`, :func:`com_map`, presets ``backbone`` and ``ca``) with a force map that stays
correct when bonds to hydrogen were constrained in the reference; :func:`map_reference` maps a ``compscope md
reference`` file; :func:`fit_prior` fits the physical prior by Boltzmann inversion; :func:`train` fits a
:class:`compscope.models.CGPotential` (prior + equivariant network) by force matching or denoising force matching
with the shared trainer; :func:`average_models` folds a seed ensemble of fast models into one; :func:`refine_cmap`
corrects a model's (phi, psi) term towards the training frames' distribution from frames the model sampled. The CG
potential follows the force-field contract, so CG simulation runs on the MD engine (``compscope cg simulate`` drives
``compscope.md.simulate`` from the CLI layer).
"""

from ._compare import backbone_dihedrals, compare, free_energy_mse, read_frames
from ._data import REGENERATE_HINT, CGData, load_cg, map_reference
from ._ensemble import average_models
from ._errors import CGDataError, CGMappingError
from ._mapping import (
    PRESETS,
    CGMap,
    com_map,
    free_groups,
    map_from_spec,
    optimised_force_map,
    read_pdb_atoms,
    slice_map,
)
from ._prior import CMAP_DEFAULTS, chain_topology, cmap_correction, cmap_fit, cmap_modes, fit_prior, kT_eV
from ._refine import IBIResult, ibi_refine, per_step, refine_cmap
from ._train import (
    CGDataModule,
    CGModule,
    even_stride,
    feature_net_kwargs,
    fold_split,
    model_kwargs,
    resolve_config,
    split_frames,
    train,
)
from ._trajectory import write_cg_trajectory

__all__ = ["REGENERATE_HINT", "CGData", "load_cg", "map_reference", "CGDataError", "CGMappingError", "PRESETS",
           "CGMap", "com_map", "map_from_spec",
           "optimised_force_map", "free_groups", "read_pdb_atoms", "slice_map", "chain_topology", "fit_prior", "kT_eV",
           "CMAP_DEFAULTS", "cmap_fit", "cmap_modes", "cmap_correction", "refine_cmap", "ibi_refine", "IBIResult",
           "per_step",
           "CGDataModule", "CGModule", "even_stride", "feature_net_kwargs", "fold_split", "model_kwargs",
           "resolve_config", "split_frames", "train",
           "write_cg_trajectory",
           "backbone_dihedrals", "compare", "free_energy_mse", "read_frames", "average_models"]
