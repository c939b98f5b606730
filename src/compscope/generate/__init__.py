"""3D molecule generation on QM9: E(n) diffusion (EDM), equivariant flow matching, EDM's metrics.

Public API:
    * data: :func:`load_qm9`, :func:`edm_splits`, :data:`PROPERTIES`, :class:`QM9DataModule`
    * models: :class:`EDM`, :class:`FlowMatching` (both :class:`MoleculeGenerator`), :class:`EGNNDynamics`
    * training (on :mod:`compscope.train`): :func:`train`, :func:`resolve_config`, :func:`build`, :func:`export`,
      :func:`load_model`, :class:`GeneratorModule`
    * conditional (EDM section 5.3): :class:`PropertyPredictor`, :func:`train_predictor` (on :mod:`compscope.train`),
      :func:`load_predictor`, :class:`PredictorModule`, :class:`PredictorData`,
      :func:`conditional_mae`, :func:`baselines`
    * metrics: :mod:`compscope.generate.metrics`; novelty reference :func:`qm9_train_smiles`
    * files and pictures: :func:`write_sdf`, :func:`write_xyz`, :func:`read_molecules`, :func:`molecule_grid`
"""

from . import metrics
from ._batch import MolBatch, collate, fully_connected_edges, remove_mean
from ._conditional import (
    PredictorData,
    PredictorModule,
    PropertyPredictor,
    baselines,
    conditional_mae,
    load_predictor,
    train_predictor,
)
from ._data import QM9DataModule, QM9Molecules
from ._dynamics import EGNNDynamics
from ._edm import EDM
from ._flow import FlowMatching
from ._io import MoleculeFileError, read_molecules, write_sdf, write_xyz
from ._model import MoleculeGenerator
from ._plot import molecule_grid
from ._qm9 import ATOM_DECODER, PROPERTIES, QM9, check_property, edm_splits, load_qm9
from ._reference import qm9_train_smiles
from ._schedule import PolynomialSchedule
from ._train import GeneratorModule, build, export, load_model, resolve_config, train

__all__ = [
    "metrics", "MolBatch", "collate", "fully_connected_edges", "remove_mean", "QM9DataModule", "QM9Molecules",
    "EGNNDynamics", "EDM", "FlowMatching", "MoleculeGenerator", "ATOM_DECODER", "PROPERTIES", "QM9",
    "check_property", "edm_splits", "load_qm9", "PolynomialSchedule", "GeneratorModule", "build", "export",
    "resolve_config", "load_model", "train", "PropertyPredictor", "baselines", "conditional_mae", "load_predictor",
    "train_predictor", "PredictorModule", "PredictorData", "MoleculeFileError", "read_molecules", "write_sdf",
    "write_xyz", "molecule_grid", "qm9_train_smiles",
]
