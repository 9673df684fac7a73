"""Pieces every task shares: the TaskData record, seeded splits, argument checks, safe file writes.

Seeding: every random choice made here (matching problems, train/validation splits, test subsets)
uses a local ``torch.Generator`` seeded with ``derived_seed(seed, purpose)``, a hash of the trial
seed and a purpose string. The global RNG is never touched, and the streams differ from the one
``torch.manual_seed(seed)`` gives, so a task's data is not correlated with the initial weights of
a network seeded with the same number.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from antlr_exp.errors import ConfigError, DatasetNotFoundError

#: Share of the training images held out for validation: 10,000 of MNIST's 60,000.
VALIDATION_FRACTION_DENOMINATOR = 6


class DatasetCorruptError(DatasetNotFoundError):
    """Dataset files exist but cannot be used (truncated, wrong size, values out of range).

    A subclass of ``DatasetNotFoundError`` so that code reporting missing data reports this too.
    The message names the offending file and what was expected of it.
    """


@dataclass
class TaskData:
    """A task ready for training: three datasets and the facts a model needs to match them.

    Items of every dataset are ``(inputs, target)``:

    - ``inputs``: float32 tensor of 0/1 spikes, shape ``[num_steps, *input_shape]``.
    - ``target``: int64 scalar tensor (class label) when ``target_kind == "label"``;
      float32 0/1 tensor ``[num_steps, num_outputs]`` (the target spike train) when
      ``target_kind == "spike_train"``.

    Attributes:
        train: training split.
        val: validation split (carved from the training data; for matching the same problem).
        test: test split (the official test set; for matching the same problem).
        input_shape: shape of ONE time step of the input: ``(10,)`` matching, ``(784,)`` mnist,
            ``(2, 34, 34)`` nmnist.
        num_steps: T, the number of time steps of every sample.
        num_outputs: number of output neurons (classes, or target spike trains).
        target_kind: ``"label"`` or ``"spike_train"``.
    """

    train: Dataset
    val: Dataset
    test: Dataset
    input_shape: tuple[int, ...]
    num_steps: int
    num_outputs: int
    target_kind: str


def check_int(name: str, value: object, *, minimum: int, maximum: int | None = None) -> int:
    """Return ``value`` as an int if it is an integer in ``[minimum, maximum]``, else ConfigError.

    Booleans and non-integral floats are refused; integral floats (``100.0``) are accepted.
    """
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer)):
        raise ConfigError(f"{name}={value!r} is not an integer; expected an integer >= {minimum}")
    if isinstance(value, float) and not value.is_integer():
        raise ConfigError(f"{name}={value!r} is not an integer; expected an integer >= {minimum}")
    number = int(value)
    if number < minimum or (maximum is not None and number > maximum):
        accepted = f">= {minimum}" if maximum is None else f"in {minimum}..{maximum}"
        raise ConfigError(f"{name}={value!r} is out of range; expected an integer {accepted}")
    return number


def check_limit(name: str, value: object) -> int | None:
    """Validate a sample limit: None (no limit) or an integer >= 1."""
    if value is None:
        return None
    return check_int(name, value, minimum=1)


def derived_seed(seed: int, purpose: str) -> int:
    """A 63-bit seed derived from the trial ``seed`` and a ``purpose`` string (e.g. "mnist/split").

    Different purposes give unrelated streams; the same (seed, purpose) always gives the same one.
    """
    digest = hashlib.sha256(f"antlr-exp/{purpose}/{int(seed)}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & (2**63 - 1)


def generator_for(seed: int, purpose: str) -> torch.Generator:
    """A CPU ``torch.Generator`` seeded with ``derived_seed(seed, purpose)``."""
    return torch.Generator().manual_seed(derived_seed(seed, purpose))


def split_train_val(num_samples: int, seed: int, purpose: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Split ``range(num_samples)`` into training and validation indices by a seeded permutation.

    The validation part is ``num_samples // 6`` samples (10,000 of 60,000; proportionally fewer
    when fewer samples exist), the training part the rest.

    Returns:
        ``(train_ids, val_ids)``: int64 tensors ``[num_samples - n_val]`` and ``[n_val]``, each in
        the random order of the permutation (take a prefix for a seeded random subset).
    """
    permutation = torch.randperm(num_samples, generator=generator_for(seed, purpose))
    num_val = num_samples // VALIDATION_FRACTION_DENOMINATOR
    return permutation[num_val:], permutation[:num_val]


def seeded_subset(num_samples: int, limit: int | None, seed: int, purpose: str) -> torch.Tensor:
    """Indices of the samples to use from a split of ``num_samples``: all of them in order when
    ``limit`` is None or not smaller than ``num_samples``, else the first ``limit`` of a seeded
    permutation, sorted. Returns an int64 tensor."""
    if limit is None or limit >= num_samples:
        return torch.arange(num_samples)
    permutation = torch.randperm(num_samples, generator=generator_for(seed, purpose))
    return permutation[:limit].sort().values


def take_prefix(ids: torch.Tensor, limit: int | None) -> torch.Tensor:
    """The first ``limit`` entries of ``ids`` (all when ``limit`` is None), sorted ascending."""
    chosen = ids if limit is None else ids[:limit]
    return chosen.sort().values


def check_root_is_folder(root: Path, dataset: str, holds: str) -> None:
    """DatasetNotFoundError when ``root``, or the nearest of its parents that exists, is a file:
    no data can be there, and no download could go there."""
    for path in (root, *root.parents):
        if path.exists():
            if not path.is_dir():
                where = "is a file, not a folder" if path == root else f"lies under {path.resolve()}, a file"
                raise DatasetNotFoundError(
                    f"{dataset} not found: the data root {root.resolve()} {where}; set data.root (the "
                    f"library's root=) to the folder that holds {holds}"
                )
            return


@contextlib.contextmanager
def staging_dir(parent: Path, prefix: str) -> Iterator[Path]:
    """A fresh hidden folder inside ``parent`` that is removed on exit, whatever happens.

    Downloads go here and are moved into place (``os.replace``, same filesystem) only once they
    are complete, so a failed or interrupted download leaves nothing behind.
    """
    path = Path(tempfile.mkdtemp(prefix=prefix, dir=parent))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def remove_empty_folders(folders: Iterable[Path]) -> None:
    """Remove each folder of ``folders`` (deepest first) if it exists and is empty; used to undo
    folders created for a download that failed."""
    for folder in folders:
        with contextlib.suppress(OSError):
            folder.rmdir()


def atomic_save_npz(path: Path, **arrays: np.ndarray) -> None:
    """Write ``arrays`` to ``path`` as an uncompressed .npz, atomically.

    The data go to a temporary file in the same folder first and replace ``path`` with
    ``os.replace`` only when complete, so readers never see a half-written file.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as stream:
            np.savez(stream, **arrays)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise


def default_cache_dir() -> Path:
    """The frame cache folder: ``$ANTLR_EXP_CACHE`` if set, else ``~/.cache/antlr-exp``."""
    configured = os.environ.get("ANTLR_EXP_CACHE")
    return Path(configured).expanduser() if configured else Path.home() / ".cache" / "antlr-exp"
