"""The trainer: the algorithm of a run (fit, one step, one evaluation point, the test).

Determinism: ``torch.manual_seed(seed)`` before the network is built fixes the initial weights;
the shuffling of every epoch is drawn from a ``torch.Generator`` seeded with ``seed``. Every
evaluation point saves the generator, the global RNG, the current epoch's order and the position
in it, so a resumed run takes exactly the steps an uninterrupted one would.

The state and the checkpoints (:mod:`.state`) and the non-finite and signal checks
(:mod:`.guards`) are the trainer's other two parts.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Optional

import torch
from omegaconf import DictConfig
from tqdm import tqdm

from ..engine.checks import values_checked
from ..engine.network import SpikingNetwork
from . import progress, stopping
from .batches import EpochBatches
from .build import build_network, trial_config
from .early_stop import EARLY_STOP_CHUNK, stop_flag, train_early_stop
from .evaluation import TrialTests, evaluate_trials, mean_row, warn_if_output_fell_silent
from .guards import RunGuards, StepValues
from .loggers import RunLog
from .logs import TrialLogs
from .metrics import SplitMeter
from .objective import Objective, clip_grad_norm_per_trial
from .state import CheckpointedState, TrainState

#: seconds between two reads of the running metrics for the progress bar
POSTFIX_SECONDS = 0.5


def flat_gradient(parameters) -> torch.Tensor:
    """Every parameter's gradient (0 where it has none), flattened into one float32 vector."""
    return torch.cat(
        [(p.grad if p.grad is not None else torch.zeros_like(p)).detach().flatten().float() for p in parameters]
    )


def show_postfix(bar, meter: SplitMeter, shown: float) -> float:
    """The meter's running metrics on the progress bar, at most every POSTFIX_SECONDS since
    ``shown`` (reading them waits for the device). Returns when they were last shown."""
    if time.perf_counter() - shown < POSTFIX_SECONDS:
        return shown
    bar.set_postfix(meter.postfix(), refresh=False)
    return time.perf_counter()


def to_device(batch: torch.Tensor, device: torch.device) -> torch.Tensor:
    """A host batch on ``device``; to a GPU through pinned memory, so that the copy does not wait
    for the kernels already queued."""
    if device.type != "cuda" or batch.device.type != "cpu":
        return batch.to(device)
    return batch.pin_memory().to(device, non_blocking=True)


class Trainer(CheckpointedState, RunGuards, TrialLogs, TrialTests):
    """One run's network, optimizer, state and loggers. ``resume_from``: a ``last.pt`` payload to
    continue from. ``run_log`` stays None until ``open_log()`` (tests drive single steps without).

    ``data`` is one TaskData, or one per trial with ``net`` the stacked network of those trials
    (see :func:`load_trials`); each trial has its own state, shuffling, meters and run folder.
    """

    def __init__(
        self,
        cfg: DictConfig,
        run_dir: Path,
        data,
        device: torch.device,
        resume_from: Optional[dict] = None,
        net: Optional[SpikingNetwork] = None,
    ):
        self.cfg = cfg
        self.run_dir = Path(run_dir)
        self.datas = list(data) if isinstance(data, (list, tuple)) else [data]
        self.data = self.datas[0]
        self.trials = len(self.datas)
        self.seeds = [int(cfg.seed) + k for k in range(self.trials)]
        self.trial_dirs = [self.run_dir] if self.trials == 1 else [self.run_dir / f"seed_{seed}" for seed in self.seeds]
        self.trial_cfgs = [cfg] if self.trials == 1 else [trial_config(cfg, seed) for seed in self.seeds]
        self.device = device
        self.settings = cfg.trainer
        self.net = (net if net is not None else build_network(cfg, self.data)).to(device)
        self.objective = Objective(cfg, self.data.num_outputs)
        has_labels = self.data.target_kind == "label"
        self.train_meter = SplitMeter(cfg.loss.decision, has_labels, self.trials)
        self.eval_meter = SplitMeter(cfg.loss.decision, has_labels, self.trials)
        opt = cfg.optimizer
        # fused: torch's one-kernel Adam (CPU and CUDA), a few times faster than the per-tensor loop;
        # elementwise, so over stacked trials it is one Adam per trial
        self.optimizer = torch.optim.Adam(
            self.net.parameters(),
            lr=opt.lr,
            betas=tuple(opt.betas),
            eps=opt.eps,
            weight_decay=opt.weight_decay,
            amsgrad=opt.amsgrad,
            fused=True,
        )
        self.scheduler = torch.optim.lr_scheduler.StepLR(
            self.optimizer,
            step_size=self.settings.lr_decay_epochs or 1,
            gamma=self.settings.lr_decay_factor if self.settings.lr_decay_epochs else 1.0,
        )
        self.shuffles = [torch.Generator().manual_seed(seed) for seed in self.seeds]
        self.states = [TrainState() for _ in range(self.trials)]
        self.best_models: list = [None] * self.trials
        # the settings read at every step, as plain values (an OmegaConf read costs tens of us)
        self.batch_size = int(self.settings.batch_size)
        self.batches_per_epoch = math.ceil(len(self.data.train) / self.batch_size)
        self.max_steps, self.max_epochs = self.settings.max_steps, self.settings.max_epochs
        self.val_every_n_steps = self.settings.val_every_n_steps
        self.grad_clip_value = cfg.optimizer.grad_clip_value
        self.grad_clip_norm = cfg.optimizer.grad_clip_norm
        self.batches = EpochBatches(self.datas, self.batch_size)
        self.early_stop = train_early_stop(cfg)
        # whether the last step could stop early: while it could not, steps run the plain whole-window
        # pass (no chunking cost) and only check whether a stop would have been possible (a
        # DeviceFlag until the next step reads it)
        self.stop_possible = True
        self.simulated_steps: list = []  # per training step since the last evaluation point
        self.wandb_run_id = None
        self.run_log: Optional[RunLog] = None
        self.run_logs: list = []
        self.gradients: Optional[list] = [] if self.settings.record_gradients else None
        self.weights = list(self.net.parameters())  # read after every step (_train_step)
        self.step_values = StepValues()  # every step's loss and sum of weights, until checked
        self.postfix_shown = 0.0  # when the progress bar's running metrics were last read
        self.saved_step: Optional[int] = None  # the step last.pt holds, None before it is written
        if resume_from is not None:
            self.restore(resume_from)

    # -- one step and one evaluation point ----------------------------------------------------

    def _train_step(self, inputs: torch.Tensor, targets: torch.Tensor) -> None:
        """One optimizer step; on a GPU the host does not wait for the device here (but for the
        training early stop's decisions): the data are checked when loaded (values_checked), the
        loss and weights are checked before a save (:meth:`_check_recorded_steps`)."""
        self.net.train()
        inputs, targets = to_device(inputs, self.device), to_device(targets, self.device)
        chunked = self.early_stop and self._stop_possible()
        with values_checked():
            out = self.net(inputs, early_stop=chunked, chunk=EARLY_STOP_CHUNK)
            if self.early_stop:  # the next step's choice, read when it starts (the whole window's spikes)
                self.stop_possible = out.num_steps < self.net.num_steps if chunked else stop_flag(out)
            self.simulated_steps.append(out.num_steps)
            losses = self.objective.trial_losses(out, targets)  # [K]: each trial's batch mean
        loss = losses.sum()  # each trial's parameters get the gradient of its own loss
        penalty = self.objective.penalty(self.net, out)
        self.optimizer.zero_grad(set_to_none=True)
        (loss if penalty is None else loss + penalty).backward()
        if self.gradients is not None:  # one copy to the host per step: the one read a step makes with this on
            self.gradients.append(flat_gradient(self.net.parameters()).cpu())
        if self.grad_clip_value is not None:
            torch.nn.utils.clip_grad_value_(self.net.parameters(), self.grad_clip_value)
        if self.grad_clip_norm is not None:
            clip_grad_norm_per_trial(list(self.net.parameters()), self.grad_clip_norm, self.trials)
        self.optimizer.step()
        # Every step's loss and sum of weights are recorded (inf or NaN whenever one weight is), so a
        # non-finite one is named at the step that made it and never saved (a save checks them first).
        weights = torch.stack([p.detach().sum() for p in self.weights]).sum()
        self.step_values.add(self.state.step + 1, loss, weights)
        self.train_meter.update(out, targets, losses.detach())

    def _evaluation_point(self, lr: float, started: float) -> None:
        self._check_saveable()
        train_rows = self.train_meter.compute_trials("train")
        val_rows = evaluate_trials(
            self.net,
            [data.val for data in self.datas],
            self.objective,
            self.eval_meter,
            self.settings.test_batch_size,
            self.device,
            "val",
        )
        self.train_meter.reset()
        simulated = sum(self.simulated_steps) / max(len(self.simulated_steps), 1)
        self.simulated_steps = []
        elapsed = time.perf_counter() - started
        for k, state in enumerate(self.states):
            # epoch: passes over the training set, fractional between epoch ends (the matching task's
            # training set is one problem, so there one epoch is one step)
            epochs = state.epoch + state.batch_in_epoch / self.batches_per_epoch
            row = {"epoch": round(epochs, 6), "step": state.step, "lr": lr}
            row.update(train_rows[k])
            row["train_simulated_steps"] = simulated
            row.update(val_rows[k])
            state.train_time_s += elapsed
            row["time_s"] = round(state.train_time_s, 3)
            state.history.append(row)
            state.last_eval_step = state.step
            who = f"{self.trial_dirs[k]}" + (f" (trial seed {self.seeds[k]})" if self.trials > 1 else "")
            warn_if_output_fell_silent(state.history, who)  # the folder names the job in a sweep's console
            value = row[self.settings.monitor]
            if self._improved(value, k):
                state.best_value, state.best_step, state.best_epoch = value, state.step, row["epoch"]
                self._save_best(k)
            self.run_logs[k].log(row)
        if not getattr(self, "bar_shown", True):  # one line, a stacked run's mean over its trials
            progress.log_evaluation(
                mean_row([state.history[-1] for state in self.states]), self._total_steps(), trials=self.trials
            )
        self._save_last()

    def _epoch_batches(self):
        """The rest of the current epoch: per step, one batch per trial in its own order, stacked
        (see :meth:`EpochBatches.rest_of_epoch`)."""
        return self.batches.rest_of_epoch(self.states, self.shuffles)

    def fit(self) -> None:
        s, state = self.settings, self.state
        self.bar_shown = progress.bar_enabled(s.progress_bar)  # else one log line per evaluation point
        bar = tqdm(
            total=self._total_steps(),
            initial=state.step,
            disable=not self.bar_shown,
            desc=f"{self.cfg.task.name}/{self.cfg.method.name}",
            dynamic_ncols=True,
            leave=False,
            mininterval=0.5,
        )
        started = time.perf_counter()
        lr = self.optimizer.param_groups[0]["lr"]
        while not self._done():
            for inputs, targets in self._epoch_batches():
                lr = self.optimizer.param_groups[0]["lr"]
                self._train_step(inputs, targets)
                for trial_state in self.states:
                    trial_state.step += 1
                    trial_state.batch_in_epoch += 1
                epoch_ended = state.batch_in_epoch == self.batches_per_epoch
                if epoch_ended:
                    self._end_epoch()
                bar.update(1)
                if self.bar_shown:
                    self.postfix_shown = show_postfix(bar, self.train_meter, self.postfix_shown)
                due = epoch_ended if self.val_every_n_steps is None else state.step % self.val_every_n_steps == 0
                if due:
                    self._evaluation_point(lr, started)
                    started = time.perf_counter()
                if stopping.requested() is not None:
                    self._stop_on_signal(started)
                if self._done():
                    break
        if state.last_eval_step != state.step:  # the budget ended between evaluation points
            self._evaluation_point(lr, started)
        bar.close()
