"""Model artifacts in one place: save a package, compile, and load any model file by its extension.

Three artifacts, three extensions (docs/conventions.md):

=============  ============================================================  ==========================
extension      what                                                          written by
=============  ============================================================  ==========================
``.ckpt``      Lightning checkpoint: weights (EMA), optimiser, loop state    the trainer (resume)
``.pt``        package: weights + constructor arguments + config, versions,  :func:`save_package` (share)
               metrics; loads with ``torch.load(weights_only=True)``
``.jit.pt``    TorchScript per-atom energy + species/cutoff metadata         :func:`export_compiled` (deploy)
=============  ============================================================  ==========================

:func:`load_model` reads all three (and a run folder, through its ``model.pt``) and returns a module under the
force-field contract ``forward(graph, compute_forces, compute_stress) -> {energy, forces, ...}`` with ``cutoff``
and ``species``. A model file that is not one of these raises :class:`ArtifactError` with the accepted kinds.

Examples:
    >>> import tempfile, torch
    >>> from compscope.models import build_model
    >>> model = build_model(preset="tiny", species=[1, 8], r_max=3.0).double()
    >>> with tempfile.TemporaryDirectory() as d:
    ...     path = save_package(model, f"{d}/water.pt")
    ...     loaded = load_model(path)
    >>> loaded.species, loaded.cutoff
    ([1, 8], 3.0)
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from compscope.errors import CompscopeError
from compscope.versions import code_versions

from ._forcefield import species_index, species_lookup
from ._registry import build_model

__all__ = [
    "ArtifactError", "ArtifactNotFoundError", "CompiledPotential", "EXTENSIONS", "FORMAT", "OLD_FORMATS",
    "COMPILED_FORMAT",
    "artifact_kind", "compile_model", "export_compiled", "export_model", "load_model", "read_model_file",
    "save_package",
]

FORMAT = "compscope-model/2"
# older package formats that still load, with the model arguments their weights were trained with: format 1
# packages predate EquivariantPotential's ``isolated_e0``
OLD_FORMATS = {"compscope-model/1": {"isolated_e0": False}}
COMPILED_FORMAT = "compscope-compiled/1"
#: accepted model-file extensions, longest first (``.jit.pt`` before ``.pt``)
EXTENSIONS = {
    ".jit.pt": "compiled TorchScript model (compscope forcefield export RUN --out NAME.jit.pt)",
    ".pt": "model package (the model.pt of a training run)",
    ".ckpt": "Lightning checkpoint (checkpoints/last.ckpt or best.ckpt of a training run)",
}
_ACCEPTED = "a run folder, " + ", ".join(f"{ext} ({what})" for ext, what in EXTENSIONS.items())


class ArtifactError(CompscopeError, ValueError):
    """A model file cannot be used: wrong extension, not written by compscope, or damaged."""


class ArtifactNotFoundError(ArtifactError, FileNotFoundError):
    """The model file (or run folder) does not exist."""


def artifact_kind(path: str | Path) -> str:
    """``"compiled"``, ``"package"`` or ``"checkpoint"`` from the file name; :class:`ArtifactError` otherwise."""
    name = Path(path).name
    for ext, kind in ((".jit.pt", "compiled"), (".pt", "package"), (".ckpt", "checkpoint")):
        if name.endswith(ext):
            return kind
    raise ArtifactError(f"{path}: unknown model file type", hint=f"pass {_ACCEPTED}")


def _model_kwargs(model: nn.Module) -> dict[str, Any]:
    kwargs = getattr(model, "build_kwargs", None)
    if kwargs is None:
        kwargs = getattr(model, "package_info", {}).get("model_kwargs")
    if kwargs is None:
        raise ArtifactError(f"cannot package a {type(model).__name__}: its constructor arguments are unknown",
                            hint="build it with compscope.models.build_model, or pass model_kwargs=")
    return dict(kwargs)


def save_package(model: nn.Module, path: str | Path, *, model_kwargs: Mapping[str, Any] | None = None,
                 config: Mapping[str, Any] | None = None, metrics: Mapping[str, Any] | None = None) -> Path:
    """Write a model package ``path`` (``.pt``): weights, constructor arguments, versions, config and metrics.

    Args:
        model: a model built by :func:`~compscope.models.build_model` (or loaded by :func:`load_model`).
        path: the file, ending in ``.pt``.
        model_kwargs: arguments of :func:`~compscope.models.build_model` that rebuild ``model`` (default: the
            ones it was built with).
        config: the resolved config of the run (stored for provenance).
        metrics: error tables or other numbers to keep with the model.
    """
    path = Path(path)
    if artifact_kind(path) != "package":
        raise ArtifactError(f"{path}: a model package is written to NAME.pt",
                            hint="use export_compiled for .jit.pt; .ckpt files are written by the trainer")
    kwargs = dict(model_kwargs) if model_kwargs is not None else _model_kwargs(model)
    kwargs = {k: (list(v) if isinstance(v, tuple) else v) for k, v in kwargs.items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    doc = {
        "format": FORMAT,
        "model_kwargs": kwargs,
        "dtype": str(next(model.parameters()).dtype).replace("torch.", ""),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "versions": code_versions(),
        "config": dict(config or {}),
        "metrics": dict(metrics or {}),
    }
    torch.save(doc, path)
    return path


def _torch_load(path: Path, device: str, what: str) -> Any:
    return read_model_file(path, what=what, hint=f"pass {_ACCEPTED}", device=device)[1]


def read_model_file(path: str | Path, *, what: str, hint: str, folder_file: str | None = "model.pt",
                    weights_only: bool = True, device: str = "cpu") -> tuple[Path, Any]:
    """The one way every task opens a model file: a run folder becomes its ``folder_file``, then the file must
    exist and be a readable torch file. Returns ``(path, loaded object)``; the task checks what is inside.

    Args:
        path: a file, or a run folder (with ``folder_file``).
        what: what the caller expects, for the message (``"property predictor"``).
        hint: what to pass instead, for both errors.
        folder_file: the file a run folder stands for (None: a folder is refused as not found).
        weights_only: ``torch.load``'s safe mode (files written by compscope's packagers load with it).
        device: ``map_location``.

    Raises:
        ArtifactNotFoundError: no such file.
        ArtifactError: the file is not a readable torch file.
    """
    p = Path(path)
    if p.is_dir() and folder_file:
        p = p / folder_file
    if not p.is_file():
        raise ArtifactNotFoundError(f"{what} {p} not found", hint=hint)
    try:
        return p, torch.load(p, map_location=device, weights_only=weights_only)
    except Exception as exc:  # noqa: BLE001 - torch raises many types for foreign or damaged files
        raise ArtifactError(f"{p}: not a readable {what} ({type(exc).__name__}: {exc})", hint=hint) from exc


def _restore(kwargs: dict[str, Any], state: dict[str, torch.Tensor], saved: torch.dtype, path: Path,
             dtype: torch.dtype | None, device: str) -> nn.Module:
    try:
        model = build_model(**kwargs).to(saved)  # load at full saved precision, then cast
        model.load_state_dict(state)
    except (KeyError, TypeError, RuntimeError) as err:
        raise ArtifactError(f"{path}: the saved weights do not fit the saved model arguments ({err})",
                            hint="the file was written by an incompatible compscope version; re-export it "
                                 "with that version") from err
    model = model.to(device=device, dtype=dtype or saved)
    return model.eval()


def _load_package(path: Path, dtype: torch.dtype | None, device: str) -> nn.Module:
    doc = _torch_load(path, device, "compscope model package")
    if not isinstance(doc, dict) or (doc.get("format") != FORMAT and doc.get("format") not in OLD_FORMATS):
        raise ArtifactError(f"{path}: not a compscope model package (expected format {FORMAT})",
                            hint=f"pass {_ACCEPTED}")
    kwargs = {**OLD_FORMATS.get(doc["format"], {}), **doc["model_kwargs"]}
    model = _restore(kwargs, doc["state_dict"], getattr(torch, doc["dtype"]), path, dtype, device)
    model.package_info = {"model_kwargs": kwargs, **{k: doc[k] for k in ("versions", "config", "metrics")}}
    return model


def _load_checkpoint(path: Path, dtype: torch.dtype | None, device: str) -> nn.Module:
    """The model of a Lightning checkpoint whose task stores :func:`build_model`'s arguments as hyper-parameter
    ``model`` and the network as attribute ``model`` (the force-field task); the EMA weights when the run used
    an EMA (they are what Lightning's weight averaging saves)."""
    ckpt = _torch_load(path, device, "Lightning checkpoint")
    hp = ckpt.get("hyper_parameters", {}) if isinstance(ckpt, dict) else {}
    if not isinstance(hp.get("model"), Mapping) or "state_dict" not in ckpt:
        raise ArtifactError(f"{path}: this checkpoint holds no compscope potential (no `model` hyper-parameter)",
                            hint="load checkpoints of other tasks with that task's own loader, e.g. "
                                 "compscope.generate.load_model")
    state = {k[len("model."):]: v for k, v in ckpt["state_dict"].items() if k.startswith("model.")}
    saved = next((v.dtype for v in state.values() if v.is_floating_point()), torch.float64)
    model = _restore(dict(hp["model"]), state, saved, path, dtype, device)
    model.package_info = {"model_kwargs": dict(hp["model"]), "versions": {}, "config": {}, "metrics": {}}
    return model


def load_model(path: str | Path, dtype: torch.dtype | None = None, device: str = "cpu") -> nn.Module:
    """Any compscope model file, in eval mode, by its extension (see the module docstring).

    Args:
        path: ``NAME.pt`` (package), ``NAME.jit.pt`` (compiled), ``NAME.ckpt`` (checkpoint) or a run folder
            (its ``model.pt``).
        dtype: cast packages and checkpoints to this dtype (default: the saved one); a compiled model keeps the
            dtype it was compiled for and converts its inputs.
        device: where to load.

    Raises:
        ArtifactNotFoundError: the file does not exist.
        ArtifactError: the file is of an unknown kind, or not written by compscope.
    """
    path = Path(path)
    if path.is_dir():
        path = path / "model.pt"
    if not path.exists():
        raise ArtifactNotFoundError(f"model file {path} not found",
                                    hint="train one with `compscope train CONFIG.yaml` or check the path")
    kind = artifact_kind(path)
    if kind == "compiled":
        return CompiledPotential(path).to(device)
    if kind == "checkpoint":
        return _load_checkpoint(path, dtype, device)
    return _load_package(path, dtype, device)


class _NodeEnergy(nn.Module):
    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, positions, node_attrs, species_idx, edge_index, cell_shifts, edge_cell):
        return self.model.node_energies(positions, node_attrs, species_idx, edge_index, cell_shifts, edge_cell)


def _example_graph(species: list[int], cutoff: float, dtype: torch.dtype):
    """A small random cluster with every species, used only to trace the compiled model."""
    from ase import Atoms

    from compscope.data import AtomicGraph

    rng = torch.Generator().manual_seed(0)
    n = max(4, len(species))
    numbers = [species[i % len(species)] for i in range(n)]
    pos = torch.rand(n, 3, generator=rng, dtype=torch.float64) * 0.8 * cutoff / 3**0.5
    return AtomicGraph.from_atoms(Atoms(numbers=numbers, positions=pos.numpy()), cutoff, energy_key=None,
                                  forces_key=None, dtype=dtype)


def compile_model(model: nn.Module, example=None, path: str | Path | None = None) -> torch.jit.ScriptModule:
    """TorchScript (traced) per-atom energy function of ``model``; forces come from autograd at run time.

    Args:
        model: a model with ``node_energies``, ``species`` and ``cutoff`` (:class:`EquivariantPotential`).
        example: an :class:`~compscope.data.AtomicGraph` to trace with (default: a small cluster of the model's
            species); shapes stay dynamic (sizes are read from tensor shapes).
        path: also write the compiled model there (``.jit.pt``), with species, cutoff, dtype and versions.
    """
    if not hasattr(model, "node_energies"):
        raise ArtifactError(f"a {type(model).__name__} cannot be compiled (it has no node_energies method)",
                            hint="compile models built by compscope.models.build_model")
    model = model.eval()
    dtype = next(model.parameters()).dtype
    g = (example if example is not None else _example_graph(model.species, model.cutoff, dtype)).to(dtype=dtype)
    idx = model.species_index(g.atomic_numbers)
    attrs = torch.nn.functional.one_hot(idx, len(model.species)).to(dtype)
    pos = g.positions.detach().requires_grad_(True)
    args = (pos, attrs, idx, g.edge_index, g.cell_shifts, g.cell[g.batch[g.edge_index[0]]])
    with torch.jit.optimized_execution(False):
        traced = torch.jit.trace(_NodeEnergy(model), args, check_trace=False)
    if path is not None:
        if artifact_kind(path) != "compiled":
            raise ArtifactError(f"{path}: a compiled model is written to NAME.jit.pt", hint="rename the output")
        meta = {"species": [int(z) for z in model.species], "cutoff": float(model.cutoff),
                "receptive_field": float(getattr(model, "receptive_field", model.cutoff)),
                "dtype": str(dtype).replace("torch.", ""), "versions": code_versions(), "format": COMPILED_FORMAT}
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        torch.jit.save(traced, str(path), _extra_files={"compscope.json": json.dumps(meta)})
    return traced


def export_compiled(model: nn.Module, path: str | Path, dtype: torch.dtype | str | None = None) -> Path:
    """Compile ``model`` (cast to ``dtype`` first, default its own) and write it to ``path`` (``.jit.pt``)."""
    if isinstance(dtype, str):
        dtype = _dtype(dtype)
    if dtype is not None:
        model = model.to(dtype)
    compile_model(model, None, path)
    return Path(path)


def export_model(src: str | Path, out: str | Path, dtype: str = "float64") -> Path:
    """Convert a run folder, checkpoint (``.ckpt``) or package (``.pt``) to a package (``.pt``) or compiled
    model (``.jit.pt``); ``dtype`` is the compiled model's."""
    out = Path(out)
    kind = artifact_kind(out)
    if kind == "checkpoint":
        raise ArtifactError(f"{out}: checkpoints are written by the trainer, not exported",
                            hint="export to NAME.pt (package) or NAME.jit.pt (compiled)")
    model = load_model(src)
    if isinstance(model, CompiledPotential):
        raise ArtifactError(f"{src}: a compiled model cannot be converted back",
                            hint="export from the run folder, its model.pt or a checkpoint")
    if kind == "compiled":
        return export_compiled(model, out, dtype)
    return save_package(model, out, model_kwargs=model.package_info["model_kwargs"],
                        config=model.package_info["config"], metrics=model.package_info["metrics"])


def _dtype(name: str) -> torch.dtype:
    if name not in ("float32", "float64"):
        raise ArtifactError(f"dtype {name!r} is not supported", hint="use float32 or float64")
    return getattr(torch, name)


class CompiledPotential(nn.Module):
    """A compiled (``.jit.pt``) energy function behind the usual ``forward(graph) -> {energy, forces, ...}``
    contract; forces and stress by autograd through :func:`compscope.nn.potential_outputs`."""

    def __init__(self, path: str | Path):
        super().__init__()
        extra = {"compscope.json": ""}
        try:
            self.module = torch.jit.load(str(path), _extra_files=extra, map_location="cpu")
            meta = json.loads(extra["compscope.json"])
            self.species = [int(z) for z in meta["species"]]
            self.cutoff = float(meta["cutoff"])
            self.dtype = getattr(torch, meta["dtype"])
        except (RuntimeError, ValueError, KeyError) as err:
            raise ArtifactError(f"{path} is not a usable compiled compscope model ({type(err).__name__}: {err})",
                                hint="compile it with `compscope forcefield export RUN --out NAME.jit.pt`") from err
        self.versions = meta.get("versions", {})
        # files compiled before it was stored have None: the LAMMPS route then refuses them (it needs the depth)
        rf = meta.get("receptive_field")
        self.receptive_field = None if rf is None else float(rf)
        self.register_buffer("z_to_index", species_lookup(self.species), persistent=False)

    def forward(self, graph, compute_forces: bool = True, compute_stress: bool = False, training: bool = False):
        from compscope.nn import potential_outputs

        g = graph.to(dtype=self.dtype)
        idx = species_index(self.z_to_index, g.atomic_numbers, self.species)
        attrs = torch.nn.functional.one_hot(idx, len(self.species)).to(self.dtype)
        return potential_outputs(
            lambda pos, edge_cell: self.module(pos, attrs, idx, g.edge_index, g.cell_shifts, edge_cell),
            g, compute_forces, compute_stress, training,
        )
