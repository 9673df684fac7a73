"""Checkpoint files: written atomically, read back on the CPU.

A run folder holds ``checkpoints/last.pt`` (everything needed to continue: weights, optimizer,
scheduler, RNG states, the shuffling order of the current epoch, the metrics history, the best
weights so far) and ``checkpoints/best.pt`` (the best-validation weights and the config, what
``evaluate=`` reads). Both are replaced with ``os.replace`` only once completely written, so a
run killed at any moment leaves the previous complete file behind. A write that fails (a full
disk) removes its temporary file and raises ``CheckpointWriteError``; the previous file stays.
"""

from __future__ import annotations

import errno
import io
import os
from pathlib import Path

from ..errors import CheckpointWriteError, ConfigError
from ..results.layout import BEST_CHECKPOINT as BEST
from ..results.layout import CHECKPOINT_DIR
from ..results.layout import LAST_CHECKPOINT as LAST  # noqa: F401  (ckpt.LAST: last.pt's name for the training code)


def checkpoint_dir(run_dir: Path) -> Path:
    return Path(run_dir) / CHECKPOINT_DIR


def _write_file(path: Path, data: memoryview) -> None:
    """Write ``data`` to ``path`` and flush it to the disk (an OSError when the disk is full)."""
    with open(path, "wb") as stream:
        stream.write(data)
        stream.flush()
        os.fsync(stream.fileno())


def save_atomic(payload: dict, path: Path) -> None:
    """``torch.save(payload)`` to ``path`` through a temporary file in the same folder.

    The payload is serialised in memory first, so a failed write is an OSError (torch's own
    writer reports a full disk as an unreadable RuntimeError)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp")
    import torch  # here: the command's checks before training import no torch

    buffer = io.BytesIO()
    torch.save(payload, buffer)
    try:
        _write_file(temporary, buffer.getbuffer())
        os.replace(temporary, path)
    except BaseException as error:
        try:
            temporary.unlink(missing_ok=True)
        except OSError:
            pass
        if not isinstance(error, OSError):
            raise
        reason = "the disk is full" if error.errno in (errno.ENOSPC, errno.EDQUOT) else (error.strerror or str(error))
        kept = f"the previous {path.name} is intact" if path.is_file() else f"no {path.name} was written before"
        raise CheckpointWriteError(f"could not write {path}: {reason}; {kept}") from None


def load(path: Path) -> dict:
    """Read a checkpoint written by ``save_atomic`` (tensors land on the CPU)."""
    import torch

    try:
        return torch.load(Path(path), map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise ConfigError(f"checkpoint {path} does not exist") from None
    except Exception as error:  # truncated or foreign file
        reason = str(error).split(". ")[0]  # torch's zip reader adds several sentences of advice
        raise ConfigError(
            f"checkpoint {path} is truncated or corrupt and cannot be read ({type(error).__name__}: {reason})"
        ) from None


def resolve_for_evaluation(path: str) -> Path:
    """``evaluate=`` accepts a checkpoint file or a run folder (then its ``checkpoints/best.pt``)."""
    candidate = Path(path)
    if candidate.is_dir():
        trials = _trial_folders(candidate)
        candidate = checkpoint_dir(candidate) / BEST
        if not candidate.is_file() and trials:
            raise ConfigError(
                f"evaluate={path} is the folder of a stacked run (trials={len(trials)}), whose trials "
                f"each have a best checkpoint of their own; accepted: one trial's folder, "
                f"{_listing(trials)}"
            )
    if not candidate.is_file():
        raise ConfigError(
            f"evaluate={path}: no checkpoint there; accepted: a .pt file or a run folder with checkpoints/{BEST}"
        )
    return candidate


def load_for_evaluation(path: Path) -> dict:
    """A checkpoint ``evaluate=`` can use: a dict with the run's config and its weights."""
    import torch

    accepted = f"accepted: a .pt file from a run's checkpoints/ folder, or a run folder with checkpoints/{BEST}"
    try:
        payload = torch.load(Path(path), map_location="cpu", weights_only=True)
    except Exception as error:
        raise ConfigError(
            f"evaluate={path} is not a checkpoint of antlr-train (unreadable as one: "
            f"{type(error).__name__}); {accepted}"
        ) from None
    if not (
        isinstance(payload, dict)
        and isinstance(payload.get("config"), dict)
        and isinstance(payload.get("best_model", payload.get("model")), dict)
    ):
        raise ConfigError(
            f"evaluate={path} is not a checkpoint of antlr-train (no config and weights in it); {accepted}"
        )
    trials = payload["config"].get("trials", 1)
    if "best_models" in payload or (isinstance(trials, int) and trials > 1):
        seed = payload["config"].get("seed", 0)
        seeds = [f"seed_{seed + k}" for k in range(trials)] if isinstance(seed, int) and isinstance(trials, int) else []
        folders = [Path(path).resolve().parent.parent / name for name in seeds]
        raise ConfigError(
            f"evaluate={path} holds the stacked trials of a trials={trials} run, not one network; "
            f"accepted: one trial's folder, {_listing(folders) if folders else 'its seed_<s>/ folders'}"
        )
    return payload


def _trial_folders(folder: Path) -> list:
    """The trial folders ``seed_<s>/`` of a stacked run's folder that hold a best checkpoint, by seed."""
    found = [p for p in folder.glob("seed_*") if p.name[5:].isdigit() and (checkpoint_dir(p) / BEST).is_file()]
    return sorted(found, key=lambda p: int(p.name[5:]))


def _listing(folders: list) -> str:
    """``a/seed_0/``, ``a/seed_1/``, ...: a few folders in full, the first and last of many."""
    names = [f"{p}/" for p in folders]
    return ", ".join(names) if len(names) <= 4 else f"{names[0]}, {names[1]}, ..., {names[-1]}"
