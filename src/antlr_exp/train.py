"""Kept for one release: the training code moved to :mod:`antlr_exp.training` (trainer, state,
batches, evaluation, objective, build, run). This module only re-exports its old names; import
them from :mod:`antlr_exp.training` and its modules instead.

Patching a name here (``monkeypatch.setattr(antlr_exp.train, ...)``) no longer reaches the code
that uses it: patch it in the module that uses it (e.g. ``antlr_exp.training.build``).
"""

from __future__ import annotations

from .training.batches import stack_trials
from .training.build import (
    DTYPES,
    available_memory,
    build_network,
    check_fits,
    largest_fitting_trials,
    load_data,
    load_trials,
    memory_estimate,
    resolve_device,
    trial_config,
    trial_seeds,
)
from .training.early_stop import EARLY_STOP_CHUNK, train_early_stop, would_stop_early
from .training.evaluation import SILENT_OUTPUTS, evaluate, evaluate_trials, run_facts
from .training.guards import signal_name
from .training.objective import Objective, clip_grad_norm_per_trial
from .training.run import (
    SUMMARY_FILE,
    USER_ERRORS,
    evaluate_checkpoint,
    finished_summaries,
    run,
    train,
    trials_summary,
    write_json,
)
from .training.state import (
    GRADIENTS_FILE,
    RESUMABLE_CHANGES,
    TrainState,
    check_finite_checkpoint,
    check_same_run,
)
from .training.trainer import Trainer

__all__ = [
    "DTYPES",
    "EARLY_STOP_CHUNK",
    "GRADIENTS_FILE",
    "RESUMABLE_CHANGES",
    "SILENT_OUTPUTS",
    "SUMMARY_FILE",
    "USER_ERRORS",
    "Objective",
    "TrainState",
    "Trainer",
    "available_memory",
    "build_network",
    "check_finite_checkpoint",
    "check_fits",
    "check_same_run",
    "clip_grad_norm_per_trial",
    "evaluate",
    "evaluate_checkpoint",
    "evaluate_trials",
    "finished_summaries",
    "largest_fitting_trials",
    "load_data",
    "load_trials",
    "memory_estimate",
    "resolve_device",
    "run",
    "run_facts",
    "signal_name",
    "stack_trials",
    "train",
    "train_early_stop",
    "trial_config",
    "trial_seeds",
    "trials_summary",
    "would_stop_early",
    "write_json",
]
