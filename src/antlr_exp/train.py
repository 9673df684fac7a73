"""The training loop: fit, validate, checkpoint, test.

``run(cfg, run_dir)`` is everything ``antlr-train`` does after Hydra composed the config:
validate it (before any data is read), then either train (optionally resuming from
``run_dir/checkpoints/last.pt``) or, with ``evaluate=``, only evaluate a checkpoint. It writes
``metrics.csv`` (one row per evaluation point), ``checkpoints/`` and ``summary.json`` into
``run_dir`` and returns the summary.

Determinism: ``torch.manual_seed(seed)`` before the network is built fixes the initial weights;
the shuffling of every epoch is drawn from a ``torch.Generator`` seeded with ``seed``. Every
evaluation point saves the generator, the global RNG, the current epoch's order and the position
in it, so a resumed run takes exactly the steps an uninterrupted one would.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Optional

import torch
from omegaconf import DictConfig, OmegaConf
from torch.utils.data import DataLoader
from tqdm import tqdm

from . import checkpoint as ckpt
from . import stopping
from .config import flatten, neuron_params, rule_kwargs, validate
from .data import TaskData, load_task
from .errors import ConfigError, DatasetNotFoundError, InputError, NonFiniteError, StopSignal
from .loggers import RunLog
from .losses import (
    count_loss,
    count_targets,
    label_spike_trains,
    latency_loss,
    no_spike_count_term,
    no_spike_weight_penalty,
    spike_train_loss,
)
from .metrics import SplitMeter
from .network import NetworkOutput, SpikingNetwork

log = logging.getLogger(__name__)

#: Errors that are the user's to fix: the CLI prints their one-line message, no traceback.
USER_ERRORS = (ConfigError, InputError, DatasetNotFoundError)
SUMMARY_FILE = "summary.json"
#: With trainer.record_gradients: every step's flattened gradient (after backward, before
#: clipping), float32 [steps, n_params] in ``net.parameters()`` order; saved at evaluation points.
GRADIENTS_FILE = "gradients.pt"
#: Keys that may differ between a killed run and the command that resumes it.
RESUMABLE_CHANGES = ("resume", "device", "trainer.progress_bar", "trainer.max_epochs", "trainer.max_steps",
                     "data.root", "data.download", "logger")


# ---------------------------------------------------------------------------------------------
# Building blocks


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def load_data(cfg: DictConfig) -> TaskData:
    """The task's datasets, as ``cfg.task`` and ``cfg.data`` describe them."""
    return load_task(
        cfg.task.name,
        root=cfg.data.root,
        download=cfg.data.download,
        limit_train=cfg.data.limit_train,
        limit_test=cfg.data.limit_test,
        seed=cfg.seed,
        num_steps=cfg.task.num_steps,
        **OmegaConf.to_container(cfg.task.options, resolve=True),
    )


def build_network(cfg: DictConfig, data: TaskData) -> SpikingNetwork:
    """input (from the data) - ``task.hidden_sizes`` - outputs (from the data)."""
    sizes = [math.prod(data.input_shape), *cfg.task.hidden_sizes, data.num_outputs]
    return SpikingNetwork(sizes=sizes, num_steps=data.num_steps, neuron=neuron_params(cfg), **rule_kwargs(cfg))


class Objective:
    """The loss a run reports, and the extra terms it descends without reporting them."""

    def __init__(self, cfg: DictConfig, num_outputs: int):
        self.loss_cfg = cfg.loss
        self.num_outputs = num_outputs
        # only the timing method has the key: the penalty is its remedy for silent neurons
        self.no_spike_penalty = cfg.method.no_spike_penalty if "no_spike_penalty" in cfg.method else None

    def loss(self, out: NetworkOutput, targets: torch.Tensor) -> torch.Tensor:
        """Scalar batch mean; ``targets`` are labels [B] or target spike trains [B, T, O]."""
        settings = self.loss_cfg
        if settings.name == "count":
            wanted = count_targets(targets, self.num_outputs, settings.n_true, settings.n_false)
            return count_loss(out.output_spikes, wanted)
        if settings.name == "spike_train":
            if targets.dim() == 1:  # labels: the wanted spike trains are made from them
                targets = label_spike_trains(targets, self.num_outputs, out.output_spikes.shape[1],
                                             settings.label_steps, settings.other_steps)
            return spike_train_loss(out.output_spikes, out.output_times, targets, decay=settings.decay)
        loss = latency_loss(out.output_spikes, out.output_times, targets, beta=settings.beta)
        if settings.lambda_ns > 0:
            loss = loss + no_spike_count_term(out.output_spikes, targets, lambda_ns=settings.lambda_ns)
        return loss

    def penalty(self, net: SpikingNetwork, out: NetworkOutput) -> Optional[torch.Tensor]:
        """The timing rule's no-spike weight penalty (only its gradient matters), or None."""
        if self.no_spike_penalty:
            return no_spike_weight_penalty(net, out, p=self.no_spike_penalty)
        return None


@torch.no_grad()
def evaluate(net: SpikingNetwork, dataset, objective: Objective, meter: SplitMeter, batch_size: int,
             device: torch.device, split: str) -> dict:
    """Metrics of ``net`` on ``dataset`` (whole window simulated, no early stop)."""
    net.eval()
    meter.reset()
    for inputs, targets in DataLoader(dataset, batch_size=batch_size, shuffle=False):
        inputs, targets = inputs.to(device), targets.to(device)
        out = net(inputs)
        meter.update(out, targets, objective.loss(out, targets).item())
    return meter.compute(split)


def write_json(payload: dict, path: Path) -> None:
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(json.dumps(payload, indent=2, sort_keys=True) + "\n")
    os.replace(temporary, path)


def check_same_run(saved: dict, cfg: DictConfig, run_dir: Path) -> None:
    """A resumed run must be the run that was killed: same config, up to RESUMABLE_CHANGES."""
    current = flatten(OmegaConf.to_container(cfg, resolve=True))
    before = flatten(saved)
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


# ---------------------------------------------------------------------------------------------
# The loop


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
    best_epoch: Optional[int] = None
    train_time_s: float = 0.0
    history: list = field(default_factory=list)


class Trainer:
    """One run's network, optimizer, state and loggers. ``resume_from``: a ``last.pt`` payload to
    continue from. ``run_log`` stays None until ``open_log()`` (tests drive single steps without)."""

    def __init__(self, cfg: DictConfig, run_dir: Path, data: TaskData, device: torch.device,
                 resume_from: Optional[dict] = None):
        self.cfg = cfg
        self.run_dir = Path(run_dir)
        self.data = data
        self.device = device
        self.settings = cfg.trainer
        self.net = build_network(cfg, data).to(device)
        self.objective = Objective(cfg, data.num_outputs)
        has_labels = data.target_kind == "label"
        self.train_meter = SplitMeter(cfg.loss.decision, has_labels)
        self.eval_meter = SplitMeter(cfg.loss.decision, has_labels)
        opt = cfg.optimizer
        # fused: torch's one-kernel Adam (CPU and CUDA), a few times faster than the per-tensor loop
        self.optimizer = torch.optim.Adam(self.net.parameters(), lr=opt.lr, betas=tuple(opt.betas),
                                          weight_decay=opt.weight_decay, fused=True)
        self.scheduler = torch.optim.lr_scheduler.StepLR(
            self.optimizer, step_size=self.settings.lr_decay_epochs or 1,
            gamma=self.settings.lr_decay_factor if self.settings.lr_decay_epochs else 1.0)
        self.shuffle = torch.Generator().manual_seed(int(cfg.seed))
        self.state = TrainState()
        self.best_model = None
        self.batches_per_epoch = math.ceil(len(data.train) / self.settings.batch_size)
        self.wandb_run_id = None
        self.run_log: Optional[RunLog] = None
        self.gradients: Optional[list] = [] if self.settings.record_gradients else None
        if resume_from is not None:
            self.restore(resume_from)

    def open_log(self) -> RunLog:
        """metrics.csv (rewritten from the history on resume) and, with logger=wandb, the wandb run."""
        self.run_log = RunLog(self.cfg, self.run_dir, self.state.history, self.wandb_run_id)
        self.wandb_run_id = self.run_log.wandb_run_id
        return self.run_log

    # -- checkpoints --------------------------------------------------------------------------

    def _payload(self) -> dict:
        return {
            "config": OmegaConf.to_container(self.cfg, resolve=True),
            "model": self.net.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "shuffle_generator": self.shuffle.get_state(),
            "torch_rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            "state": asdict(self.state),
            "best_model": self.best_model,
            "wandb_run_id": self.wandb_run_id,
            "train_meter": dict(vars(self.train_meter)),  # the training metrics since the last evaluation
        }

    def restore(self, payload: dict) -> None:
        self.net.load_state_dict(payload["model"])
        self.optimizer.load_state_dict(payload["optimizer"])
        self.scheduler.load_state_dict(payload["scheduler"])
        self.shuffle.set_state(payload["shuffle_generator"])
        torch.set_rng_state(payload["torch_rng"])
        if payload["cuda_rng"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(payload["cuda_rng"])
        self.state = TrainState(**payload["state"])
        self.best_model = payload["best_model"]
        self.wandb_run_id = payload["wandb_run_id"]
        vars(self.train_meter).update(payload.get("train_meter", {}))
        recorded = self.run_dir / GRADIENTS_FILE
        if self.gradients is not None and recorded.is_file():  # the rows up to the checkpoint's step
            self.gradients = list(ckpt.load(recorded)[: self.state.step])

    def _save_best(self) -> None:
        self.best_model = {k: v.detach().to("cpu", copy=True) for k, v in self.net.state_dict().items()}
        ckpt.save_atomic(
            {"config": OmegaConf.to_container(self.cfg, resolve=True), "model": self.best_model,
             "step": self.state.step, "epoch": self.state.epoch, "monitor": self.settings.monitor,
             "value": self.state.best_value},
            ckpt.checkpoint_dir(self.run_dir) / ckpt.BEST,
        )

    # -- one step and one evaluation point ----------------------------------------------------

    def _train_step(self, inputs: torch.Tensor, targets: torch.Tensor) -> None:
        self.net.train()
        inputs, targets = inputs.to(self.device), targets.to(self.device)
        out = self.net(inputs)
        loss = self.objective.loss(out, targets)
        self._check_finite("the training loss", loss, self.state.step + 1)
        penalty = self.objective.penalty(self.net, out)
        self.optimizer.zero_grad(set_to_none=True)
        (loss if penalty is None else loss + penalty).backward()
        if self.gradients is not None:
            self.gradients.append(torch.cat([
                (p.grad if p.grad is not None else torch.zeros_like(p)).detach().flatten().float().cpu()
                for p in self.net.parameters()]))
        if self.cfg.optimizer.grad_clip_value is not None:
            torch.nn.utils.clip_grad_value_(self.net.parameters(), self.cfg.optimizer.grad_clip_value)
        self.optimizer.step()
        self.train_meter.update(out, targets, loss.item())

    def _improved(self, value: float) -> bool:
        if math.isnan(value):
            return False
        best = self.state.best_value
        if best is None:
            return True
        return value > best if self.settings.monitor_mode == "max" else value < best

    def _evaluation_point(self, lr: float, started: float) -> None:
        for name, parameter in self.net.named_parameters():
            self._check_finite(f"the weight {name}", parameter, self.state.step)
        row = {"epoch": self.state.epoch, "step": self.state.step, "lr": lr}
        row.update(self.train_meter.compute("train"))
        row.update(evaluate(self.net, self.data.val, self.objective, self.eval_meter,
                            self.settings.test_batch_size, self.device, "val"))
        self.train_meter.reset()
        self.state.train_time_s += time.perf_counter() - started
        row["time_s"] = round(self.state.train_time_s, 3)
        self.state.history.append(row)
        self.state.last_eval_step = self.state.step
        value = row[self.settings.monitor]
        if self._improved(value):
            self.state.best_value, self.state.best_step, self.state.best_epoch = value, self.state.step, self.state.epoch
            self._save_best()
        self.run_log.log(row)
        if self.gradients is not None:
            ckpt.save_atomic(torch.stack(self.gradients) if self.gradients else torch.zeros(0),
                             self.run_dir / GRADIENTS_FILE)
        ckpt.save_atomic(self._payload(), ckpt.checkpoint_dir(self.run_dir) / ckpt.LAST)

    # -- the loop -----------------------------------------------------------------------------

    def _done(self) -> bool:
        s, state = self.settings, self.state
        return (s.max_steps is not None and state.step >= s.max_steps) or (
            s.max_epochs is not None and state.epoch >= s.max_epochs)

    def _total_steps(self) -> int:
        s = self.settings
        by_epochs = s.max_epochs * self.batches_per_epoch if s.max_epochs is not None else None
        return min(x for x in (s.max_steps, by_epochs) if x is not None)

    def _end_epoch(self) -> None:
        self.state.epoch += 1
        self.state.batch_in_epoch = 0
        self.state.epoch_order = None
        self.scheduler.step()

    def fit(self) -> None:
        s, state = self.settings, self.state
        bar = tqdm(total=self._total_steps(), initial=state.step, disable=not s.progress_bar,
                   desc=f"{self.cfg.task.name}/{self.cfg.method.name}", dynamic_ncols=True, leave=False,
                   mininterval=0.5)
        started = time.perf_counter()
        lr = self.optimizer.param_groups[0]["lr"]
        while not self._done():
            if state.epoch_order is None:
                state.epoch_order = torch.randperm(len(self.data.train), generator=self.shuffle)
            remaining = state.epoch_order[state.batch_in_epoch * s.batch_size:].tolist()
            for inputs, targets in DataLoader(self.data.train, batch_size=s.batch_size, sampler=remaining):
                lr = self.optimizer.param_groups[0]["lr"]
                self._train_step(inputs, targets)
                state.step += 1
                state.batch_in_epoch += 1
                epoch_ended = state.batch_in_epoch == self.batches_per_epoch
                if epoch_ended:
                    self._end_epoch()
                bar.update(1)
                bar.set_postfix(self.train_meter.postfix(), refresh=False)
                due = epoch_ended if s.val_every_n_steps is None else state.step % s.val_every_n_steps == 0
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

    # -- stopping early -----------------------------------------------------------------------

    def _last_checkpoint_note(self) -> str:
        last = ckpt.checkpoint_dir(self.run_dir) / ckpt.LAST
        if last.is_file() and self.state.last_eval_step >= 0:
            return f"the last good checkpoint is {last} (step {self.state.last_eval_step})"
        return "no checkpoint was written before"

    def _check_finite(self, what: str, value: torch.Tensor, step: int) -> None:
        """Stop before a non-finite loss or weight (at optimizer step ``step``) is stepped on or
        saved (NonFiniteError)."""
        if not bool(torch.isfinite(value.detach()).all()):
            bad = value.detach()[~torch.isfinite(value.detach())].flatten()[0].item()
            raise NonFiniteError(
                f"{what} became {bad} at step {step}; the run stopped without saving it and "
                f"{self._last_checkpoint_note()}; try a smaller optimizer.lr (now {self.cfg.optimizer.lr}) "
                f"or set optimizer.grad_clip_value")

    def _stop_on_signal(self, started: float) -> None:
        """A stop signal arrived: save ``last.pt`` at this step and raise StopSignal."""
        self.state.train_time_s += time.perf_counter() - started
        if self.gradients is not None:
            ckpt.save_atomic(torch.stack(self.gradients) if self.gradients else torch.zeros(0),
                             self.run_dir / GRADIENTS_FILE)
        ckpt.save_atomic(self._payload(), ckpt.checkpoint_dir(self.run_dir) / ckpt.LAST)
        signum = stopping.requested()
        raise StopSignal(f"stopped by {signal_name(signum)} at step {self.state.step}; the checkpoint "
                         f"{ckpt.checkpoint_dir(self.run_dir) / ckpt.LAST} holds this step", signum)

    def test(self) -> dict:
        """Summary: the best checkpoint's validation row and its test metrics."""
        state = self.state
        self.net.load_state_dict(self.best_model)
        test = evaluate(self.net, self.data.test, self.objective, self.eval_meter,
                        self.settings.test_batch_size, self.device, "test")
        best_row = next(row for row in state.history if row["step"] == state.best_step)
        summary = run_facts(self.cfg)
        summary.update(
            steps=state.step, epochs=state.epoch, best_step=state.best_step, best_epoch=state.best_epoch,
            monitor=self.settings.monitor, train_time_s=round(state.train_time_s, 3),
            num_parameters=sum(p.numel() for p in self.net.parameters()),
        )
        summary.update({k: v for k, v in best_row.items() if k.startswith("val_")})
        summary.setdefault("test_accuracy", None)
        summary.update(test)
        return summary


def signal_name(signum: int) -> str:
    import signal

    return signal.Signals(signum).name


def run_facts(cfg: DictConfig) -> dict:
    """What a summary says about the run (the aggregator groups by the config, not by these)."""
    return {"task": cfg.task.name, "method": cfg.method.name, "loss": cfg.loss.name,
            "decision": cfg.loss.decision, "seed": cfg.seed, "single_spike": cfg.single_spike}


# ---------------------------------------------------------------------------------------------
# Entry points


def train(cfg: DictConfig, run_dir: Path) -> dict:
    run_dir = Path(run_dir)
    resume_from = None
    if cfg.resume:
        last = ckpt.checkpoint_dir(run_dir) / ckpt.LAST
        if not last.is_file():
            raise ConfigError(
                f"resume=true but {last} does not exist; point hydra.run.dir at the folder of the run to continue")
        resume_from = ckpt.load(last)
        check_same_run(resume_from["config"], cfg, run_dir)
    device = resolve_device(cfg.device)
    torch.manual_seed(int(cfg.seed))
    data = load_data(cfg)
    trainer = Trainer(cfg, run_dir, data, device, resume_from)
    if resume_from is not None:
        log.info("resuming %s at step %d (epoch %d)", run_dir, trainer.state.step, trainer.state.epoch)
    log.info("%s: network %s, %d training samples, run folder %s", cfg.method.name,
             "-".join(map(str, trainer.net.sizes)), len(data.train), run_dir)
    run_log = trainer.open_log()
    failed = True
    try:
        trainer.fit()
        summary = trainer.test()
        write_json(summary, run_dir / SUMMARY_FILE)
        run_log.summary(summary)
        failed = False
    finally:
        run_log.finish(failed=failed)
    return summary


def evaluate_checkpoint(cfg: DictConfig, run_dir: Path) -> dict:
    """``evaluate=PATH``: the checkpoint's own task, network, method and loss; ``data``,
    ``device`` and ``trainer.test_batch_size`` from this command."""
    path = ckpt.resolve_for_evaluation(cfg.evaluate)
    payload = ckpt.load_for_evaluation(path)
    saved = OmegaConf.create(payload["config"])
    merged = OmegaConf.merge(saved, {"data": cfg.data, "device": cfg.device,
                                     "trainer": {"test_batch_size": cfg.trainer.test_batch_size},
                                     "resume": False, "evaluate": None})
    validate(merged)
    device = resolve_device(merged.device)
    data = load_data(merged)
    net = build_network(merged, data).to(device)
    key = "best_model" if "best_model" in payload else "model"
    net.load_state_dict(payload[key])
    objective = Objective(merged, data.num_outputs)
    meter = SplitMeter(merged.loss.decision, data.target_kind == "label")
    summary = run_facts(merged)
    summary["evaluated_checkpoint"] = str(path.resolve())
    for split, dataset in (("val", data.val), ("test", data.test)):
        summary.update(evaluate(net, dataset, objective, meter, merged.trainer.test_batch_size, device, split))
    summary.setdefault("test_accuracy", None)
    write_json(summary, Path(run_dir) / SUMMARY_FILE)
    return summary


def run(cfg: DictConfig, run_dir: Path) -> dict:
    """Validate ``cfg`` (before any data is read), then train or evaluate; returns the summary."""
    validate(cfg)
    Path(run_dir).mkdir(parents=True, exist_ok=True)
    if cfg.evaluate:
        return evaluate_checkpoint(cfg, run_dir)
    return train(cfg, run_dir)
