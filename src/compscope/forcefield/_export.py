"""Three artifacts, three extensions: checkpoint ``.ckpt`` (resume), package ``.pt`` (share), compiled
``.jit.pt`` (deploy, TorchScript). The package loads with ``torch.load(weights_only=True)``: no pickled code."""

from __future__ import annotations

import importlib.metadata as md
from pathlib import Path
from typing import Any

import torch
from torch import nn

from compscope.models import build_model

FORMAT = "compscope-model/2"
# format 1 packages predate EquivariantPotential's ``isolated_e0`` (their energies were trained without it)
OLD_FORMATS = {"compscope-model/1": {"isolated_e0": False}}


def code_versions() -> dict[str, str]:
    out = {}
    for pkg in ("compscope", "torch", "e3nn", "ase", "lightning"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            pass
    return out


def save_package(model: nn.Module, model_kwargs: dict[str, Any], path: str | Path,
                 config: dict[str, Any] | None = None, metrics: dict[str, float] | None = None) -> Path:
    """Write weights + constructor arguments + versions (+ resolved config, metrics) to ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    kwargs = {k: (list(v) if isinstance(v, tuple) else v) for k, v in model_kwargs.items()}
    doc = {
        "format": FORMAT,
        "model_kwargs": kwargs,
        "dtype": str(next(model.parameters()).dtype).replace("torch.", ""),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "versions": code_versions(),
        "config": config or {},
        "metrics": metrics or {},
    }
    torch.save(doc, path)
    return path


def load_model(path: str | Path, dtype: torch.dtype | None = None, device: str = "cpu") -> nn.Module:
    """Load a packaged model (safe loading) in eval mode; ``dtype`` overrides the saved one."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"model file {path} not found (train one with `compscope train CONFIG.yaml`)")
    try:
        doc = torch.load(path, map_location=device, weights_only=True)
    except Exception as exc:  # noqa: BLE001
        raise ValueError(f"{path}: not a compscope model package ({type(exc).__name__}: {exc})") from exc
    if not isinstance(doc, dict) or (doc.get("format") != FORMAT and doc.get("format") not in OLD_FORMATS):
        raise ValueError(f"{path}: not a compscope model package (expected format {FORMAT}); "
                         "a Lightning checkpoint (.ckpt) is exported with `compscope export`")
    saved = getattr(torch, doc["dtype"])
    kwargs = {**OLD_FORMATS.get(doc["format"], {}), **doc["model_kwargs"]}
    model = build_model(**kwargs).to(saved)  # load at full saved precision, then cast
    model.load_state_dict(doc["state_dict"])
    model = model.to(device=device, dtype=dtype or saved)
    model.eval()
    model.package_info = {k: doc[k] for k in ("model_kwargs", "versions", "config", "metrics")}
    return model


class _NodeEnergy(nn.Module):
    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, positions, node_attrs, species_idx, edge_index, cell_shifts, edge_cell):
        return self.model.node_energies(positions, node_attrs, species_idx, edge_index, cell_shifts, edge_cell)


def compile_model(model: nn.Module, example, path: str | Path | None = None) -> torch.jit.ScriptModule:
    """TorchScript (traced) per-atom energy function of ``model``; forces come from autograd at run time.

    ``example`` is an :class:`~compscope.data.AtomicGraph` used for tracing; shapes stay dynamic (sizes are
    read from tensor shapes). The file stores the model's species, cutoff and versions as extra files.
    """
    import json

    model = model.eval()
    dtype = next(model.parameters()).dtype
    g = example.to(dtype=dtype)
    idx = model.species_index(g.atomic_numbers)
    attrs = torch.nn.functional.one_hot(idx, len(model.species)).to(dtype)
    pos = g.positions.detach().requires_grad_(True)
    args = (pos, attrs, idx, g.edge_index, g.cell_shifts, g.cell[g.batch[g.edge_index[0]]])
    with torch.jit.optimized_execution(False):
        traced = torch.jit.trace(_NodeEnergy(model), args, check_trace=False)
    if path is not None:
        meta = {"species": model.species, "cutoff": model.cutoff, "dtype": str(dtype).replace("torch.", ""),
                "versions": code_versions(), "format": "compscope-compiled/1"}
        torch.jit.save(traced, str(path), _extra_files={"compscope.json": json.dumps(meta)})
    return traced


class CompiledPotential(nn.Module):
    """A TorchScript energy function behind the usual ``forward(graph) -> {energy, forces, [stress]}`` contract."""

    def __init__(self, path: str | Path):
        import json

        super().__init__()
        extra = {"compscope.json": ""}
        self.module = torch.jit.load(str(path), _extra_files=extra, map_location="cpu")
        meta = json.loads(extra["compscope.json"])
        self.species = [int(z) for z in meta["species"]]
        self.cutoff = float(meta["cutoff"])
        self.dtype = getattr(torch, meta["dtype"])
        from compscope.models._forcefield import species_lookup

        self.register_buffer("z_to_index", species_lookup(self.species), persistent=False)

    def forward(self, graph, compute_forces: bool = True, compute_stress: bool = False, training: bool = False):
        from compscope.models._forcefield import species_index
        from compscope.nn import potential_outputs

        g = graph.to(dtype=self.dtype)
        idx = species_index(self.z_to_index, g.atomic_numbers, self.species)
        attrs = torch.nn.functional.one_hot(idx, len(self.species)).to(self.dtype)
        return potential_outputs(
            lambda pos, edge_cell: self.module(pos, attrs, idx, g.edge_index, g.cell_shifts, edge_cell),
            g, compute_forces, compute_stress, training,
        )


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


def export_model(src: str | Path, out: str | Path, dtype: str = "float64") -> Path:
    """Export from a run directory, Lightning checkpoint or package to a package (.pt) or TorchScript (.jit.pt)."""
    src, out = Path(src), Path(out)
    if src.is_dir():
        src = src / "model.pt"
    if not src.exists():
        raise FileNotFoundError(f"{src} not found")
    if src.suffix == ".ckpt":
        from ._task import ForceFieldTask

        ckpt = torch.load(src, map_location="cpu", weights_only=True)
        state = ckpt["state_dict"]
        ckpt_dtype = next(v.dtype for v in state.values() if v.is_floating_point())
        task = ForceFieldTask(**ckpt["hyper_parameters"]).to(ckpt_dtype)
        task.load_state_dict(state)
        model = task.eval_model.eval()
        kwargs = dict(task.hparams["model"])
    else:
        model = load_model(src)
        kwargs = model.package_info["model_kwargs"]
    if out.name.endswith(".jit.pt"):
        dt = getattr(torch, dtype)
        model = model.to(dt)
        compile_model(model, _example_graph(model.species, model.cutoff, dt), out)
        return out
    if out.suffix != ".pt":
        raise ValueError(f"output must end in .pt (package) or .jit.pt (compiled), got {out.name}")
    return save_package(model, kwargs, out)
