"""Where a run stands and what ``last.pt`` holds: the per-trial TrainState, the checkpoint
payload and its restore, best-model tracking (each trial's ``best.pt``) and its repair on
resume, and the checks a checkpoint must pass before a run resumes from it.

:class:`CheckpointedState` is a part of :class:`~antlr_exp.training.trainer.Trainer`: it reads and
writes the trainer's attributes (``net``, ``optimizer``, ``scheduler``, ``states``, ``shuffles``,
``best_models``, ...), so the trainer's own class holds only the algorithm.
"""

from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Optional

import torch
from omegaconf import DictConfig, OmegaConf

from ..config import flatten, with_legacy_values
from ..errors import ConfigError
from . import checkpoint as ckpt
from .early_stop import DeviceFlag

#: the run's log lines carry the name they always had
log = logging.getLogger("antlr_exp.train")

#: With trainer.record_gradients: every step's flattened gradient (after backward, before
#: clipping), float32 [steps, n_params] in ``net.parameters()`` order; saved at evaluation points.
from ..results.layout import GRADIENTS_FILE  # noqa: E402,F401  (re-exported: older imports name it here)

#: Keys that may differ between a killed run and the command that resumes it.
RESUMABLE_CHANGES = (
    "resume",
    "device",
    "kernels",
    "trainer.progress_bar",
    "trainer.max_epochs",
    "trainer.max_steps",
    "data.root",
    "data.download",
    "logger",
)


@dataclass
class TrainState:
    """Where a run stands; all of it goes into ``last.pt``."""

    epoch: int = 0  # completed epochs
    step: int = 0  # completed optimizer steps
    batch_in_epoch: int = 0  # completed batches of the current epoch
    epoch_order: Optional[torch.Tensor] = None  # sample order of the current epoch
    last_eval_step: int = -1
    best_value: Optional[float] = None
    best_step: Optional[int] = None
    best_epoch: Optional[float] = None  # as metrics.csv gives it: fractional between epoch ends
    train_time_s: float = 0.0
    history: list = field(default_factory=list)


def check_same_run(saved: dict, cfg: DictConfig, run_dir: Path) -> None:
    """A resumed run must be the run that was killed: same config, up to RESUMABLE_CHANGES."""
    current = flatten(OmegaConf.to_container(cfg, resolve=True))
    before = flatten(with_legacy_values(saved))
    headline = ("task.name", "method.name", "loss.name", "seed", "single_spike")
    keys = sorted(set(current) | set(before), key=lambda k: (k not in headline, k))
    for key in keys:
        if any(key == k or key.startswith(k + ".") for k in RESUMABLE_CHANGES):
            continue
        if current.get(key, "(absent)") != before.get(key, "(absent)"):
            raise ConfigError(
                f"resume=true: the run in {run_dir} has {key}={before.get(key, '(absent)')!r} but this command "
                f"gives {key}={current.get(key, '(absent)')!r}; repeat the original command's overrides"
            )


def check_finite_checkpoint(payload: dict, path: Path) -> None:
    """A ``last.pt`` to resume from must hold finite weights (runs never save others; an older
    version could, on a stop signal)."""
    for key, value in payload.get("model", {}).items():
        if torch.is_tensor(value) and value.is_floating_point() and not bool(torch.isfinite(value).all()):
            raise ConfigError(
                f"resume=true: {path} holds non-finite weights ({key}), so the run cannot continue "
                f"from it; start it again in another hydra.run.dir"
            )


class CheckpointedState:
    """The trainer's state, its ``last.pt`` payload, and each trial's best weights and best.pt."""

    def _stop_possible(self) -> bool:
        """Whether the next step may stop early: the last step's decision (a DeviceFlag until read)."""
        if isinstance(self.stop_possible, DeviceFlag):
            self.stop_possible = self.stop_possible.get()
        return self.stop_possible

    # a plain run's view of its one trial
    @property
    def state(self) -> "TrainState":
        return self.states[0]

    @property
    def shuffle(self) -> torch.Generator:
        return self.shuffles[0]

    @property
    def best_model(self):
        return self.best_models[0]

    def _payload(self) -> dict:
        payload = {
            "config": OmegaConf.to_container(self.cfg, resolve=True),
            "model": self.net.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "torch_rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            "wandb_run_id": self.wandb_run_id,
            "train_meter": dict(vars(self.train_meter)),  # the training metrics since the last evaluation
            # the early stop's choice for the next step and the steps simulated since the last evaluation
            "early_stop": {"stop_possible": self._stop_possible(), "simulated_steps": list(self.simulated_steps)},
        }
        if self.trials == 1:
            payload.update(
                shuffle_generator=self.shuffle.get_state(), state=asdict(self.state), best_model=self.best_model
            )
        else:
            payload.update(
                shuffle_generators=[g.get_state() for g in self.shuffles],
                states=[asdict(state) for state in self.states],
                best_models=self.best_models,
            )
        return payload

    def restore(self, payload: dict) -> None:
        self.net.load_state_dict(payload["model"])
        self.optimizer.load_state_dict(payload["optimizer"])
        self.scheduler.load_state_dict(payload["scheduler"])
        if self.trials == 1:
            generators, states, best = [payload["shuffle_generator"]], [payload["state"]], [payload["best_model"]]
        else:
            generators, states, best = payload["shuffle_generators"], payload["states"], payload["best_models"]
        for generator, saved in zip(self.shuffles, generators):
            generator.set_state(saved)
        self.states = [TrainState(**state) for state in states]
        self.best_models = list(best)
        torch.set_rng_state(payload["torch_rng"])
        if payload["cuda_rng"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(payload["cuda_rng"])
        self.wandb_run_id = payload["wandb_run_id"]
        vars(self.train_meter).update(payload.get("train_meter", {}))
        early = payload.get("early_stop", {})
        self.stop_possible = early.get("stop_possible", True)
        self.simulated_steps = list(early.get("simulated_steps", []))
        self.saved_step = self.state.step
        recorded = self.run_dir / GRADIENTS_FILE
        if self.gradients is not None and recorded.is_file():  # the rows up to the checkpoint's step
            self.gradients = list(ckpt.load(recorded)[: self.state.step])

    def _trial_model(self, k: int) -> dict:
        """Trial k's weights as a plain network's state dict (CPU copies)."""
        state = self.net.state_dict()
        if self.trials == 1:
            return {key: value.detach().to("cpu", copy=True) for key, value in state.items()}
        return {key: value[k].detach().to("cpu", copy=True) for key, value in state.items()}

    def _save_best(self, k: int = 0) -> None:
        self.best_models[k] = self._trial_model(k)
        self._write_best(k)

    def _write_best(self, k: int) -> None:
        """Trial k's best.pt from its best weights (``best_models[k]``, of step ``best_step``)."""
        state = self.states[k]
        ckpt.save_atomic(
            {
                "config": OmegaConf.to_container(self.trial_cfgs[k], resolve=True),
                "model": self.best_models[k],
                "step": state.best_step,
                "epoch": state.best_epoch,
                "monitor": self.settings.monitor,
                "value": state.best_value,
            },
            ckpt.checkpoint_dir(self.trial_dirs[k]) / ckpt.BEST,
        )

    def repair_best(self) -> None:
        """On resume: rewrite each trial's best.pt that is missing, unreadable (truncated) or of
        another step than the best weights last.pt holds (a run killed between the two saves), or
        whose trial folder was removed, from those weights."""
        for k, state in enumerate(self.states):
            if self.best_models[k] is None:
                continue
            path = ckpt.checkpoint_dir(self.trial_dirs[k]) / ckpt.BEST
            try:
                saved = ckpt.load(path) if path.is_file() else None
            except ConfigError:
                saved = None
            if isinstance(saved, dict) and saved.get("step") == state.best_step:
                continue
            log.warning(
                "%s is %s: rewritten from the best weights (step %d) that %s holds",
                path,
                "missing" if not path.is_file() else "unreadable or of another step",
                state.best_step,
                ckpt.checkpoint_dir(self.run_dir) / ckpt.LAST,
            )
            self._write_best(k)

    def budget_spent(self) -> Optional[str]:
        """The budget (``trainer.max_steps=N`` or ``trainer.max_epochs=N``) that the run's position
        is already beyond, e.g. when a resume lowers it; None while it is not."""
        state, per_epoch = self.state, self.batches_per_epoch
        if self.max_steps is not None and state.step > self.max_steps:
            return f"trainer.max_steps={self.max_steps}"
        if self.max_epochs is not None and state.epoch * per_epoch + state.batch_in_epoch > self.max_epochs * per_epoch:
            return f"trainer.max_epochs={self.max_epochs}"
        return None

    def _done(self) -> bool:
        """Whether the budget (``trainer.max_steps``, ``trainer.max_epochs``) is reached."""
        state = self.state
        return (self.max_steps is not None and state.step >= self.max_steps) or (
            self.max_epochs is not None and state.epoch >= self.max_epochs
        )

    def _total_steps(self) -> int:
        """The steps the run takes in all, as the progress bar counts them."""
        s = self.settings
        by_epochs = s.max_epochs * self.batches_per_epoch if s.max_epochs is not None else None
        # never below the step reached (a resume may lower the budget: see budget_spent)
        return max(min(x for x in (s.max_steps, by_epochs) if x is not None), self.state.step)

    def _stacked_best(self) -> dict:
        """The best weights of every trial as the stacked network's state dict."""
        if self.trials == 1:
            return self.best_model
        return {key: torch.stack([best[key] for best in self.best_models]) for key in self.best_models[0]}

    def _improved(self, value: float, k: int = 0) -> bool:
        """Whether ``value`` of trial k's monitored metric beats its best so far (NaN never does)."""
        if math.isnan(value):
            return False
        best = self.states[k].best_value
        if best is None:
            return True
        return value > best if self.settings.monitor_mode == "max" else value < best

    def _save_last(self) -> None:
        """``last.pt`` (and, with trainer.record_gradients, the gradients so far) at this step."""
        if self.gradients is not None:
            ckpt.save_atomic(
                torch.stack(self.gradients) if self.gradients else torch.zeros(0), self.run_dir / GRADIENTS_FILE
            )
        ckpt.save_atomic(self._payload(), ckpt.checkpoint_dir(self.run_dir) / ckpt.LAST)
        self.saved_step = self.state.step

    def _end_epoch(self) -> None:
        """Every trial finished an epoch: the next draws a new order, and the learning rate steps."""
        for state in self.states:
            state.epoch += 1
            state.batch_in_epoch = 0
            state.epoch_order = None
        self.scheduler.step()
