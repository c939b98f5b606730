"""Shared helpers for benchmark scripts: every result JSON carries machine, versions, seed, command and notes.

Headline results (one JSON per benchmark cell, quoted by the README) go to ``benchmarks/results/``; tuning sweeps,
probes and superseded runs go to ``benchmarks/results/sweeps/`` (``write_result(..., sweep=True)``).
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
"""The repository root."""
WORK = ROOT / "benchmarks" / "work"
"""Scratch space of benchmark runs (git-ignored): data splits, run folders."""
RESULTS = ROOT / "benchmarks" / "results"
"""Headline result JSONs, one per benchmark cell."""
SWEEPS = RESULTS / "sweeps"
"""Tuning sweeps, probes and superseded runs."""

_VERSIONED = (
    "compscope", "torch", "e3nn", "numpy", "ase", "lightning", "rdkit", "numba", "FPSim2", "mace",
    "openmm", "ray", "jax", "scipy",
)


def versions() -> dict[str, str]:
    """Versions of the packages that matter for performance, for those importable here."""
    import importlib.metadata as md

    out = {"python": platform.python_version()}
    names = {"FPSim2": "fpsim2", "mace": "mace-torch"}
    for mod in _VERSIONED:
        try:
            out[mod] = md.version(names.get(mod, mod))
        except md.PackageNotFoundError:
            continue
    return out


def machine() -> dict[str, Any]:
    """Platform, CPU model and count, memory, load average, CUDA device and torch threads of this machine."""
    info: dict[str, Any] = {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        # other work on the machine skews timings: the 1/5/15-min load average at write time
        "loadavg": list(os.getloadavg()),
    }
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    info["cpu_model"] = line.split(":", 1)[1].strip()
                    break
        with open("/proc/meminfo") as fh:
            info["mem_total_kb"] = int(fh.readline().split()[1])
    except OSError:
        pass
    try:
        import torch

        info["cuda"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
        info["torch_threads"] = torch.get_num_threads()
    except Exception:  # noqa: BLE001 - torch optional for some benchmarks
        pass
    return info


def write_result(name: str, payload: dict[str, Any], seed: int | None = None, notes: list[str] | None = None,
                 sweep: bool = False, folder: Path | None = None) -> Path:
    """Write ``<name>.json`` with provenance and return its path.

    Args:
        name: file stem; also stored as ``"benchmark"``.
        payload: the results (JSON-serialisable; numpy scalars are written as floats).
        seed: the run's seed, if it has one.
        notes: free-text notes on how the run went (machine load, restarts, what was tried); stored as ``"notes"``.
        sweep: write to ``benchmarks/results/sweeps/`` (a tuning sweep, probe or variant) instead of the headline
            folder ``benchmarks/results/``.
        folder: write there instead (tests).
    """
    out = folder if folder is not None else (SWEEPS if sweep else RESULTS)
    out.mkdir(parents=True, exist_ok=True)
    doc = {
        "benchmark": name,
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "seed": seed,
        "machine": machine(),
        "versions": versions(),
        **payload,
    }
    doc["notes"] = [n for n in [*payload.get("notes", []), *(notes or [])] if n]
    path = out / f"{name}.json"
    path.write_text(json.dumps(doc, indent=2, default=float) + "\n")
    return path


def reference_ns(f) -> float:
    """Simulated ns of all replicas of an all-atom ``compscope md reference`` file (an open h5py File)."""
    reps = f["replicas"]
    return sum(int(reps[r].attrs["steps"]) * float(f.attrs["dt_fs"]) * 1e-6 for r in reps)


def reference_core_seconds(f) -> tuple[float, str]:
    """Core-seconds an all-atom ``compscope md reference`` file (an open h5py File) took, and how it is known: OpenMM
    replicas store their wall time (each on a core of its own); the dense engine's replicas ran together and each
    stores its share of that core's ns/day, so their ns over the summed rate is the time."""
    reps = f["replicas"]
    if all("wall_s" in reps[r].attrs for r in reps):
        return float(sum(reps[r].attrs["wall_s"] for r in reps)), "the replicas' integrator wall time, one core each"
    ns = reference_ns(f)
    rate = float(sum(float(reps[r].attrs.get("ns_per_day", 0.0)) for r in reps))
    if rate <= 0:
        raise SystemExit("the reference stores neither wall times nor ns/day per replica: regenerate it with "
                         "`compscope md reference`")
    return ns / rate * 86400.0, "the dense engine's recorded ns/day (all replicas on one core)"
