"""Where metrics go: ``metrics.csv`` in the run folder always, Weights & Biases on ``logger=wandb``."""

from __future__ import annotations

import csv
import logging
import os
from pathlib import Path
from typing import Optional

from omegaconf import DictConfig, OmegaConf

log = logging.getLogger(__name__)

METRICS_FILE = "metrics.csv"


class CsvLog:
    """One row per evaluation point. On resume the file is rewritten from the checkpoint's
    history, so rows logged after the last checkpoint of a killed run do not appear twice."""

    def __init__(self, run_dir: Path, history: list):
        self.path = Path(run_dir) / METRICS_FILE
        temporary = self.path.with_name(f".{METRICS_FILE}.tmp")
        with open(temporary, "w", newline="") as stream:
            if history:
                writer = csv.DictWriter(stream, fieldnames=list(history[0]))
                writer.writeheader()
                writer.writerows(history)
        os.replace(temporary, self.path)
        self.fieldnames = list(history[0]) if history else None

    def log(self, row: dict) -> None:
        new = self.fieldnames is None
        if new:
            self.fieldnames = list(row)
        with open(self.path, "a", newline="") as stream:
            writer = csv.DictWriter(stream, fieldnames=self.fieldnames)
            if new:
                writer.writeheader()
            writer.writerow(row)


class WandbLog:
    """A wandb run holding the resolved config, every metrics row and the summary."""

    def __init__(self, cfg: DictConfig, run_dir: Path, run_id: Optional[str]):
        import wandb  # imported only when asked for: it is slow to import

        settings = cfg.logger
        self.run = wandb.init(
            project=settings.project,
            entity=settings.entity,
            mode=settings.mode,
            group=settings.group,
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
        self.run.log({k: v for k, v in row.items() if v is not None}, step=int(row["step"]))

    def summary(self, summary: dict) -> None:
        self.run.summary.update({k: v for k, v in summary.items() if v is not None})

    def finish(self, exit_code: int = 0) -> None:
        self.run.finish(exit_code=exit_code)


class RunLog:
    """The loggers of one run behind one interface."""

    def __init__(self, cfg: DictConfig, run_dir: Path, history: list, wandb_run_id: Optional[str] = None):
        self.csv = CsvLog(run_dir, history)
        self.wandb = WandbLog(cfg, run_dir, wandb_run_id) if cfg.logger.name == "wandb" else None

    @property
    def wandb_run_id(self) -> Optional[str]:
        return self.wandb.run_id if self.wandb else None

    def log(self, row: dict) -> None:
        self.csv.log(row)
        if self.wandb:
            self.wandb.log(row)

    def summary(self, summary: dict) -> None:
        if self.wandb:
            self.wandb.summary(summary)

    def finish(self, failed: bool = False) -> None:
        if self.wandb:
            self.wandb.finish(exit_code=1 if failed else 0)
