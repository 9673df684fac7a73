"""The tasks as datasets: the paper's three (random spike-train matching, latency-coded MNIST,
N-MNIST), SHD and SSC, and your own (``custom``).

Entry point: ``load_task(name, ...) -> TaskData``. One module per task (``matching``, ``mnist``,
``nmnist``, ``shd`` for both SHD and SSC, ``custom``); ``encoding`` holds the latency code,
``cache`` the event datasets' frame cache, ``common`` the shared pieces.
"""

from __future__ import annotations

import inspect
import os
from pathlib import Path

from antlr_exp.data.common import VALIDATION_FRACTION_DENOMINATOR, DatasetCorruptError, TaskData
from antlr_exp.data.custom import load_custom
from antlr_exp.data.encoding import SILENT, latency_encode, spike_times_to_dense
from antlr_exp.data.matching import MatchingProblem, load_matching, make_matching_problem
from antlr_exp.data.mnist import LatencyMNIST, load_mnist
from antlr_exp.data.nmnist import EventFrames, cache_stats, load_nmnist, reset_cache_stats
from antlr_exp.data.shd import load_shd, load_ssc
from antlr_exp.errors import ConfigError

__all__ = [
    "TASKS",
    "DatasetCorruptError",
    "EventFrames",
    "LatencyMNIST",
    "MatchingProblem",
    "SILENT",
    "TaskData",
    "cache_stats",
    "latency_encode",
    "load_task",
    "make_matching_problem",
    "reset_cache_stats",
    "spike_times_to_dense",
]

#: Task name -> loader.
TASKS = {
    "matching": load_matching,
    "mnist": load_mnist,
    "nmnist": load_nmnist,
    "shd": load_shd,
    "ssc": load_ssc,
    "custom": load_custom,
}

#: Arguments of load_task that are not task options.
_COMMON = ("root", "download", "limit_train", "limit_test", "seed", "num_steps")


def task_options(name: str) -> tuple[str, ...]:
    """The task-specific option names ``load_task`` accepts for task ``name``."""
    parameters = inspect.signature(TASKS[name]).parameters
    return tuple(p for p in parameters if p not in _COMMON)


def default_root(name: str) -> Path:
    """Where task ``name``'s files are when no root is given: ``$ANTLR_EXP_DATA/<name>``, else
    ``data/<name>`` relative to the working directory (antlr-train's ``data.root`` is the same)."""
    return Path(os.environ.get("ANTLR_EXP_DATA") or "data") / name


def load_task(
    name: str,
    *,
    root: str | os.PathLike | None = None,
    download: bool = False,
    limit_train: int | None = None,
    limit_test: int | None = None,
    seed: int = 0,
    num_steps: int | None = None,
    **task_options_given,
) -> TaskData:
    """Load a task by name.

    Args:
        name: ``"matching"``, ``"mnist"``, ``"nmnist"``, ``"shd"``, ``"ssc"``, or ``"custom"`` (your own loader:
            ``antlr_exp.data.custom``).
        root: data folder (mnist: holds ``MNIST/raw/``; nmnist: holds ``Train/`` and ``Test/`` or
            tonic's ``NMNIST/``; shd, ssc: tonic's ``SHD/``, ``SSC/``; ignored by matching).
            Default: ``default_root(name)``, i.e. ``$ANTLR_EXP_DATA/<name>``, else
            ``data/<name>`` in the working directory.
        download: fetch missing files (mnist, nmnist, shd, ssc; needs internet).
        limit_train: at most this many training samples (ignored by matching).
        limit_test: at most this many validation and this many test samples (ignored by
            matching).
        seed: the trial: the matching problem, the train/validation split, the subsets.
        num_steps: T (steps); None for the task default (matching 100, mnist 100, nmnist 300, shd 100,
            ssc 100).
        **task_options_given: task-specific options:
            matching: num_inputs=10, num_outputs=5, input_spikes=3, target_spikes=1;
            mnist: t_max=24 (steps);
            nmnist: bin_us=1000 (microseconds), first_saccade_only=False, cache_dir=None;
            shd, ssc: bin_us=10000 (microseconds), cache_dir=None;
            custom: loader="module:function", kwargs={}, target_kind="label".

    Returns:
        TaskData; items are ``(inputs [T, *input_shape] float32 0/1, target)`` with target an
        int64 scalar label (mnist, nmnist) or a float32 [T, num_outputs] spike train (matching).

    Raises:
        ConfigError: unknown task name or option, or an invalid value, or a split that comes out
            empty (fewer than 6 training files leave no validation samples).
        DatasetNotFoundError: data files missing (DatasetCorruptError: present but unusable).
    """
    if name not in TASKS:
        raise ConfigError(f"task={name!r} is unknown; expected one of {', '.join(map(repr, TASKS))}")
    accepted = task_options(name)
    unknown = sorted(set(task_options_given) - set(accepted))
    if unknown:
        raise ConfigError(
            f"task {name!r} has no option {', '.join(map(repr, unknown))}; "
            f"its options are {', '.join(map(repr, accepted))}"
        )
    loader = TASKS[name]
    arguments = dict(task_options_given, seed=seed)
    if num_steps is not None:
        arguments["num_steps"] = num_steps
    if name != "matching":
        arguments.update(
            root=default_root(name) if root is None else root,
            download=download,
            limit_train=limit_train,
            limit_test=limit_test,
        )
    data = loader(**arguments)
    check_splits(name, data)
    return data


def check_splits(name: str, data: TaskData) -> None:
    """Every split must hold samples: an empty one would be reported as accuracy 0 and loss 0."""
    sizes = {split: len(getattr(data, split)) for split in ("train", "val", "test")}
    empty = [split for split, size in sizes.items() if size == 0]
    if empty:
        shown = ", ".join(f"{split} {size}" for split, size in sizes.items())
        raise ConfigError(
            f"task={name}: the {empty[0]} split is empty (samples: {shown}); every split needs samples, and the "
            f"validation split is 1/{VALIDATION_FRACTION_DENOMINATOR} of the training files, so at least "
            f"{VALIDATION_FRACTION_DENOMINATOR} training files are needed"
        )
