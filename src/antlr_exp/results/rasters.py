"""``antlr-plot --raster RUN``: a trained network's spikes on a few samples, layer by layer.

One column per sample; one row per layer (the input, each hidden layer, the output), all on the
sample's time axis (steps): a dot per spike at (step, neuron). The output row marks the label (a
band at the label's neuron; a spike-train target's spikes as open circles) and the decision (a
diamond at the decided neuron and the decision step; a dotted line at that step through every
row). With traces, one more row per spiking layer: the membrane potential V of a few of its
neurons (the output's label and decided neuron first, then the ones that fire most on the
sample, the lowest index first on ties) and the threshold theta.

:func:`record` runs the network (torch); :func:`raster_figure` draws what it recorded
(matplotlib).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

#: membrane potentials drawn per spiking layer with traces
TRACED = 3


@dataclass
class SampleRecord:
    """One sample's activity: ``spikes[l]`` bool [T, N_l] (l = 0 the input), ``potentials[l]``
    float [T, N_{l+1}] per spiking layer, its label (a class, or a target spike train [T, O]),
    the decided class (-1: no output fired) and the decision step."""

    spikes: list
    potentials: list
    label: object
    decision: int
    decision_step: int
    names: list = field(default_factory=list)


def record(network, inputs, targets, decision: str, traces: bool = False) -> list:
    """Run ``network`` (a plain one, not stacked) on ``inputs`` [B, T, ...] and keep, per sample,
    the spikes of every layer (its forward), the decision and its step, and with ``traces`` the
    potentials of every spiking layer (the same kernels, run layer by layer)."""
    import torch

    from ..engine.spikes import decide, decision_steps

    flat = inputs.reshape(inputs.shape[0], inputs.shape[1], -1).to(network.layers[0].weight.dtype)
    potentials = []
    with torch.no_grad():
        out = network(flat)
        decided = decide(out.output_spikes, decision)
        steps = decision_steps(out.output_spikes, decision)
        s = flat
        for layer in network.layers if traces else []:
            s, _, potential, _, _ = layer.simulate(s)
            potentials.append(potential.transpose(0, 1))
    spikes = [flat != 0, *(x > 0 for x in out.spikes)]
    names = ["input", *(f"hidden {i}" for i in range(1, len(network.layers))), "output"]
    samples = []
    for b in range(flat.shape[0]):
        target = targets[b]
        label = int(target) if target.dim() == 0 else target.cpu().numpy() > 0
        samples.append(
            SampleRecord(
                [x[b].cpu().numpy() for x in spikes],
                [v[b].double().cpu().numpy() for v in potentials],
                label,
                int(decided[b]),
                int(steps[b]),
                names,
            )
        )
    return samples


def traced_neurons(spikes, first: tuple = (), count: int = TRACED) -> list:
    """``count`` neurons of a layer on a sample (``spikes`` [T, N]): those of ``first`` (the
    output's label and decided neuron), then the ones that fire most, the lower index first on ties."""
    totals = spikes.sum(axis=0)
    order = sorted(range(len(totals)), key=lambda j: (-int(totals[j]), j))
    chosen = [j for j in first if isinstance(j, int) and 0 <= j < len(totals)]
    return list(dict.fromkeys(chosen + order))[:count]


def raster_figure(samples: list, theta: float, traces: bool = False, title: Optional[str] = None):
    """The figure of :func:`record`'s samples (see the module's docstring). Each raster's dots are
    one scatter labelled ``spikes`` with offsets (step, neuron)."""
    import matplotlib.pyplot as plt

    names = samples[0].names
    layers = len(names)
    rows = layers + (layers - 1 if traces else 0)
    sizes = [spikes.shape[1] for spikes in samples[0].spikes]
    ratios = [1.0 + min(n, 800) / 200 for n in sizes] + ([1.6] * (layers - 1) if traces else [])
    figure, grid = plt.subplots(
        rows,
        len(samples),
        figsize=(4.2 * len(samples), sum(ratios) * 1.1 + 0.8),
        sharex=True,
        squeeze=False,
        gridspec_kw={"height_ratios": ratios},
    )
    for column, sample in enumerate(samples):
        axes = grid[:, column]
        for row, spikes in enumerate(sample.spikes):
            _raster(axes[row], spikes, sample.names[row], sizes[row], show_name=column == 0)
        _mark_label_and_decision(axes[layers - 1], sample)
        for ax in axes[:layers] if sample.decision >= 0 else []:
            ax.axvline(sample.decision_step, color="tab:red", linestyle=":", linewidth=1.0)
        if traces:
            for index, potential in enumerate(sample.potentials):
                first = (sample.label, sample.decision) if index == layers - 2 else ()
                neurons = traced_neurons(sample.spikes[index + 1], first)
                _traces(axes[layers + index], potential, neurons, sample.names[index + 1], theta)
        label = sample.label if isinstance(sample.label, int) else "spike-train target"
        decided = "no output spike" if sample.decision < 0 else f"{sample.decision} at step {sample.decision_step}"
        axes[0].set_title(f"label {label}, decision {decided}", fontsize=9)
        axes[-1].set_xlabel("time step")
    steps = samples[0].spikes[0].shape[0]
    grid[0, 0].set_xlim(-0.5, steps - 0.5)
    if title:
        figure.suptitle(title, fontsize=10)
    figure.tight_layout()
    return figure


def _raster(ax, spikes, name: str, size: int, show_name: bool) -> None:
    from matplotlib.ticker import MaxNLocator

    steps, neurons = spikes.nonzero()
    ax.scatter(
        steps, neurons, s=4 if size > 100 else 10, marker="|" if size > 100 else "o", color="black", label="spikes"
    )
    ax.set_ylim(-0.5, size - 0.5)
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    if show_name:
        ax.set_ylabel(f"{name}\n(neuron)", fontsize=8)
    ax.tick_params(labelsize=7)


def _mark_label_and_decision(ax, sample: SampleRecord) -> None:
    if isinstance(sample.label, int):
        ax.axhspan(sample.label - 0.4, sample.label + 0.4, color="tab:green", alpha=0.25, label="label")
    else:  # a spike-train target: its spikes
        steps, neurons = sample.label.nonzero()
        ax.scatter(steps, neurons, s=40, facecolors="none", edgecolors="tab:green", label="target")
    if sample.decision >= 0:
        ax.scatter([sample.decision_step], [sample.decision], s=60, marker="D", color="tab:red", label="decision")


def _traces(ax, potential, neurons: list, name: str, theta: float) -> None:
    for neuron in neurons:
        ax.plot(range(potential.shape[0]), potential[:, neuron], linewidth=1.0, label=f"{name} neuron {neuron}")
    ax.axhline(theta, color="grey", linestyle="--", linewidth=0.8, label="theta")
    ax.set_ylabel(f"V, {name}", fontsize=8)
    ax.tick_params(labelsize=7)
    ax.legend(fontsize=6, loc="upper right")
