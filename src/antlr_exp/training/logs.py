"""Each trial's run log: ``metrics.csv`` (and the wandb or TensorBoard run) in its folder."""

from __future__ import annotations

from omegaconf import OmegaConf

from .loggers import RunLog


class TrialLogs:
    """The :class:`~antlr_exp.training.trainer.Trainer`'s logs, one per trial."""

    def open_log(self) -> RunLog:
        """metrics.csv (rewritten from the history on resume) and, with logger=wandb, the wandb run;
        one per trial. A stacked run also writes each trial's config into its folder."""
        self.run_logs = []
        for k, (trial_dir, trial_cfg) in enumerate(zip(self.trial_dirs, self.trial_cfgs)):
            if self.trials > 1:
                (trial_dir / ".hydra").mkdir(parents=True, exist_ok=True)
                OmegaConf.save(trial_cfg, trial_dir / ".hydra" / "config.yaml")
            self.run_logs.append(
                RunLog(trial_cfg, trial_dir, self.states[k].history, self.wandb_run_id if self.trials == 1 else None)
            )
        self.run_log = self.run_logs[0]
        self.wandb_run_id = self.run_log.wandb_run_id
        return self.run_log
