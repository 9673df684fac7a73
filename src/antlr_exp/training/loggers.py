"""Where metrics go: ``metrics.csv`` in the run folder always, Weights & Biases on ``logger=wandb``,
TensorBoard event files on ``logger=tensorboard``.

metrics.csv keeps the flat column names (``train_loss``, ``val_accuracy``); wandb and TensorBoard
get them as ``train/loss``, ``val/accuracy``, ``test/...`` (``metric_name``), so their dashboards
group the splits; ``epoch``, ``lr`` and ``time_s`` keep their names. The metrics are logged
against the optimizer step.
"""

from __future__ import annotations

import csv
import logging
import os
from pathlib import Path
from typing import Optional

from omegaconf import DictConfig, OmegaConf

from ..results.layout import METRICS_FILE

log = logging.getLogger(__name__)

TENSORBOARD_DIR = "tensorboard"
SPLITS = ("train", "val", "test")


def metric_name(column: str) -> str:
    """``train_loss`` -> ``train/loss``, ``val_accuracy_most_spike`` -> ``val/accuracy_most_spike``;
    other names unchanged."""
    split, _, rest = column.partition("_")
    return f"{split}/{rest}" if split in SPLITS and rest else column


def _numbers(row: dict) -> dict:
    """The row's numeric values under their dashboard names (None and text left out)."""
    return {
        metric_name(k): v
        for k, v in row.items()
        if isinstance(v, (int, float)) and not isinstance(v, bool) and v is not None
    }


def sweep_group() -> Optional[str]:
    """The sweep folder (``hydra.sweep.dir``) inside a job of a sweep, else None."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN:
        return str(HydraConfig.get().sweep.dir)
    return None


class CsvLog:
    """One row per evaluation point. On resume the file is rewritten from the checkpoint's
    history, so rows logged after the last checkpoint of a killed run do not appear twice."""

    def __init__(self, run_dir: Path, history: list):
        self.path = Path(run_dir) / METRICS_FILE
        temporary = self.path.with_name(f".{METRICS_FILE}.tmp")
        # every row's columns: a run resumed from an earlier version's folder has rows of both
        fieldnames = list(dict.fromkeys(key for row in history for key in row)) if history else None
        with open(temporary, "w", newline="") as stream:
            if history:
                writer = csv.DictWriter(stream, fieldnames=fieldnames)
                writer.writeheader()
                writer.writerows(history)
        os.replace(temporary, self.path)
        self.fieldnames = fieldnames

    def log(self, row: dict) -> None:
        new = self.fieldnames is None
        if new:
            self.fieldnames = list(row)
        elif any(key not in self.fieldnames for key in row):
            self._widen(row)
        with open(self.path, "a", newline="") as stream:
            writer = csv.DictWriter(stream, fieldnames=self.fieldnames)
            if new:
                writer.writeheader()
            writer.writerow(row)

    def _widen(self, row: dict) -> None:
        """Add the columns of ``row`` the file lacks (a run resumed from the folder of an earlier
        version, which measured fewer metrics): the earlier rows keep their values, blank there."""
        with open(self.path, newline="") as stream:
            rows = list(csv.DictReader(stream))
        self.fieldnames = self.fieldnames + [key for key in row if key not in self.fieldnames]
        temporary = self.path.with_name(f".{METRICS_FILE}.tmp")
        with open(temporary, "w", newline="") as stream:
            writer = csv.DictWriter(stream, fieldnames=self.fieldnames)
            writer.writeheader()
            writer.writerows(rows)
        os.replace(temporary, self.path)


class WandbLog:
    """A wandb run holding the resolved config, every metrics row and the summary."""

    def __init__(self, cfg: DictConfig, run_dir: Path, run_id: Optional[str]):
        import wandb  # imported only when asked for: it is slow to import

        settings = cfg.logger
        self.run = wandb.init(
            project=settings.project,
            entity=settings.entity,
            mode=settings.mode,
            group=settings.group if settings.group is not None else sweep_group(),
            name=settings.run_name,
            tags=list(settings.tags),
            dir=str(run_dir),
            config=OmegaConf.to_container(cfg, resolve=True),
            id=run_id,  # None: a fresh run; on resume the killed run's id
            resume="allow",
            reinit="finish_previous",
        )
        self.run_id = self.run.id

    def log(self, row: dict) -> None:
        self.run.log({metric_name(k): v for k, v in row.items() if v is not None}, step=int(row["step"]))

    def summary(self, summary: dict) -> None:
        self.run.summary.update({metric_name(k): v for k, v in summary.items() if v is not None})

    def finish(self, exit_code: int = 0) -> None:
        self.run.finish(exit_code=exit_code)


class TensorboardLog:
    """Scalars in ``<run folder>/tensorboard/``: every metrics row at its step, and the test metrics
    of the summary at the last step. On resume the events after the checkpoint's step are purged."""

    def __init__(self, run_dir: Path, history: list):
        from torch.utils.tensorboard import SummaryWriter

        purge_step = int(history[-1]["step"]) + 1 if history else None
        self.writer = SummaryWriter(log_dir=str(Path(run_dir) / TENSORBOARD_DIR), purge_step=purge_step)

    def log(self, row: dict) -> None:
        step = int(row["step"])
        for name, value in _numbers(row).items():
            if name != "step":
                self.writer.add_scalar(name, value, step)
        self.writer.flush()

    def summary(self, summary: dict) -> None:
        step = int(summary.get("steps") or 0)
        for name, value in _numbers(summary).items():
            if name.startswith("test/"):
                self.writer.add_scalar(name, value, step)
        self.writer.flush()

    def finish(self) -> None:
        self.writer.close()


class RunLog:
    """The loggers of one run behind one interface."""

    def __init__(self, cfg: DictConfig, run_dir: Path, history: list, wandb_run_id: Optional[str] = None):
        self.csv = CsvLog(run_dir, history)
        self.wandb = WandbLog(cfg, run_dir, wandb_run_id) if cfg.logger.name == "wandb" else None
        self.tensorboard = TensorboardLog(run_dir, history) if cfg.logger.name == "tensorboard" else None

    @property
    def wandb_run_id(self) -> Optional[str]:
        return self.wandb.run_id if self.wandb else None

    def log(self, row: dict) -> None:
        self.csv.log(row)
        if self.wandb:
            self.wandb.log(row)
        if self.tensorboard:
            self.tensorboard.log(row)

    def summary(self, summary: dict) -> None:
        if self.wandb:
            self.wandb.summary(summary)
        if self.tensorboard:
            self.tensorboard.summary(summary)

    def finish(self, failed: bool = False) -> None:
        if self.wandb:
            self.wandb.finish(exit_code=1 if failed else 0)
        if self.tensorboard:
            self.tensorboard.finish()
