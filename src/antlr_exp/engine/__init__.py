"""The engine: spiking networks, their gradient rules and losses, and the kernels that run them.

    neuron, surrogate   the neuron's parameters and kernels; the surrogate derivatives
    rules               the gradient rules and which losses each can learn from (no torch)
    synapses            a layer's input as dense rows or events, and its products with weights
    lif                 the LIF time loops and the rules' adjoint maths, in plain PyTorch
    layer               the layer's autograd Function and module
    network, fused      the network and its fused (one-node) backward
    spikes              what a forward returns, decisions and spike counts
    losses              the paper's losses
    backends/           the kernels (cpp, triton, python) behind one select()
    reference/          the per-step oracle the tests check the engine against

Its public names load on first use, so ``antlr_exp.engine.rules`` can be imported without torch.
"""

#: Public name -> the module that defines it.
_EXPORTS = {
    **dict.fromkeys(
        (
            "count_loss",
            "count_targets",
            "label_spike_trains",
            "latency_loss",
            "no_spike_count_term",
            "no_spike_weight_penalty",
            "spike_train_loss",
        ),
        "losses",
    ),
    "SpikingNetwork": "network",
    "NeuronParams": "neuron",
    "RuleConfig": "rules",
    "check_rule_loss": "rules",
    **dict.fromkeys(("NetworkOutput", "decide", "decision_steps", "first_spike_times", "spike_counts"), "spikes"),
    "select": "backends",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        from importlib import import_module

        value = getattr(import_module(f".{_EXPORTS[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'antlr_exp.engine' has no attribute {name!r}")


def __dir__():
    return sorted([*globals(), *_EXPORTS])
