"""The training loop's word to the console: a progress bar on a terminal, else one INFO line
per evaluation point (``trainer.progress_bar=false``, a SLURM log, a pipe)."""

from __future__ import annotations

import logging
import sys

log = logging.getLogger("antlr_exp")


def bar_enabled(progress_bar: bool) -> bool:
    """Show tqdm's bar only when asked for and both streams are terminals (no ``\\r`` in logs)."""
    return bool(progress_bar) and sys.stdout.isatty() and sys.stderr.isatty()


def _number(value) -> str:
    if value is None:
        return "-"
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def evaluation_line(row: dict, total_steps: int) -> str:
    """``step 200/2000 (epoch 0.5): train_loss 0.31, val_loss 0.29, val_accuracy 0.87, ...``."""
    parts = [
        f"{key} {_number(row[key])}"
        for key in ("train_loss", "val_loss", "train_accuracy", "val_accuracy")
        if key in row
    ]
    spikes = row.get("val_hidden_spikes_per_sample"), row.get("val_output_spikes_per_sample")
    if None not in spikes:
        parts.append(f"val spikes per sample {_number(spikes[0])} hidden, {_number(spikes[1])} output")
    return f"step {row['step']}/{total_steps} (epoch {row['epoch']:g}): " + ", ".join(parts)


def log_evaluation(row: dict, total_steps: int, trials: int = 1) -> None:
    """One INFO line; with ``trials`` > 1 the row is the mean over a stacked run's trials."""
    log.info(("" if trials == 1 else f"mean of {trials} trials: ") + evaluation_line(row, total_steps))
