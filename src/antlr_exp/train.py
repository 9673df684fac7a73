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

Trials: ``trials=K`` trains the trials ``seed, ..., seed+K-1`` as one stacked network
(:class:`~antlr_exp.network.SpikingNetwork` with ``trials=K``). Each trial has what its own run
would have: its data (split, subsets, matching problem), initial weights, shuffling, Adam state
and clipping (both elementwise, so one Adam over stacked parameters is K Adams), its best
checkpoint. Each trial writes a run folder of its own, ``<run_dir>/seed_<seed>/`` (metrics.csv,
summary.json, checkpoints/best.pt, .hydra/config.yaml with its seed and ``trials: 1``), laid out
like a separate run's; ``<run_dir>/checkpoints/last.pt`` holds the stacked state to resume from
and ``<run_dir>/trials.json`` lists the trials' summaries.
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
from torch.utils.data.dataloader import default_collate
from tqdm import tqdm

from . import checkpoint as ckpt
from . import console
from . import stopping
from .config import flatten, neuron_params, rule_kwargs, task_shape, validate, with_legacy_values
from .data import TaskData, load_task
from .errors import ConfigError, DatasetNotFoundError, InputError, NonFiniteError, StopSignal
from .loggers import RunLog
from .engine.losses import (
    count_loss,
    count_targets,
    label_spike_trains,
    latency_loss,
    no_spike_count_term,
    no_spike_weight_penalty,
    spike_train_loss,
)
from .metrics import SplitMeter
from .provenance import at_start, provenance
from .report import EVALUATED_CONFIG, TRIALS_FILE
from .engine.network import SpikingNetwork
from .engine.spikes import NetworkOutput, first_spike_times

log = logging.getLogger(__name__)

#: Errors that are the user's to fix: the CLI prints their one-line message, no traceback.
USER_ERRORS = (ConfigError, InputError, DatasetNotFoundError)
SUMMARY_FILE = "summary.json"
#: With trainer.record_gradients: every step's flattened gradient (after backward, before
#: clipping), float32 [steps, n_params] in ``net.parameters()`` order; saved at evaluation points.
GRADIENTS_FILE = "gradients.pt"
#: Keys that may differ between a killed run and the command that resumes it.
RESUMABLE_CHANGES = ("resume", "device", "kernels", "trainer.progress_bar", "trainer.max_epochs", "trainer.max_steps",
                     "data.root", "data.download", "logger")
#: float dtypes a run may compute in (``dtype=``)
DTYPES = {"float32": torch.float32, "float64": torch.float64}


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


def build_network(cfg: DictConfig, data: TaskData, trials: int = 1) -> SpikingNetwork:
    """input (from the data) - ``task.hidden_sizes`` - outputs (from the data), in ``cfg.dtype``."""
    sizes = [math.prod(data.input_shape), *cfg.task.hidden_sizes, data.num_outputs]
    net = SpikingNetwork(sizes=sizes, num_steps=data.num_steps, neuron=neuron_params(cfg), trials=trials,
                         kernels=cfg.get("kernels"), **rule_kwargs(cfg))
    return net.to(DTYPES[cfg.get("dtype", "float32")])


def trial_seeds(cfg: DictConfig) -> list:
    first = int(cfg.seed)
    return list(range(first, first + int(cfg.get("trials", 1))))


def trial_config(cfg: DictConfig, seed: int) -> DictConfig:
    """The config of one trial of a stacked run: the config its own run would have."""
    trial = OmegaConf.create(OmegaConf.to_container(cfg, resolve=False))
    trial.seed = seed
    trial.trials = 1
    return trial


def load_trials(cfg: DictConfig, device: Optional[torch.device] = None) -> tuple:
    """``(datas, net)`` of a run: one TaskData per trial, and the network with each trial's initial
    weights exactly as its own run draws them (``torch.manual_seed(seed)``, data, network).
    With ``device``, a stacked run that would not fit there is refused once the first trial's
    data is known (before the others are loaded)."""
    seeds = trial_seeds(cfg)
    datas, states = [], []
    for seed in seeds:
        torch.manual_seed(seed)
        trial = trial_config(cfg, seed) if len(seeds) > 1 else cfg
        datas.append(load_data(trial))
        if len(seeds) > 1:
            states.append(build_network(trial, datas[-1]).state_dict())
            if device is not None and len(states) == 1:
                check_fits(cfg, datas[0], len(seeds), device)
    if len(seeds) == 1:
        return datas, build_network(cfg, datas[0])
    net = build_network(cfg, datas[0], trials=len(seeds))
    net.load_state_dict({key: torch.stack([state[key] for state in states]) for key in states[0]})
    return datas, net


def memory_estimate(cfg: DictConfig, data: Optional[TaskData], trials: int) -> int:
    """Bytes a training step and an evaluation batch need, roughly: the recorded potentials,
    spikes, times and adjoints of every layer (about 8 [T, K*B, N] tensors each), the input, and
    the parameters with their gradients, Adam moments and best copy. An evaluation batch holds
    ``test_batch_size`` samples over all trials together (``evaluate_trials``). Arithmetic only:
    without ``data`` the sizes come from the config (``task_shape``)."""
    size = torch.empty(0, dtype=DTYPES[cfg.get("dtype", "float32")]).element_size()
    inputs, outputs = task_shape(cfg) if data is None else (math.prod(data.input_shape), data.num_outputs)
    sizes = [inputs, *cfg.task.hidden_sizes, outputs]
    steps = cfg.task.num_steps if data is None else data.num_steps
    samples = max(trials * cfg.trainer.batch_size, cfg.trainer.test_batch_size // 2)
    activations = 8 * steps * samples * sum(sizes[1:]) * size
    inputs = 3 * steps * samples * sizes[0] * 4
    parameters = 5 * trials * sum((a + 1) * b for a, b in zip(sizes[:-1], sizes[1:])) * size
    return activations + inputs + parameters


def available_memory(device: torch.device) -> Optional[int]:
    """Free memory of ``device`` in bytes (None where it cannot be told)."""
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def largest_fitting_trials(cfg: DictConfig, data: Optional[TaskData], room: float, upto: int) -> int:
    """The largest K <= ``upto`` whose estimate fits in ``room`` bytes (0 when none does)."""
    low, high = 0, upto  # the estimate grows with K: bisect
    while low < high:
        middle = (low + high + 1) // 2
        if memory_estimate(cfg, data, middle) <= room:
            low = middle
        else:
            high = middle - 1
    return low


def check_fits(cfg: DictConfig, data: Optional[TaskData], trials: int, device: torch.device) -> None:
    """Refuse, before training starts, a run (stacked or not) that will not fit in memory; without
    ``data``, from the config alone (``antlr-train`` checks this before it makes any folder)."""
    need, free = memory_estimate(cfg, data, trials), available_memory(device)
    if free is None or need <= 0.9 * free:
        return
    fit = largest_fitting_trials(cfg, data, 0.9 * free, trials)
    shown = f"{need / 2**30:.1f} GiB"
    if fit == 0:
        raise ConfigError(
            f"task.hidden_sizes={_listed(cfg.task.hidden_sizes)}: one network needs about "
            f"{memory_estimate(cfg, data, 1) / 2**30:.1f} GiB{f' ({shown} for trials={trials})' if trials > 1 else ''}, "
            f"{free / 2**30:.1f} GiB is free on {device.type}; accepted: a network that fits (smaller "
            f"task.hidden_sizes, task.num_steps, trainer.batch_size or trainer.test_batch_size)")
    per_trial = need / trials
    per_trial = f"{per_trial / 2**20:.0f} MiB" if per_trial >= 2**20 else f"{per_trial / 2**10:.0f} KiB"
    raise ConfigError(
        f"trials={trials}: needs about {shown} ({per_trial} per trial), "
        f"{free / 2**30:.1f} GiB is free on {device.type}; use trials={fit} or fewer, or a smaller batch")


def _listed(values) -> str:
    return "[" + ", ".join(str(v) for v in values) + "]"


class Objective:
    """The loss a run reports, and the extra terms it descends without reporting them."""

    def __init__(self, cfg: DictConfig, num_outputs: int):
        self.loss_cfg = cfg.loss
        self.num_outputs = num_outputs
        # only the timing method has the key: the penalty is its remedy for silent neurons
        self.no_spike_penalty = cfg.method.no_spike_penalty if "no_spike_penalty" in cfg.method else None

    def per_sample(self, out: NetworkOutput, targets: torch.Tensor) -> torch.Tensor:
        """The loss of every sample, [B]; ``targets`` are labels [B] or target spike trains [B, T, O]."""
        settings = self.loss_cfg
        if settings.name == "count":
            wanted = count_targets(targets, self.num_outputs, settings.n_true, settings.n_false)
            return count_loss(out.output_spikes, wanted, reduction="none")
        if settings.name == "spike_train":
            if targets.dim() == 1:  # labels: the wanted spike trains are made from them
                targets = label_spike_trains(targets, self.num_outputs, out.output_spikes.shape[1],
                                             settings.label_steps, settings.other_steps)
            return spike_train_loss(out.output_spikes, out.output_times, targets, decay=settings.decay,
                                    reduction="none")
        loss = latency_loss(out.output_spikes, out.output_times, targets, beta=settings.beta, reduction="none")
        if settings.lambda_ns > 0:
            loss = loss + no_spike_count_term(out.output_spikes, targets, lambda_ns=settings.lambda_ns,
                                              reduction="none")
        return loss

    def trial_losses(self, out: NetworkOutput, targets: torch.Tensor) -> torch.Tensor:
        """Each trial's batch-mean loss, [K] (K = 1 for a plain network)."""
        return self.per_sample(out, targets).view(out.trials, -1).mean(dim=1)

    def loss(self, out: NetworkOutput, targets: torch.Tensor) -> torch.Tensor:
        """Scalar batch mean (of a plain network's batch)."""
        return self.per_sample(out, targets).mean()

    def penalty(self, net: SpikingNetwork, out: NetworkOutput) -> Optional[torch.Tensor]:
        """The timing rule's no-spike weight penalty (only its gradient matters), or None."""
        if self.no_spike_penalty:
            return no_spike_weight_penalty(net, out, p=self.no_spike_penalty)
        return None


def clip_grad_norm_per_trial(parameters: list, max_norm: float, trials: int) -> None:
    """Scale each trial's gradient (over all its parameters) to a Euclidean norm of at most
    ``max_norm``; with ``trials = K > 1`` every parameter is stacked [K, ...] and each trial is
    scaled on its own, as K separate runs would be."""
    grads = [p.grad for p in parameters if p.grad is not None]
    if not grads:
        return
    squares = sum(g.reshape(trials, -1).pow(2).sum(dim=1) for g in grads)  # [K]
    scale = (max_norm / (squares.sqrt() + 1e-6)).clamp(max=1.0)  # as torch.nn.utils.clip_grad_norm_
    for g in grads:
        g.mul_(scale.view(trials, *([1] * (g.dim() - 1))) if trials > 1 else scale)


def stack_trials(batches: list) -> tuple:
    """One batch per trial -> the stacked network's input [K, B, ...] and targets [K*B, ...]."""
    if len(batches) == 1:
        return batches[0]
    inputs = torch.stack([b[0] for b in batches])
    targets = torch.cat([b[1] for b in batches])
    return inputs, targets


@torch.no_grad()
def evaluate_trials(net: SpikingNetwork, datasets: list, objective: Objective, meter: SplitMeter,
                    batch_size: int, device: torch.device, split: str) -> list:
    """Metrics of each trial of ``net`` on its dataset (whole window simulated, no early stop).
    ``batch_size`` samples go through one forward pass over all trials together, so each trial
    takes ``ceil(batch_size / trials)`` of its own (the metrics do not depend on the batching)."""
    net.eval()
    meter.reset()
    per_trial = max(1, -(-batch_size // len(datasets)))
    loaders = [DataLoader(dataset, batch_size=per_trial, shuffle=False) for dataset in datasets]
    for batches in zip(*loaders):
        inputs, targets = stack_trials(list(batches))
        inputs, targets = inputs.to(device), targets.to(device)
        out = net(inputs)
        meter.update(out, targets, objective.trial_losses(out, targets))
    return meter.compute_trials(split)


def evaluate(net: SpikingNetwork, dataset, objective: Objective, meter: SplitMeter, batch_size: int,
             device: torch.device, split: str) -> dict:
    """Metrics of a plain ``net`` on ``dataset`` (whole window simulated, no early stop)."""
    return evaluate_trials(net, [dataset], objective, meter, batch_size, device, split)[0]


def write_json(payload: dict, path: Path) -> None:
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(json.dumps(payload, indent=2, sort_keys=True) + "\n")
    os.replace(temporary, path)


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
    best_epoch: Optional[float] = None  # as metrics.csv gives it: fractional between epoch ends
    train_time_s: float = 0.0
    history: list = field(default_factory=list)


class Trainer:
    """One run's network, optimizer, state and loggers. ``resume_from``: a ``last.pt`` payload to
    continue from. ``run_log`` stays None until ``open_log()`` (tests drive single steps without).

    ``data`` is one TaskData, or one per trial with ``net`` the stacked network of those trials
    (see :func:`load_trials`); each trial has its own state, shuffling, meters and run folder.
    """

    def __init__(self, cfg: DictConfig, run_dir: Path, data, device: torch.device,
                 resume_from: Optional[dict] = None, net: Optional[SpikingNetwork] = None):
        self.cfg = cfg
        self.run_dir = Path(run_dir)
        self.datas = list(data) if isinstance(data, (list, tuple)) else [data]
        self.data = self.datas[0]
        self.trials = len(self.datas)
        self.seeds = [int(cfg.seed) + k for k in range(self.trials)]
        self.trial_dirs = ([self.run_dir] if self.trials == 1
                           else [self.run_dir / f"seed_{seed}" for seed in self.seeds])
        self.trial_cfgs = ([cfg] if self.trials == 1 else [trial_config(cfg, seed) for seed in self.seeds])
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
        self.optimizer = torch.optim.Adam(self.net.parameters(), lr=opt.lr, betas=tuple(opt.betas), eps=opt.eps,
                                          weight_decay=opt.weight_decay, amsgrad=opt.amsgrad, fused=True)
        self.scheduler = torch.optim.lr_scheduler.StepLR(
            self.optimizer, step_size=self.settings.lr_decay_epochs or 1,
            gamma=self.settings.lr_decay_factor if self.settings.lr_decay_epochs else 1.0)
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
        self._single_sample_batch = None  # see _epoch_batches
        self.early_stop = train_early_stop(cfg)
        # whether the last step could stop early: while it could not, steps run the plain whole-window
        # pass (no chunking cost) and only check whether a stop would have been possible
        self.stop_possible = True
        self.simulated_steps: list = []  # per training step since the last evaluation point
        self.wandb_run_id = None
        self.run_log: Optional[RunLog] = None
        self.run_logs: list = []
        self.gradients: Optional[list] = [] if self.settings.record_gradients else None
        self.weights = list(self.net.parameters())  # read after every step (_train_step)
        self.saved_step: Optional[int] = None  # the step last.pt holds, None before it is written
        if resume_from is not None:
            self.restore(resume_from)

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

    def open_log(self) -> RunLog:
        """metrics.csv (rewritten from the history on resume) and, with logger=wandb, the wandb run;
        one per trial. A stacked run also writes each trial's config into its folder."""
        self.run_logs = []
        for k, (trial_dir, trial_cfg) in enumerate(zip(self.trial_dirs, self.trial_cfgs)):
            if self.trials > 1:
                (trial_dir / ".hydra").mkdir(parents=True, exist_ok=True)
                OmegaConf.save(trial_cfg, trial_dir / ".hydra" / "config.yaml")
            self.run_logs.append(RunLog(trial_cfg, trial_dir, self.states[k].history,
                                        self.wandb_run_id if self.trials == 1 else None))
        self.run_log = self.run_logs[0]
        self.wandb_run_id = self.run_log.wandb_run_id
        return self.run_log

    # -- checkpoints --------------------------------------------------------------------------

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
            "early_stop": {"stop_possible": self.stop_possible, "simulated_steps": list(self.simulated_steps)},
        }
        if self.trials == 1:
            payload.update(shuffle_generator=self.shuffle.get_state(), state=asdict(self.state),
                           best_model=self.best_model)
        else:
            payload.update(shuffle_generators=[g.get_state() for g in self.shuffles],
                           states=[asdict(state) for state in self.states], best_models=self.best_models)
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
            {"config": OmegaConf.to_container(self.trial_cfgs[k], resolve=True), "model": self.best_models[k],
             "step": state.best_step, "epoch": state.best_epoch, "monitor": self.settings.monitor,
             "value": state.best_value},
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
            log.warning("%s is %s: rewritten from the best weights (step %d) that %s holds", path,
                        "missing" if not path.is_file() else "unreadable or of another step", state.best_step,
                        ckpt.checkpoint_dir(self.run_dir) / ckpt.LAST)
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

    def _stacked_best(self) -> dict:
        """The best weights of every trial as the stacked network's state dict."""
        if self.trials == 1:
            return self.best_model
        return {key: torch.stack([best[key] for best in self.best_models]) for key in self.best_models[0]}

    # -- one step and one evaluation point ----------------------------------------------------

    def _train_step(self, inputs: torch.Tensor, targets: torch.Tensor) -> None:
        self.net.train()
        inputs, targets = inputs.to(self.device), targets.to(self.device)
        chunked = self.early_stop and self.stop_possible
        out = self.net(inputs, early_stop=chunked, chunk=EARLY_STOP_CHUNK)
        if self.early_stop:
            self.stop_possible = out.num_steps < self.net.num_steps if chunked else would_stop_early(out)
        self.simulated_steps.append(out.num_steps)
        losses = self.objective.trial_losses(out, targets)  # [K]: each trial's batch mean
        loss = losses.sum()  # each trial's parameters get the gradient of its own loss
        self._check_finite("the training loss", loss, self.state.step + 1)
        penalty = self.objective.penalty(self.net, out)
        self.optimizer.zero_grad(set_to_none=True)
        (loss if penalty is None else loss + penalty).backward()
        if self.gradients is not None:
            self.gradients.append(torch.cat([
                (p.grad if p.grad is not None else torch.zeros_like(p)).detach().flatten().float().cpu()
                for p in self.net.parameters()]))
        if self.grad_clip_value is not None:
            torch.nn.utils.clip_grad_value_(self.net.parameters(), self.grad_clip_value)
        if self.grad_clip_norm is not None:
            clip_grad_norm_per_trial(list(self.net.parameters()), self.grad_clip_norm, self.trials)
        self.optimizer.step()
        # Every step's weights are checked, so a non-finite weight is named at the step that made it
        # and is never saved (a stop signal saves last.pt after any step). The sum of all weights is
        # inf or NaN whenever one weight is (and, rarely, when finite huge weights overflow it: then
        # _check_weights looks at every element and finds nothing): one read of the weights, a
        # fraction of what Adam's step reads and writes. It is read after the meter's update, which
        # copies the step's numbers to the host anyway, so on a GPU it adds no wait of its own.
        weights = torch.stack([p.detach().sum() for p in self.weights]).sum()
        self.train_meter.update(out, targets, losses.detach())
        if not math.isfinite(weights.item()):
            self._check_weights(self.state.step + 1)

    def _improved(self, value: float, k: int = 0) -> bool:
        if math.isnan(value):
            return False
        best = self.states[k].best_value
        if best is None:
            return True
        return value > best if self.settings.monitor_mode == "max" else value < best

    def _check_weights(self, step: int) -> None:
        """NonFiniteError when a weight is inf or NaN at optimizer step ``step``."""
        for name, parameter in self.net.named_parameters():
            self._check_finite(f"the weight {name}", parameter, step)

    def _check_saveable(self) -> None:
        """Before last.pt is written: its weights and Adam's moments must be finite."""
        self._check_weights(self.state.step)
        names = {id(p): name for name, p in self.net.named_parameters()}
        for parameter, moments in self.optimizer.state.items():
            for key, value in moments.items():
                if key != "step" and torch.is_tensor(value):
                    self._check_finite(f"Adam's {key} of the weight {names.get(id(parameter), '?')}", value,
                                       self.state.step)

    def _evaluation_point(self, lr: float, started: float) -> None:
        self._check_saveable()
        train_rows = self.train_meter.compute_trials("train")
        val_rows = evaluate_trials(self.net, [data.val for data in self.datas], self.objective, self.eval_meter,
                                   self.settings.test_batch_size, self.device, "val")
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
            self._warn_if_output_fell_silent(k, state.history)
            value = row[self.settings.monitor]
            if self._improved(value, k):
                state.best_value, state.best_step, state.best_epoch = value, state.step, row["epoch"]
                self._save_best(k)
            self.run_logs[k].log(row)
        if not getattr(self, "bar_shown", True):  # one line, a stacked run's mean over its trials
            rows = [state.history[-1] for state in self.states]
            shown = {key: value if key in ("epoch", "step", "lr") else sum(r[key] for r in rows) / len(rows)
                     for key, value in rows[0].items()}
            console.log_evaluation(shown, self._total_steps(), trials=self.trials)
        if self.gradients is not None:
            ckpt.save_atomic(torch.stack(self.gradients) if self.gradients else torch.zeros(0),
                             self.run_dir / GRADIENTS_FILE)
        ckpt.save_atomic(self._payload(), ckpt.checkpoint_dir(self.run_dir) / ckpt.LAST)
        self.saved_step = self.state.step

    def _warn_if_output_fell_silent(self, k: int, history: list) -> None:
        """One warning when a trial's output layer goes (nearly) silent on the training samples:
        fewer than SILENT_OUTPUTS output spikes per sample means that at least 1 - that fraction of
        the samples had no output spike at all (a silent output gets no gradient from the latency
        loss; only the no-spike terms reach it)."""
        key = "train_output_spikes_per_sample"
        now = history[-1].get(key)
        before = history[-2].get(key) if len(history) > 1 else None
        if now is None or now >= SILENT_OUTPUTS or (before is not None and before < SILENT_OUTPUTS):
            return
        # the folder names the job where a sweep's jobs share one console
        who = f"{self.trial_dirs[k]}" + (f" (trial seed {self.seeds[k]})" if self.trials > 1 else "")
        log.warning("%s: its output layer fired %.3g spikes per training sample in the steps up to %d, so at least "
                    "%.0f %% of those samples had no output spike; training goes on, and the test uses the "
                    "best validation checkpoint", who, now, history[-1]["step"], 100 * (1 - now))

    # -- the loop -----------------------------------------------------------------------------

    def _done(self) -> bool:
        state = self.state
        return (self.max_steps is not None and state.step >= self.max_steps) or (
            self.max_epochs is not None and state.epoch >= self.max_epochs)

    def _total_steps(self) -> int:
        s = self.settings
        by_epochs = s.max_epochs * self.batches_per_epoch if s.max_epochs is not None else None
        # never below the step reached (a resume may lower the budget: see budget_spent)
        return max(min(x for x in (s.max_steps, by_epochs) if x is not None), self.state.step)

    def _end_epoch(self) -> None:
        for state in self.states:
            state.epoch += 1
            state.batch_in_epoch = 0
            state.epoch_order = None
        self.scheduler.step()

    def _epoch_batches(self):
        """The rest of the current epoch: per step, one batch per trial in its own order, stacked.

        Each trial's batches are its dataset's items in its epoch order, collated as a DataLoader
        would (``default_collate``), without a DataLoader: the matching task's epoch is one step,
        and building K loaders at every step cost more than the step's arithmetic at K = 100.
        When every trial's training set is one sample, the stacked batch is the same at every
        step and is made once (each epoch still draws its order, so the generators advance as
        they always did)."""
        batch_size = self.batch_size
        orders = []
        for state, shuffle, data in zip(self.states, self.shuffles, self.datas):
            if state.epoch_order is None:
                state.epoch_order = torch.randperm(len(data.train), generator=shuffle)
            orders.append(state.epoch_order[state.batch_in_epoch * batch_size:].tolist())
        if all(len(data.train) == 1 for data in self.datas):
            if orders[0]:
                if self._single_sample_batch is None:
                    self._single_sample_batch = stack_trials([default_collate([data.train[0]]) for data in self.datas])
                yield self._single_sample_batch
            return
        steps = min(math.ceil(len(order) / batch_size) for order in orders)
        for i in range(steps):
            window = slice(i * batch_size, (i + 1) * batch_size)
            yield stack_trials([default_collate([data.train[j] for j in order[window]])
                                for data, order in zip(self.datas, orders)])

    def fit(self) -> None:
        s, state = self.settings, self.state
        self.bar_shown = console.bar_enabled(s.progress_bar)  # else one log line per evaluation point
        bar = tqdm(total=self._total_steps(), initial=state.step, disable=not self.bar_shown,
                   desc=f"{self.cfg.task.name}/{self.cfg.method.name}", dynamic_ncols=True, leave=False,
                   mininterval=0.5)
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
                bar.set_postfix(self.train_meter.postfix(), refresh=False)
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

    # -- stopping early -----------------------------------------------------------------------

    def _last_checkpoint_note(self) -> str:
        last = ckpt.checkpoint_dir(self.run_dir) / ckpt.LAST
        if last.is_file() and self.saved_step is not None:
            return f"the last good checkpoint is {last} (step {self.saved_step})"
        return "no checkpoint was written before"

    def _check_finite(self, what: str, value: torch.Tensor, step: int) -> None:
        """Stop before a non-finite loss or weight (at optimizer step ``step``) is stepped on or
        saved (NonFiniteError)."""
        if not bool(torch.isfinite(value.detach()).all()):
            bad = value.detach()[~torch.isfinite(value.detach())].flatten()[0].item()
            # Adam's step is about lr whatever the gradients' scale: a smaller lr is the remedy; clipping
            # helps only where it is off
            clip = (" or set optimizer.grad_clip_value" if self.grad_clip_value is None else
                    f" (the gradients are already clipped to optimizer.grad_clip_value={self.grad_clip_value})")
            raise NonFiniteError(
                f"{what} became {bad} at step {step}; the run stopped without saving it and "
                f"{self._last_checkpoint_note()}; try a smaller optimizer.lr (now {self.cfg.optimizer.lr}){clip}")

    def _stop_on_signal(self, started: float) -> None:
        """A stop signal arrived: save ``last.pt`` at this step and raise StopSignal."""
        elapsed = time.perf_counter() - started
        for state in self.states:
            state.train_time_s += elapsed
        self._check_saveable()
        if self.gradients is not None:
            ckpt.save_atomic(torch.stack(self.gradients) if self.gradients else torch.zeros(0),
                             self.run_dir / GRADIENTS_FILE)
        ckpt.save_atomic(self._payload(), ckpt.checkpoint_dir(self.run_dir) / ckpt.LAST)
        self.saved_step = self.state.step
        signum = stopping.requested()
        raise StopSignal(f"stopped by {signal_name(signum)} at step {self.state.step}; the checkpoint "
                         f"{ckpt.checkpoint_dir(self.run_dir) / ckpt.LAST} holds this step", signum)

    def test(self) -> dict:
        """Summary: the best checkpoint's validation row and its test metrics (of a plain run; a
        stacked run's per-trial summaries are :meth:`test_trials`)."""
        return self.test_trials()[0]

    def test_trials(self) -> list:
        """Per trial: its best checkpoint's validation row and its test metrics."""
        self.net.load_state_dict(self._stacked_best())
        tests = evaluate_trials(self.net, [data.test for data in self.datas], self.objective, self.eval_meter,
                                self.settings.test_batch_size, self.device, "test")
        summaries = []
        per_trial_parameters = sum(p.numel() for p in self.net.parameters()) // self.trials
        for k, state in enumerate(self.states):
            best_row = next(row for row in state.history if row["step"] == state.best_step)
            summary = run_facts(self.trial_cfgs[k])
            summary.update(
                steps=state.step, epochs=state.epoch, best_step=state.best_step, best_epoch=state.best_epoch,
                monitor=self.settings.monitor, train_time_s=round(state.train_time_s, 3),
                num_parameters=per_trial_parameters,
            )
            if self.trials > 1:
                summary.update(trials_in_process=self.trials, trial_index=k)
            summary.update({k2: v for k2, v in best_row.items() if k2.startswith("val_")})
            summary.setdefault("test_accuracy", None)
            summary.update(tests[k])
            summaries.append(summary)
        return summaries


#: output spikes per training sample below which a trial's output layer counts as fallen silent
SILENT_OUTPUTS = 0.5

#: steps simulated at a time by the training early stop
EARLY_STOP_CHUNK = 10


def would_stop_early(out: NetworkOutput) -> bool:
    """Whether a whole-window pass would have stopped at a chunk before the end: every output of
    every sample fired before the last chunk."""
    # a silent output's first spike time is the window's length, so it never stops early
    last_first = int(first_spike_times(out.output_spikes.detach()).max())
    return (last_first // EARLY_STOP_CHUNK + 1) * EARLY_STOP_CHUNK < out.num_steps


def train_early_stop(cfg: DictConfig) -> bool:
    """Whether training stops simulating once every output of every sample has fired: exact for
    the latency loss (with or without the no-spike count term), whose gradient is 0 after every
    output's first spike; not with the timing rule's no-spike penalty counted over the whole
    window (``method.penalty_window=full``), which needs the whole window's silence."""
    if not cfg.trainer.get("train_early_stop", False) or cfg.loss.name != "latency":
        return False
    if cfg.method.get("no_spike_penalty") and cfg.method.get("penalty_window", "full") == "full":
        return False
    return True


def signal_name(signum: int) -> str:
    import signal

    return signal.Signals(signum).name


def run_facts(cfg: DictConfig) -> dict:
    """What a summary says about the run (the aggregator groups by the config, not by these)."""
    return {"task": cfg.task.name, "method": cfg.method.name, "loss_name": cfg.loss.name,
            "decision": cfg.loss.decision, "seed": cfg.seed, "single_spike": cfg.single_spike}


# ---------------------------------------------------------------------------------------------
# Entry points


def train(cfg: DictConfig, run_dir: Path) -> dict:
    started = at_start()  # the code and time at the start (the checkout may move on meanwhile)
    run_dir = Path(run_dir)
    resume_from = None
    if cfg.resume:
        last = ckpt.checkpoint_dir(run_dir) / ckpt.LAST
        if not last.is_file():
            raise ConfigError(
                f"resume=true but {last} does not exist; point hydra.run.dir at the folder of the run to continue")
        resume_from = ckpt.load(last)
        check_same_run(resume_from["config"], cfg, run_dir)
        check_finite_checkpoint(resume_from, last)
    device = resolve_device(cfg.device)
    datas, net = load_trials(cfg, device)
    data = datas[0]
    trainer = Trainer(cfg, run_dir, datas, device, resume_from, net=net)
    kernels = trainer.net.backend(device).name
    log.info("%s: network %s%s, %s kernels, %d training samples, run folder %s", cfg.method.name,
             "-".join(map(str, trainer.net.sizes)),
             f", {net.trials} trials (seeds {trainer.seeds[0]}..{trainer.seeds[-1]})" if net.trials > 1 else "",
             kernels, len(data.train), run_dir)
    if resume_from is not None:
        log.info("resuming %s at step %d (epoch %d)", run_dir, trainer.state.step, trainer.state.epoch)
        trainer.repair_best()
    spent = trainer.budget_spent() if resume_from is not None else None
    if resume_from is not None and trainer._done():
        finished = finished_summaries(trainer)
        if finished is not None:  # e.g. a finished job of a sweep that runs again with resume=true
            log.info("%s finished training and testing at step %d; its summary stands", run_dir, trainer.state.step)
            return finished[0] if net.trials == 1 else trials_summary(finished, trainer.trial_dirs, run_dir)
    # A budget lowered below the step reached was already spent: the run ends where it stopped, with
    # no more steps and no evaluation beyond its last one, and tests its best checkpoint so far (a
    # run stopped before its first evaluation is evaluated once at the step reached, to have one).
    evaluated = all(state.best_step is not None for state in trainer.states)
    if spent is not None:
        log.warning("%s was already spent: the run in %s reached step %d before; it trains no further and "
                    "%s", spent, run_dir, trainer.state.step,
                    f"tests its best checkpoint (step {trainer.state.best_step})" if evaluated else
                    f"is evaluated and tested at step {trainer.state.step}")
    if trainer.early_stop:
        log.info("training stops simulating once every output has fired (exact for the latency loss)")
    trainer.open_log()
    failed = True
    try:
        if spent is None or not evaluated:
            trainer.fit()
        summaries = trainer.test_trials()
        for trial_dir, summary, run_log in zip(trainer.trial_dirs, summaries, trainer.run_logs):
            summary.update(kernels=kernels, **provenance(trial_dir, started))
            write_json(summary, trial_dir / SUMMARY_FILE)
            run_log.summary(summary)
        failed = False
    finally:
        for run_log in trainer.run_logs:
            run_log.finish(failed=failed)
    if net.trials == 1:
        return summaries[0]
    return trials_summary(summaries, trainer.trial_dirs, run_dir)


def check_finite_checkpoint(payload: dict, path: Path) -> None:
    """A ``last.pt`` to resume from must hold finite weights (runs never save others; an older
    version could, on a stop signal)."""
    for key, value in payload.get("model", {}).items():
        if torch.is_tensor(value) and value.is_floating_point() and not bool(torch.isfinite(value).all()):
            raise ConfigError(f"resume=true: {path} holds non-finite weights ({key}), so the run cannot continue "
                              f"from it; start it again in another hydra.run.dir")


def finished_summaries(trainer: "Trainer") -> Optional[list]:
    """Each trial's summary.json when every trial was tested at the checkpoint's step, else None."""
    summaries = []
    for trial_dir in trainer.trial_dirs:
        try:
            summary = json.loads((Path(trial_dir) / SUMMARY_FILE).read_text())
        except (OSError, ValueError):
            return None
        if not isinstance(summary, dict) or summary.get("steps") != trainer.state.step:
            return None
        summaries.append(summary)
    return summaries


def trials_summary(summaries: list, trial_dirs: list, run_dir: Path) -> dict:
    """A stacked run's index, ``trials.json``: each trial's folder and summary, and the mean over
    the trials of every numeric summary value (what a sweeper optimizes)."""
    combined: dict = {"trials": len(summaries), "seeds": [s["seed"] for s in summaries],
                      "folders": [str(d) for d in trial_dirs], "summaries": summaries}
    for key, value in summaries[0].items():
        values = [s.get(key) for s in summaries]
        if key not in combined and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
            combined[key] = sum(values) / len(values)
    write_json(combined, Path(run_dir) / TRIALS_FILE)
    return combined


def evaluate_checkpoint(cfg: DictConfig, run_dir: Path) -> dict:
    """``evaluate=PATH``: the checkpoint's own task, network, method and loss; ``data``,
    ``device`` and ``trainer.test_batch_size`` from this command."""
    started = at_start()  # the code and time at the start (the checkout may move on meanwhile)
    path = ckpt.resolve_for_evaluation(cfg.evaluate)
    payload = ckpt.load_for_evaluation(path)
    saved = OmegaConf.create(with_legacy_values(payload["config"]))
    merged = OmegaConf.merge(saved, {"data": cfg.data, "device": cfg.device, "kernels": cfg.get("kernels"),
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
    summary["kernels"] = net.backend(device).name
    for split, dataset in (("val", data.val), ("test", data.test)):
        summary.update(evaluate(net, dataset, objective, meter, merged.trainer.test_batch_size, device, split))
    summary.setdefault("test_accuracy", None)
    summary.update(provenance(run_dir, started))
    # what antlr-report files this run under: the checkpoint's settings, not this command's defaults
    OmegaConf.save(merged, Path(run_dir) / EVALUATED_CONFIG)
    write_json(summary, Path(run_dir) / SUMMARY_FILE)
    return summary


def run(cfg: DictConfig, run_dir: Path) -> dict:
    """Validate ``cfg`` (before any data is read), then train or evaluate; returns the summary."""
    validate(cfg)
    Path(run_dir).mkdir(parents=True, exist_ok=True)
    if cfg.evaluate:
        return evaluate_checkpoint(cfg, run_dir)
    return train(cfg, run_dir)
