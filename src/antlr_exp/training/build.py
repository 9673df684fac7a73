"""What a run is built from: the device, each trial's data, the (stacked) network with each
trial's initial weights, and the memory check that refuses a run that would not fit."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Optional

import torch
from omegaconf import DictConfig, OmegaConf

from ..config import neuron_params, rule_kwargs, task_shape
from ..data import TaskData, load_task
from ..engine.network import SpikingNetwork
from ..errors import ConfigError

#: float dtypes a run may compute in (``dtype=``)
DTYPES = {"float32": torch.float32, "float64": torch.float64}


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
    net = SpikingNetwork(
        sizes=sizes,
        num_steps=data.num_steps,
        neuron=neuron_params(cfg),
        trials=trials,
        kernels=cfg.get("kernels"),
        **rule_kwargs(cfg),
    )
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
    check_trials_agree(datas, seeds)
    net = build_network(cfg, datas[0], trials=len(seeds))
    net.load_state_dict({key: torch.stack([state[key] for state in states]) for key in states[0]})
    return datas, net


def check_trials_agree(datas: list, seeds: list) -> None:
    """Trials trained as one stacked network take their batches side by side: every trial's data
    must have the first one's shapes and split sizes (a ``task=custom`` loader may differ by seed)."""

    def facts(data: TaskData) -> dict:
        sizes = {f"{split} samples": len(getattr(data, split)) for split in ("train", "val", "test")}
        return {
            "input_shape": tuple(data.input_shape),
            "num_steps": data.num_steps,
            "num_outputs": data.num_outputs,
            **sizes,
        }

    first = facts(datas[0])
    for seed, data in zip(seeds[1:], datas[1:]):
        for what, value in facts(data).items():
            if value != first[what]:
                raise ConfigError(
                    f"trials={len(seeds)}: the data of seed {seed} has {what} {value}, that of seed {seeds[0]} "
                    f"{first[what]}; trials trained together need data of the same shapes and split sizes "
                    f"(or run the seeds separately: -m seed={','.join(map(str, seeds))} trials=1)"
                )


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
            f"task.hidden_sizes, task.num_steps, trainer.batch_size or trainer.test_batch_size)"
        )
    per_trial = need / trials
    per_trial = f"{per_trial / 2**20:.0f} MiB" if per_trial >= 2**20 else f"{per_trial / 2**10:.0f} KiB"
    raise ConfigError(
        f"trials={trials}: needs about {shown} ({per_trial} per trial), "
        f"{free / 2**30:.1f} GiB is free on {device.type}; use trials={fit} or fewer, or a smaller batch"
    )


def _listed(values) -> str:
    return "[" + ", ".join(str(v) for v in values) + "]"
