"""antlr-exp: train spiking neural networks with activation-based, timing-based and ANTLR gradients.

Library use (the names load on first use, so ``import antlr_exp`` stays cheap)::

    from antlr_exp import SpikingNetwork, NeuronParams, load_task
    from antlr_exp import count_loss, latency_loss, spike_train_loss, no_spike_weight_penalty
    from antlr_exp import load_run  # a trained run's network, config and data settings

``examples/train_own_tensors.py`` trains a network on your own tensors.
"""

from importlib import metadata as _metadata

try:  # the one source of the version is pyproject.toml, through the installed metadata
    __version__ = _metadata.version("antlr-exp")
except _metadata.PackageNotFoundError:  # a source tree on PYTHONPATH without an install
    __version__ = "0+unknown"

#: Public name -> the module that defines it.
_EXPORTS = {
    "SpikingNetwork": "engine.network",
    "NetworkOutput": "engine.spikes",
    "decide": "engine.spikes",
    "NeuronParams": "engine.neuron",
    "load_task": "data",
    "TaskData": "data",
    "count_loss": "engine.losses",
    "count_targets": "engine.losses",
    "label_spike_trains": "engine.losses",
    "latency_loss": "engine.losses",
    "no_spike_count_term": "engine.losses",
    "no_spike_weight_penalty": "engine.losses",
    "spike_train_loss": "engine.losses",
    "load_run": "training.load_run",
    "LoadedRun": "training.load_run",
    "DataSettings": "training.load_run",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str):
    if name in _EXPORTS:
        from importlib import import_module

        value = getattr(import_module(f".{_EXPORTS[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'antlr_exp' has no attribute {name!r}")


def __dir__():
    return sorted([*globals(), *_EXPORTS])
