"""A trained network as a NIR graph: ``input -> fc1 -> lif1 -> ... -> fcL -> lifL -> output``.

Each layer is an ``Affine`` node (the layer's weights [N_out, N_in], bias 0) and a ``CubaLIF``
node. NIR's neurons are continuous in time; a simulator that steps them with forward Euler at
step ``dt`` (``I += dt/tau_syn (w_in x - I)``, then ``v += dt/tau_mem (v_leak - v + r I)``, a spike
where ``v > v_threshold``, then ``v = v_reset``) runs this network's equations when

    tau_syn = dt / (1 - alpha_I)     w_in = beta_I / (1 - alpha_I)
    tau_mem = dt / (1 - alpha_V)     r = beta_V / (1 - alpha_V)
    v_leak = beta_bias * b / (1 - alpha_V)   (the bias: a constant input to V at every step)
    v_threshold = theta, v_reset = 0

The differences that remain are stated in the graph's metadata (``differences``) and named on
export (:func:`differences`): NIR's CubaLIF resets only V on a spike while this neuron resets I
too; NIR has no single-spike restriction; NIR fires where v > v_threshold, this neuron where
V >= theta. Up to a neuron's first spike the two agree exactly, so the exported graph gives the
same spike trains as this network on inputs where no neuron fires twice.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Optional

import numpy as np

from ..errors import ConfigError

#: the time step of one simulation step in seconds, where none is given (N-MNIST's 1 ms bins)
DEFAULT_DT = 1e-3
RESET = (
    "reset: a spike here resets both the membrane potential V and the synaptic current I; "
    "NIR's CubaLIF resets only v, its current decays on"
)
SINGLE_SPIKE = (
    "single spike: this network lets each neuron fire at most once per sample (single_spike=true); "
    "NIR has no such restriction, so a neuron may fire again"
)
NO_SINGLE_SPIKE = "single spike: NIR has no single-spike restriction; this network has none either"
THRESHOLD = "threshold: this neuron fires where V >= theta, NIR's CubaLIF where v > v_threshold"


def _nir():
    try:
        import nir
    except ImportError:
        raise ConfigError("NIR export needs the nir package: pip install 'antlr-exp[nir]'") from None
    return nir


def differences(params) -> list:
    """What differs between this network's neurons (``params``: NeuronParams) and NIR's CubaLIF."""
    return [RESET, SINGLE_SPIKE if params.single_spike else NO_SINGLE_SPIKE, THRESHOLD]


def warnings_for(params) -> list:
    """The differences that can change spikes of this network: the reset always, the single-spike
    restriction where the network has it."""
    return [RESET, *([SINGLE_SPIKE] if params.single_spike else [])]


def check_exportable(network, dt: float) -> None:
    """ConfigError of one line for what NIR's nodes cannot express."""
    if not isinstance(dt, (int, float)) or isinstance(dt, bool) or not math.isfinite(dt) or dt <= 0:
        raise ConfigError(f"dt={dt!r}: accepted: a time step in seconds > 0")
    if network.trials > 1:
        raise ConfigError(
            f"a stacked network of {network.trials} trials: export one trial (load_run(run, trial=k), "
            "or antlr-export RUN --trial k)"
        )
    params = network.params
    for name in ("alpha_I", "alpha_V"):
        if getattr(params, name) >= 1.0:
            raise ConfigError(
                f"neuron.{name}={getattr(params, name)}: a decay of 1 (no leak) has no CubaLIF time constant "
                "(tau = dt / (1 - alpha)); accepted: alpha_I and alpha_V below 1"
            )
    for index, layer in enumerate(network.layers):
        for what, tensor in (("weights", layer.weight), ("biases", layer.bias)):
            if not bool(tensor.detach().isfinite().all()):
                raise ConfigError(f"layer {index + 1}'s {what} are not all finite: nothing to export")


def to_nir(network, dt: float = DEFAULT_DT, metadata: Optional[dict] = None):
    """The NIR graph of ``network`` (a plain, not stacked, SpikingNetwork) at time step ``dt``
    seconds; ``metadata`` is added to the graph's own (see the module's docstring)."""
    nir = _nir()
    check_exportable(network, dt)
    p = network.params
    nodes = {"input": nir.Input(input_type=np.array([network.sizes[0]]))}
    edges, previous = [], "input"
    for index, layer in enumerate(network.layers, start=1):
        weight = layer.weight.detach().cpu().numpy()
        bias = layer.bias.detach().cpu().double().numpy()
        size = weight.shape[0]

        def full(value):
            return np.full(size, value, dtype=np.float64)

        nodes[f"fc{index}"] = nir.Affine(weight=weight, bias=np.zeros(size, dtype=weight.dtype))
        nodes[f"lif{index}"] = nir.CubaLIF(
            tau_syn=full(dt / (1.0 - p.alpha_I)),
            tau_mem=full(dt / (1.0 - p.alpha_V)),
            r=full(float(p.beta_V) / (1.0 - p.alpha_V)),
            v_leak=float(p.beta_bias) * bias / (1.0 - p.alpha_V),
            v_threshold=full(p.theta),
            v_reset=full(0.0),
            w_in=full(p.beta_I / (1.0 - p.alpha_I)),
        )
        edges += [(previous, f"fc{index}"), (f"fc{index}", f"lif{index}")]
        previous = f"lif{index}"
    nodes["output"] = nir.Output(output_type=np.array([network.sizes[-1]]))
    edges.append((previous, "output"))
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata={**graph_metadata(network, dt), **(metadata or {})})


def graph_metadata(network, dt: float) -> dict:
    """What the graph says about itself: the time step, this neuron's constants, the discretisation
    the conversion assumes and the differences from NIR's CubaLIF."""
    from .. import __version__

    p = network.params
    return {
        "source": f"antlr-exp {__version__}",
        "dt": float(dt),
        "num_steps": int(network.num_steps),
        "discretization": (
            "forward Euler at step dt: I[t] = I[t-1] + dt/tau_syn (w_in x[t] - I[t-1]); "
            "v[t] = v[t-1] + dt/tau_mem (v_leak - v[t-1] + r I[t]); spike where v[t] > v_threshold, then v = v_reset"
        ),
        "neuron": (
            "I[t] = alpha_I (1 - S[t-1]) I[t-1] + beta_I W x[t]; "
            "V[t] = alpha_V (1 - S[t-1]) V[t-1] + beta_V I[t] + beta_bias b; S[t] = V[t] >= theta"
        ),
        **{name: float(getattr(p, name)) for name in ("alpha_I", "alpha_V", "beta_I", "beta_V", "beta_bias", "theta")},
        "single_spike": int(bool(p.single_spike)),
        "bias": "a constant input to V: CubaLIF's v_leak = beta_bias b / (1 - alpha_V); the Affine biases are 0",
        "differences": " | ".join(differences(p)),
    }


def write_nir(network, path, dt: float = DEFAULT_DT, metadata: Optional[dict] = None) -> Path:
    """Write :func:`to_nir`'s graph to ``path`` (HDF5, NIR's file format)."""
    graph = to_nir(network, dt, metadata)
    _nir().write(str(path), graph)
    return Path(path)
