"""The configs: where they live and the resolvers they use (``resolvers``), their typed schemas
(``schema``), and the checks run before any data is read (``validation``).

Importing this package registers the schemas in Hydra's ConfigStore and the OmegaConf resolvers,
and loads no torch: the names of ``validation`` (``validate``, ``neuron_params``, ...) load it on
first use.
"""

from .resolvers import CONF_DIR, LEGACY_VALUES, find_conf_dir, flatten, register_resolvers, with_legacy_values
from .schema import (
    AntlrMethodConfig,
    Config,
    CountLossConfig,
    CustomOptions,
    CustomTaskConfig,
    DataConfig,
    LatencyLossConfig,
    LoggerConfig,
    MatchingOptions,
    MatchingTaskConfig,
    MethodConfig,
    MnistOptions,
    MnistTaskConfig,
    NeuronConfig,
    NmnistOptions,
    NmnistTaskConfig,
    OptimizerConfig,
    SpikeTrainLossConfig,
    SpikingAudioOptions,
    SpikingAudioTaskConfig,
    TaskConfig,
    TimingMethodConfig,
    TrainerConfig,
    WandbLoggerConfig,
    register_configs,
)

#: Names of ``validation`` (which imports torch), loaded on first use.
_VALIDATION_NAMES = (
    "validate",
    "neuron_params",
    "rule_kwargs",
    "task_shape",
    "task_target_kind",
    "metric_names",
    "kernels_setting",
    "wandb_has_credentials",
    "TASK_TARGET_KIND",
    "LOSS_TARGET_KIND",
    "DEVICES",
    "LOGGERS",
    "WANDB_MODES",
    "MONITOR_MODES",
    "DTYPE_NAMES",
    "PENALTY_WINDOWS",
    "MAX_SEED",
)


def __getattr__(name: str):
    if name in _VALIDATION_NAMES:
        from . import validation

        value = getattr(validation, name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'antlr_exp.config' has no attribute {name!r}")


def __dir__():
    return sorted([*globals(), *_VALIDATION_NAMES])
