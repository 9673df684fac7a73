"""The checks run on a composed config before any data is read: what the types of ``schema.py``
cannot express (names, rule/loss/task pairings, ranges), one function per config group.

``validate(cfg)`` raises ``ConfigError`` with one line naming the key, the value and what is
accepted. The helpers here that build engine objects from a config (``neuron_params``,
``rule_kwargs``, ``task_shape``) import torch; ``antlr_exp.config`` loads this module on first use.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import math
import netrc
import os
from typing import Any

import torch
from omegaconf import DictConfig, ListConfig, OmegaConf

from ..engine.backends import requested
from ..engine.neuron import NeuronParams
from ..engine.rules import RuleConfig, check_rule_loss
from ..engine.spikes import DECISIONS
from ..errors import ConfigError
from ..training.metrics import metric_names as split_metric_names

#: What each task's items carry as target, and so which losses it can be trained with (the
#: spike-train loss also takes labels, turned into spike trains by ``loss.label_steps``).
TASK_TARGET_KIND = {
    "matching": "spike_train",
    "mnist": "label",
    "nmnist": "label",
    "shd": "label",
    "ssc": "label",
    "custom": "label",
}
LOSS_TARGET_KIND = {"count": "label", "latency": "label", "spike_train": "spike_train"}
DEVICES = ("auto", "cpu", "cuda")
LOGGERS = ("csv", "wandb", "tensorboard")
WANDB_MODES = ("offline", "online", "disabled")
MONITOR_MODES = ("min", "max")
DTYPE_NAMES = ("float32", "float64")
PENALTY_WINDOWS = ("full", "early_stop")


# ---------------------------------------------------------------------------------------------
# Checks that types cannot express


def _accepted(key: str, value: Any, accepted) -> None:
    if value not in accepted:
        raise ConfigError(f"{key}={value!r} is not accepted; accepted values: {', '.join(map(str, accepted))}")


def _number(
    key: str,
    value: Any,
    *,
    low: float,
    high: float = math.inf,
    low_open: bool = False,
    high_open: bool = False,
    optional: bool = False,
) -> None:
    """``value`` must be a finite number in the interval (None too when ``optional``)."""
    if value is None and optional:
        return
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if ok:
        ok = (value > low if low_open else value >= low) and (value < high if high_open else value <= high)
    if not ok:
        interval = f"{'(' if low_open else '['}{low:g}, {high:g}{')' if high_open or high == math.inf else ']'}"
        extra = " or null" if optional else ""
        raise ConfigError(f"{key}={value!r} is out of range; accepted: a number in {interval}{extra}")


def _positive_int(key: str, value: Any, optional: bool = False) -> None:
    if value is None and optional:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        extra = " or null" if optional else ""
        raise ConfigError(f"{key}={value!r} is not accepted; accepted: an integer >= 1{extra}")


#: torch.manual_seed takes seeds up to 2**64 - 1.
MAX_SEED = 2**64 - 1


def _check_finite_numbers(container: Any, path: str = "") -> None:
    """No inf or NaN anywhere in the config (a learning rate, a lambda, a neuron constant)."""
    if isinstance(container, dict):
        for key, value in container.items():
            _check_finite_numbers(value, f"{path}{key}.")
    elif isinstance(container, list):
        for index, value in enumerate(container):
            _check_finite_numbers(value, f"{path.rstrip('.')}[{index}].")
    elif isinstance(container, float) and not math.isfinite(container):
        raise ConfigError(f"{path.rstrip('.')}={container} is not accepted; accepted: a finite number")


def _check_betas(betas: Any) -> None:
    values = list(betas) if isinstance(betas, (list, tuple)) or OmegaConf.is_list(betas) else [betas]
    if len(values) != 2 or not all(
        isinstance(b, (int, float)) and not isinstance(b, bool) and 0 <= b < 1 for b in values
    ):
        raise ConfigError(
            f"optimizer.betas={_show(betas)} is not accepted; accepted: two numbers in [0, 1), e.g. [0.9, 0.999]"
        )


def wandb_has_credentials() -> bool:
    """An API key in WANDB_API_KEY or in the netrc file ``wandb login`` writes."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    from urllib.parse import urlparse

    host = urlparse(os.environ.get("WANDB_BASE_URL") or "https://api.wandb.ai").hostname
    path = os.environ.get("NETRC") or os.path.expanduser("~/.netrc")
    try:
        return netrc.netrc(path).authenticators(host) is not None
    except (OSError, netrc.NetrcParseError):
        return False


def neuron_params(cfg: DictConfig) -> NeuronParams:
    """The engine's NeuronParams from ``cfg.neuron`` and ``cfg.single_spike`` (validated there)."""
    return NeuronParams(**OmegaConf.to_container(cfg.neuron, resolve=True), single_spike=bool(cfg.single_spike))


def kernels_setting(cfg: DictConfig) -> str:
    """``kernels`` in force for ``cfg`` (the key, else the environment's default); ConfigError
    naming the value where it is none of auto, cpp, triton, python."""
    return requested(cfg.get("kernels"))


def rule_kwargs(cfg: DictConfig) -> dict:
    """Keyword arguments of SpikingNetwork for the gradient rule of ``cfg.method``."""
    kwargs = {"rule": cfg.method.name}
    for key in ("lambda_act", "lambda_tim"):
        if key in cfg.method:
            kwargs[key] = float(cfg.method[key])
    return kwargs


def task_target_kind(task: DictConfig) -> str:
    """What the task's items carry as target: ``label`` or ``spike_train`` (``task=custom``: its
    ``task.options.target_kind``)."""
    if task.name != "custom":
        return TASK_TARGET_KIND[task.name]
    from ..data.custom import TARGET_KINDS

    _accepted("task.options.target_kind", task.options.target_kind, TARGET_KINDS)
    return task.options.target_kind


def metric_names(cfg: DictConfig, split: str) -> tuple:
    """Metrics a run records for ``split`` (what ``trainer.monitor`` and ``optimized_metric`` may name)."""
    hidden = cfg.task.get("hidden_sizes")
    hidden_layers = len(hidden) if isinstance(hidden, ListConfig) else None
    return split_metric_names(split, has_labels=task_target_kind(cfg.task) == "label", hidden_layers=hidden_layers)


def _check_known_keys(node: DictConfig, path: str = "") -> None:
    """Keys added with ``+key=value`` get past Hydra even on a typed node; refuse them here."""
    schema = OmegaConf.get_type(node)
    if dataclasses.is_dataclass(schema):
        known = [f.name for f in dataclasses.fields(schema)]
        for key in node.keys():
            if key not in known:
                raise ConfigError(
                    f"{path}{key} is not a key of {path.rstrip('.') or 'the config'}; accepted keys: {', '.join(known)}"
                )
    for key in node.keys():
        child = node._get_node(key)
        if isinstance(child, DictConfig):
            _check_known_keys(child, f"{path}{key}.")


def _check_label_steps(cfg: DictConfig, task_kind: str) -> None:
    """loss=spike_train: a labelled task needs ``loss.label_steps``; a spike-train task must not set them."""
    loss, task = cfg.loss, cfg.task
    label_steps, other_steps = loss.get("label_steps"), loss.get("other_steps") or []
    if task_kind == "spike_train":
        if label_steps is not None or len(other_steps):
            raise ConfigError(
                f"loss.label_steps={_show(label_steps)}, loss.other_steps={_show(other_steps)}: "
                f"task={task.name} brings its own target spike trains; accepted: label_steps=null, other_steps=[]"
            )
        return
    if label_steps is None or not len(label_steps):
        raise ConfigError(
            f"loss=spike_train with task={task.name} (labels, not spike trains) needs loss.label_steps="
            f"{_show(label_steps)} set: the steps at which the label's output neuron should fire, "
            f"e.g. loss.label_steps=[40] (and loss.other_steps=[] keeps the other outputs silent)"
        )
    _positive_int("task.num_steps", task.num_steps)
    for key, steps in (("label_steps", label_steps), ("other_steps", other_steps)):
        steps = list(steps)
        if any(isinstance(t, bool) or not isinstance(t, int) or not 0 <= t < task.num_steps for t in steps):
            raise ConfigError(
                f"loss.{key}={_show(steps)}: accepted are integer steps in 0..{task.num_steps - 1} "
                f"(task.num_steps={task.num_steps})"
            )
        if len(set(steps)) != len(steps):
            raise ConfigError(f"loss.{key}={_show(steps)}: a step is repeated; accepted: distinct steps")
        if cfg.single_spike and len(steps) > 1:
            raise ConfigError(
                f"loss.{key}={_show(steps)} asks for {len(steps)} spikes but single_spike=true allows at most "
                f"one per neuron; accepted: at most one step"
            )


def _int_in(key: str, value: Any, low: int, high: int, why: str = "") -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ConfigError(f"{key}={value!r} is not accepted{why}; accepted: an integer in {low}..{high}")


def _check_task_options(task: DictConfig) -> None:
    """The task's own options, as its data loader would check them (with the full key names,
    before any folder or data)."""
    from ..data.encoding import PIXEL_MAX
    from ..data.nmnist import FRAME_SIZE

    steps = task.num_steps
    by_steps = f" with task.num_steps={steps}"
    if task.name == "matching":
        for key in ("num_inputs", "num_outputs"):
            _positive_int(f"task.options.{key}", task.options[key])
        for key in ("input_spikes", "target_spikes"):  # spikes per train, each at a distinct step
            _int_in(f"task.options.{key}", task.options[key], 0, steps, by_steps)
    elif task.name == "mnist":
        _int_in(
            "task.options.t_max",
            task.options.t_max,
            1,
            min(PIXEL_MAX, steps),
            by_steps if task.options.t_max > steps else "",
        )
    elif task.name == "nmnist":
        _int_in("task.num_steps", steps, 1, (2**31 - 1) // FRAME_SIZE)
        _positive_int("task.options.bin_us", task.options.bin_us)
    elif task.name in ("shd", "ssc"):
        from ..data.shd import CHANNELS

        _int_in("task.num_steps", steps, 1, (2**31 - 1) // CHANNELS)
        _positive_int("task.options.bin_us", task.options.bin_us)
    elif task.name == "custom":
        from ..data.custom import loader_arguments, resolve_loader

        task_target_kind(task)
        function = resolve_loader(task.options.loader)  # the module imports and names a function
        loader_arguments(function, task.options.loader, OmegaConf.to_container(task.options.kwargs, resolve=True))


def task_shape(cfg: DictConfig) -> tuple:
    """``(inputs, outputs)`` of the task's network, from the config alone (what its data gives);
    None for ``task=custom``, whose sizes only its data tells."""
    from ..data.mnist import IMAGE_SIZE, NUM_CLASSES
    from ..data.nmnist import FRAME_SIZE

    if cfg.task.name == "custom":
        return None
    if cfg.task.name in ("shd", "ssc"):
        from ..data.shd import CHANNELS, SHD, SSC

        return CHANNELS, (SHD if cfg.task.name == "shd" else SSC).num_classes
    if cfg.task.name == "matching":
        return int(cfg.task.options.num_inputs), int(cfg.task.options.num_outputs)
    if cfg.task.name == "mnist":
        return IMAGE_SIZE * IMAGE_SIZE, NUM_CLASSES
    return FRAME_SIZE, NUM_CLASSES


def _show(value: Any) -> str:
    if value is None:
        return "null"
    if OmegaConf.is_config(value):
        value = OmegaConf.to_container(value)
    return str(list(value)) if isinstance(value, (list, tuple)) else str(value)


def _check_structure(cfg: DictConfig) -> None:
    """No unknown key, no missing value, no inf or NaN anywhere."""
    _check_known_keys(cfg)
    missing = sorted(OmegaConf.missing_keys(cfg))
    if missing:
        raise ConfigError(f"{missing[0]} has no value; set it, e.g. {missing[0]}=<value>")
    _check_finite_numbers(OmegaConf.to_container(cfg, resolve=True))


def _check_top_level(cfg: DictConfig) -> None:
    """The top-level keys: seed, task (by name), device, kernels, trials, dtype, resume/evaluate."""
    if isinstance(cfg.seed, bool) or not isinstance(cfg.seed, int) or not 0 <= cfg.seed <= MAX_SEED:
        raise ConfigError(f"seed={cfg.seed} is not accepted; accepted: an integer in [0, 2**64 - 1]")
    _accepted("task", cfg.task.name, tuple(TASK_TARGET_KIND))
    _accepted("device", cfg.device, DEVICES)
    kernels_setting(cfg)
    _positive_int("trials", cfg.trials)
    _accepted("dtype", cfg.dtype, DTYPE_NAMES)
    if cfg.trials > 1:
        for refused, reason in (
            (cfg.logger.name == "wandb", "logger=wandb (one wandb run per process); use logger=csv"),
            (cfg.trainer.record_gradients, "trainer.record_gradients=true; use trials=1"),
            (bool(cfg.evaluate), "evaluate=; evaluate one trial's folder with trials=1"),
        ):
            if refused:
                raise ConfigError(f"trials={cfg.trials} cannot be combined with {reason}")
    if cfg.resume and cfg.evaluate:
        raise ConfigError(f"resume=true with evaluate={cfg.evaluate}: choose one (resume continues training)")


def _check_logger(logger: DictConfig) -> None:
    """The logger, and the package (and credentials) it needs."""
    _accepted("logger", logger.name, LOGGERS)
    if logger.name == "wandb":
        _accepted("logger.mode", logger.mode, WANDB_MODES)
        if importlib.util.find_spec("wandb") is None:
            raise ConfigError(
                "logger=wandb needs the wandb package, which is not installed: "
                "pip install 'antlr-exp[wandb]', or use logger=csv"
            )
        if logger.mode == "online" and not wandb_has_credentials():
            raise ConfigError(
                "logger.mode=online needs wandb credentials, and none were found (WANDB_API_KEY, "
                "or `wandb login`); accepted here: logger.mode=offline or disabled"
            )
    if logger.name == "tensorboard" and importlib.util.find_spec("tensorboard") is None:
        raise ConfigError(
            "logger=tensorboard needs the tensorboard package, which is not installed: "
            "pip install 'antlr-exp[tensorboard]', or use logger=csv"
        )


def _check_method(cfg: DictConfig) -> None:
    """The gradient rule: its pairing with the loss, its lambdas, the timing rule's penalty."""
    method, loss, trainer = cfg.method, cfg.loss, cfg.trainer
    check_rule_loss(method.name, loss.name, *(float(method[k]) for k in ("lambda_act", "lambda_tim") if k in method))
    RuleConfig(**rule_kwargs(cfg))  # the engine checks the lambdas (as SpikingNetwork does)
    if "no_spike_penalty" in method:
        _number("method.no_spike_penalty", method.no_spike_penalty, low=0.0)
    if "penalty_window" in method:
        _accepted("method.penalty_window", method.penalty_window, PENALTY_WINDOWS)
        if method.penalty_window == "early_stop" and not (loss.name == "latency" and trainer.train_early_stop):
            raise ConfigError(
                f"method.penalty_window=early_stop with loss={loss.name}, trainer.train_early_stop="
                f"{str(trainer.train_early_stop).lower()}: silence is counted up to the training early stop, "
                f"which only the latency loss with trainer.train_early_stop=true has; accepted here: full"
            )


def _check_loss(cfg: DictConfig) -> None:
    """The loss: its decision, its pairing with the task's targets, its values."""
    loss, task = cfg.loss, cfg.task
    _accepted("loss.decision", loss.decision, DECISIONS)
    task_kind, loss_kind = task_target_kind(task), LOSS_TARGET_KIND[loss.name]
    if loss.name == "spike_train":
        _check_label_steps(cfg, task_kind)
    elif task_kind != loss_kind:
        fitting = [name for name, kind in LOSS_TARGET_KIND.items() if kind == task_kind]
        raise ConfigError(
            f"loss={loss.name} needs {loss_kind.replace('_', ' ')} targets but task={task.name} gives "
            f"{task_kind.replace('_', ' ')} targets; accepted losses for task={task.name}: {', '.join(fitting)}"
        )
    if loss.name == "count":
        _number("loss.n_true", loss.n_true, low=0.0)
        _number("loss.n_false", loss.n_false, low=0.0)
        if cfg.single_spike and max(loss.n_true, loss.n_false) > 1:
            raise ConfigError(
                f"loss.n_true={loss.n_true:g}, loss.n_false={loss.n_false:g} cannot be reached with "
                f"single_spike=true (each neuron fires at most once); accepted: targets in [0, 1]"
            )
    elif loss.name == "spike_train":
        _number("loss.decay", loss.decay, low=0.0, high=1.0, low_open=True, high_open=True)
    else:
        _number("loss.beta", loss.beta, low=0.0, low_open=True)
        _number("loss.lambda_ns", loss.lambda_ns, low=0.0)


def _check_task(task: DictConfig) -> None:
    """The task's steps, hidden layers and options."""
    _positive_int("task.num_steps", task.num_steps)
    if not task.hidden_sizes:
        raise ConfigError("task.hidden_sizes=[] is not accepted; accepted: a list of integers >= 1, e.g. [800]")
    for index, size in enumerate(task.hidden_sizes):
        _positive_int(f"task.hidden_sizes[{index}]", size)
    _check_task_options(task)


def _check_neuron(cfg: DictConfig) -> None:
    """The neuron's values, as the engine checks them."""
    neuron_params(cfg)


def _check_trainer(cfg: DictConfig) -> None:
    """Batches, the run's length, validation points, the learning-rate decay, the monitor."""
    trainer = cfg.trainer
    for key in ("batch_size", "test_batch_size"):
        _positive_int(f"trainer.{key}", trainer[key])
    for key in ("max_epochs", "max_steps", "val_every_n_steps", "lr_decay_epochs"):
        _positive_int(f"trainer.{key}", trainer[key], optional=True)
    if trainer.max_epochs is None and trainer.max_steps is None:
        raise ConfigError(
            "trainer.max_epochs=null and trainer.max_steps=null: the run would never end; set one of them"
        )
    _number("trainer.lr_decay_factor", trainer.lr_decay_factor, low=0.0, high=1.0, low_open=True)
    _accepted("trainer.monitor", trainer.monitor, metric_names(cfg, "val"))
    _accepted("trainer.monitor_mode", trainer.monitor_mode, MONITOR_MODES)


def _check_optimizer(optimizer: DictConfig) -> None:
    """The optimizer's name and values."""
    _accepted("optimizer", optimizer.name, ("adam",))
    _number("optimizer.lr", optimizer.lr, low=0.0, low_open=True)
    _check_betas(optimizer.betas)
    _number("optimizer.weight_decay", optimizer.weight_decay, low=0.0)
    _number("optimizer.eps", optimizer.eps, low=0.0, low_open=True)
    _number("optimizer.grad_clip_value", optimizer.grad_clip_value, low=0.0, low_open=True, optional=True)
    _number("optimizer.grad_clip_norm", optimizer.grad_clip_norm, low=0.0, low_open=True, optional=True)


def _check_data(data: DictConfig) -> None:
    """How much of the data a run reads."""
    for key in ("limit_train", "limit_test"):
        _positive_int(f"data.{key}", data[key], optional=True)


def _check_outcome(cfg: DictConfig) -> None:
    """What the run reports to a sweeper, and whether the device asked for is here."""
    if cfg.optimized_metric is not None:
        _accepted("optimized_metric", cfg.optimized_metric, metric_names(cfg, "val") + metric_names(cfg, "test"))
    if cfg.device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device=cuda but no CUDA device is available here; accepted here: auto, cpu")


def validate(cfg: DictConfig) -> None:
    """Check a composed config; raise ConfigError (one line: key, value, accepted) on the first
    problem. Reads no data and builds nothing heavy."""
    _check_structure(cfg)
    _check_top_level(cfg)
    _check_logger(cfg.logger)
    _check_method(cfg)
    _check_loss(cfg)
    _check_task(cfg.task)
    _check_neuron(cfg)
    _check_trainer(cfg)
    _check_optimizer(cfg.optimizer)
    _check_data(cfg.data)
    _check_outcome(cfg)
