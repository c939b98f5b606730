"""Where the neural PDE solvers train: the accepted names, importable without torch (CLI and benchmark parsers)."""

from __future__ import annotations

ACCELERATORS = ("cpu", "gpu", "auto")


def check_accelerator(accelerator: str) -> None:
    """Raise a ValueError that says what to do for an unknown name or a GPU request without a CUDA device."""
    if accelerator not in ACCELERATORS:
        raise ValueError(f"unknown accelerator {accelerator!r}: use one of {', '.join(ACCELERATORS)}")
    import torch

    if accelerator == "gpu" and not torch.cuda.is_available():
        raise ValueError(f"accelerator='gpu' but torch {torch.__version__} sees no CUDA device: train with "
                         "accelerator='cpu' (or 'auto'), or install a CUDA build of torch on a GPU machine")
