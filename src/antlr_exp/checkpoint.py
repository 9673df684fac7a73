"""Checkpoint files: written atomically, read back on the CPU.

A run folder holds ``checkpoints/last.pt`` (everything needed to continue: weights, optimizer,
scheduler, RNG states, the shuffling order of the current epoch, the metrics history, the best
weights so far) and ``checkpoints/best.pt`` (the best-validation weights and the config, what
``evaluate=`` reads). Both are replaced with ``os.replace`` only once completely written, so a
run killed at any moment leaves the previous complete file behind.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from .errors import ConfigError

LAST = "last.pt"
BEST = "best.pt"


def checkpoint_dir(run_dir: Path) -> Path:
    return Path(run_dir) / "checkpoints"


def save_atomic(payload: dict, path: Path) -> None:
    """``torch.save(payload)`` to ``path`` through a temporary file in the same folder."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp")
    with open(temporary, "wb") as stream:
        torch.save(payload, stream)
        stream.flush()
        os.fsync(stream.fileno())
    os.replace(temporary, path)


def load(path: Path) -> dict:
    """Read a checkpoint written by ``save_atomic`` (tensors land on the CPU)."""
    try:
        return torch.load(Path(path), map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise ConfigError(f"checkpoint {path} does not exist") from None
    except Exception as error:  # truncated or foreign file
        raise ConfigError(f"checkpoint {path} cannot be read ({type(error).__name__}: {error})") from None


def resolve_for_evaluation(path: str) -> Path:
    """``evaluate=`` accepts a checkpoint file or a run folder (then its ``checkpoints/best.pt``)."""
    candidate = Path(path)
    if candidate.is_dir():
        candidate = checkpoint_dir(candidate) / BEST
    if not candidate.is_file():
        raise ConfigError(f"evaluate={path}: no checkpoint there; accepted: a .pt file or a run folder with checkpoints/{BEST}")
    return candidate
