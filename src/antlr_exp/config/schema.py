"""Typed schemas for the Hydra configs in ``conf/``.

The schemas give every key its type and nothing else: all values, defaults included, live in the
YAML files of ``conf/`` (one source of truth). Each group option pulls its schema in through its
defaults list (``- /schema_method_antlr@_here_``), so a misspelt key (``method.lamda_act=2``), a
key the chosen option does not have (``method=timing method.lambda_act=2``) or a value of the
wrong type (``trainer.max_steps=ten``) fails at composition instead of being ignored.

Imports no torch.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING


@dataclass
class MethodConfig:
    name: str = MISSING


@dataclass
class AntlrMethodConfig(MethodConfig):
    lambda_act: float = MISSING
    lambda_tim: float = MISSING


@dataclass
class TimingMethodConfig(MethodConfig):
    no_spike_penalty: float = MISSING  # p of the no-spike weight penalty
    penalty_window: str = MISSING  # full | early_stop: where a neuron's silence is counted


@dataclass
class LossConfig:
    name: str = MISSING
    decision: str = MISSING  # the decision the reported accuracy uses


@dataclass
class CountLossConfig(LossConfig):
    n_true: float = MISSING
    n_false: float = MISSING


@dataclass
class SpikeTrainLossConfig(LossConfig):
    decay: float = MISSING
    # labelled tasks only: the steps at which the label's output neuron (label_steps) and every
    # other output neuron (other_steps) should fire; the target spike trains are made from these
    label_steps: Optional[List[int]] = MISSING
    other_steps: List[int] = MISSING


@dataclass
class LatencyLossConfig(LossConfig):
    beta: float = MISSING
    lambda_ns: float = MISSING  # weight of the no-spike count term; 0 turns it off


@dataclass
class MatchingOptions:
    num_inputs: int = MISSING
    num_outputs: int = MISSING
    input_spikes: int = MISSING
    target_spikes: int = MISSING


@dataclass
class MnistOptions:
    t_max: int = MISSING


@dataclass
class NmnistOptions:
    first_saccade_only: bool = MISSING
    bin_us: int = MISSING
    cache_dir: Optional[str] = MISSING


@dataclass
class SpikingAudioOptions:  # task=shd, task=ssc
    bin_us: int = MISSING
    cache_dir: Optional[str] = MISSING


@dataclass
class CustomOptions:
    loader: str = MISSING  # module:function returning a TaskData (antlr_exp.data.custom)
    kwargs: Dict[str, Any] = MISSING  # its keyword arguments
    target_kind: str = MISSING  # label | spike_train


@dataclass
class TaskConfig:
    name: str = MISSING
    num_steps: int = MISSING
    hidden_sizes: List[int] = MISSING


@dataclass
class MatchingTaskConfig(TaskConfig):
    options: MatchingOptions = field(default_factory=MatchingOptions)


@dataclass
class MnistTaskConfig(TaskConfig):
    options: MnistOptions = field(default_factory=MnistOptions)


@dataclass
class NmnistTaskConfig(TaskConfig):
    options: NmnistOptions = field(default_factory=NmnistOptions)


@dataclass
class SpikingAudioTaskConfig(TaskConfig):
    options: SpikingAudioOptions = field(default_factory=SpikingAudioOptions)


@dataclass
class CustomTaskConfig(TaskConfig):
    options: CustomOptions = field(default_factory=CustomOptions)


@dataclass
class NeuronConfig:
    alpha_I: float = MISSING
    alpha_V: float = MISSING
    beta_I: float = MISSING
    beta_V: Any = MISSING  # "auto" or a number
    beta_bias: Any = MISSING  # "auto" or a number
    theta: float = MISSING
    surrogate: str = MISSING
    surrogate_a: float = MISSING
    surrogate_b: float = MISSING
    vstar_min: float = MISSING


@dataclass
class OptimizerConfig:
    name: str = MISSING
    lr: float = MISSING
    betas: List[float] = MISSING
    weight_decay: float = MISSING
    eps: float = MISSING
    amsgrad: bool = MISSING
    grad_clip_value: Optional[float] = MISSING  # every gradient element clipped to [-v, v]
    grad_clip_norm: Optional[float] = MISSING  # then each trial's gradient scaled to norm <= v


@dataclass
class TrainerConfig:
    max_epochs: Optional[int] = MISSING
    max_steps: Optional[int] = MISSING
    batch_size: int = MISSING
    test_batch_size: int = MISSING
    val_every_n_steps: Optional[int] = MISSING  # None: validate at the end of every epoch
    lr_decay_epochs: Optional[int] = MISSING  # None: constant learning rate
    lr_decay_factor: float = MISSING
    monitor: str = MISSING  # validation metric that picks the best checkpoint
    monitor_mode: str = MISSING
    progress_bar: bool = MISSING
    record_gradients: bool = MISSING  # save every step's flattened gradient (before clipping) to gradients.pt
    train_early_stop: bool = MISSING  # latency loss: stop simulating a training step once every output fired


@dataclass
class LoggerConfig:
    name: str = MISSING


@dataclass
class WandbLoggerConfig(LoggerConfig):
    project: str = MISSING
    entity: Optional[str] = MISSING
    mode: str = MISSING
    group: Optional[str] = MISSING
    run_name: Optional[str] = MISSING
    tags: List[str] = MISSING


@dataclass
class DataConfig:
    root: Optional[str] = MISSING
    download: bool = MISSING
    limit_train: Optional[int] = MISSING
    limit_test: Optional[int] = MISSING


@dataclass
class Config:
    task: Any = MISSING
    method: Any = MISSING
    loss: Any = MISSING
    logger: Any = MISSING
    neuron: NeuronConfig = MISSING
    optimizer: OptimizerConfig = MISSING
    trainer: TrainerConfig = MISSING
    data: DataConfig = MISSING
    seed: int = MISSING
    trials: int = MISSING  # train seeds seed..seed+trials-1 together as one stacked network
    dtype: str = MISSING  # float32 | float64
    single_spike: bool = MISSING
    device: str = MISSING
    kernels: Optional[str] = MISSING  # auto | cpp | triton | python; None: the environment's default (engine.backends)
    resume: bool = MISSING
    evaluate: Optional[str] = MISSING  # checkpoint to evaluate instead of training
    optimized_metric: Optional[str] = MISSING  # summary key a sweeper (Optuna) optimises


def register_configs() -> None:
    """Put the schemas in Hydra's ConfigStore (idempotent)."""
    cs = ConfigStore.instance()
    cs.store(name="schema", node=Config)
    for group, name, node in (
        ("method", "activation", MethodConfig),
        ("method", "activation_rnn", MethodConfig),
        ("method", "timing", TimingMethodConfig),
        ("method", "antlr", AntlrMethodConfig),
        ("loss", "count", CountLossConfig),
        ("loss", "spike_train", SpikeTrainLossConfig),
        ("loss", "latency", LatencyLossConfig),
        ("task", "matching", MatchingTaskConfig),
        ("task", "mnist", MnistTaskConfig),
        ("task", "nmnist", NmnistTaskConfig),
        ("task", "shd", SpikingAudioTaskConfig),
        ("task", "ssc", SpikingAudioTaskConfig),
        ("task", "custom", CustomTaskConfig),
        ("logger", "csv", LoggerConfig),
        ("logger", "wandb", WandbLoggerConfig),
        ("logger", "tensorboard", LoggerConfig),
    ):
        cs.store(name=f"schema_{group}_{name}", node=node)


register_configs()
