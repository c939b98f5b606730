"""Shared helpers for benchmark scripts: every result JSON carries machine, versions, seed and command."""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import sys
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"

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


def write_result(name: str, payload: dict[str, Any], seed: int | None = None) -> Path:
    """Write ``benchmarks/results/<name>.json`` with provenance and return its path."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    doc = {
        "benchmark": name,
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "seed": seed,
        "machine": machine(),
        "versions": versions(),
        **payload,
    }
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(doc, indent=2, default=float) + "\n")
    return path
