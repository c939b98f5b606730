"""Loading a trained solver and scoring it on the test split (accumulated error, per-step curve, runtime)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from compscope.errors import CompscopeError

from ._equations import get_equation
from ._generate import generate, load_split
from ._metrics import per_step_error, time_per_trajectory, trajectory_errors
from ._module import NeuralPDESolver

__all__ = ["EquationMismatchError", "load_solver", "evaluate"]


class EquationMismatchError(CompscopeError, ValueError):
    """A model is evaluated on another equation or grid than it was trained on."""


def check_trained_for(model, what: str, command: str, equation: str | None = None, nx: int | None = None) -> None:
    """Raise :class:`EquationMismatchError` unless ``equation``/``nx`` (None: any) are ``model.equation``/``model.nx``;
    ``what`` names the model in the message, ``command`` the CLI verb that trains one."""
    name = get_equation(equation).name if equation is not None else model.equation
    if name != model.equation or (nx is not None and int(nx) != model.nx):
        raise EquationMismatchError(
            f"this {what} model was trained for {model.equation} at nx={model.nx}, but asked to run on "
            f"{name} at nx={nx if nx is not None else model.nx}",
            hint=f"run it on {model.equation} nx={model.nx}, or train one for {name} nx={nx or model.nx} "
                 f"(compscope pde {command})")


def load_solver(checkpoint: str | os.PathLike, equation: str | None = None, nx: int | None = None):
    """Load a trained solver; raise :class:`EquationMismatchError` if equation/nx differ from training."""
    path = Path(checkpoint)
    if not path.exists():
        raise FileNotFoundError(f"checkpoint {path} not found (train one with `compscope pde train CONFIG`)")
    solver = NeuralPDESolver.load_from_checkpoint(path, map_location="cpu")
    solver.eval()
    hp = solver.hparams
    if equation is not None and get_equation(equation).name != hp.equation or nx is not None and int(nx) != hp.nx:
        raise EquationMismatchError(
            f"{path} was trained on {hp.equation} at nx={hp.nx}, but asked to run on "
            f"{equation or hp.equation} at nx={nx or hp.nx}",
            hint=f"evaluate it on {hp.equation} nx={hp.nx} or train a model for {equation or hp.equation} "
                 f"nx={nx or hp.nx}",
        )
    return solver


@torch.no_grad()
def evaluate(checkpoint: str | os.PathLike, equation: str | None = None, nx: int | None = None,
             n_test: int = 128, seed: int = 0, cache: str | None = None, workers: int | None = None,
             timing: bool = True, progress: bool = False) -> dict:
    """Roll a trained solver out on the test split: accumulated error, per-step curve, runtime per trajectory."""
    solver = load_solver(checkpoint, equation, nx)
    hp = solver.hparams
    te = load_split(generate(hp.equation, "test", n_test, seed, cache, workers, progress=progress), hp.nx)
    u = torch.tensor(te["u"], dtype=torch.float32)
    cond = torch.tensor(te["cond"], dtype=torch.float32)
    n0 = hp.given_windows * hp.time_window
    pred = solver.rollout_from_given(u, cond)
    per_traj = trajectory_errors(pred.numpy(), te["u"], n0)  # (B,) heavy-tailed: report the mean's uncertainty
    res = {
        "equation": hp.equation, "nx": hp.nx, "n_test": n_test, "given_steps": n0,
        "accumulated_error": float(per_traj.mean()),
        "accumulated_error_se": float(per_traj.std(ddof=1) / np.sqrt(len(per_traj))) if len(per_traj) > 1 else None,
        "per_step_error": per_step_error(pred.numpy(), te["u"]).tolist(),
    }
    if timing:
        res["s_per_traj_batched"] = time_per_trajectory(lambda: solver.rollout_from_given(u, cond), len(u), repeats=2)
        res["s_per_traj_single"] = time_per_trajectory(lambda: solver.rollout_from_given(u[:1], cond[:1]), 1, repeats=3)
    res["prediction"] = pred.numpy()
    res["reference"] = te["u"]
    res["x"], res["t"] = te["x"], te["t"]
    return res
