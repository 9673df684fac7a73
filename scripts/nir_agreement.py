"""How often a run's NIR export spikes as the run's network does, on its own samples.

    python scripts/nir_agreement.py RUN [--samples N] [--split test] [--trial K]

The network is converted as ``antlr-export RUN --nir`` converts it; the graph is then simulated
from NIR's CubaLIF equations (forward Euler at the graph's dt, the current first, a spike where
v > v_threshold, then v = v_reset) and compared with the network's forward, sample by sample:
every layer's spike trains, the output layer's, every neuron's first spike and the decision. It
also counts the samples on which no neuron fires twice, where the two must agree.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
from torch.utils.data import DataLoader

from antlr_exp import load_run
from antlr_exp.engine.spikes import decide
from antlr_exp.export.nir_graph import to_nir

LABELS = {
    "every layer": "the same spike trains in every layer",
    "output layer": "the same output spike trains",
    "first spikes": "the same first spike step of every neuron",
    "first spikes, first layer": "the same first spike step of every neuron of the first hidden layer",
    "decision": "the same decision",
    "once": "no neuron of the network fires twice",
    "once in both": "no neuron fires twice in the network nor in the graph",
    "agree there": "of those, the same spike trains in every layer",
}


def simulate(graph, x: np.ndarray) -> list:
    """Spikes [B, T, N] of each CubaLIF node of ``graph`` (a chain) for inputs ``x`` [B, T, N_in]."""
    import nir

    dt = float(graph.metadata["dt"])
    following = dict(graph.edges)
    chain, name = [], following["input"]
    while name != "output":
        chain.append(graph.nodes[name])
        name = following[name]
    states = [[0.0, 0.0] for _ in chain]
    trains = [[] for node in chain if isinstance(node, nir.CubaLIF)]
    for t in range(x.shape[1]):
        signal, layer = x[:, t], 0
        for node, state in zip(chain, states):
            if isinstance(node, nir.Affine):
                signal = signal @ node.weight.T.astype(np.float64) + node.bias
                continue
            state[0] = state[0] + dt / node.tau_syn * (node.w_in * signal - state[0])
            state[1] = state[1] + dt / node.tau_mem * (node.v_leak - state[1] + node.r * state[0])
            spikes = state[1] > node.v_threshold
            state[1] = np.where(spikes, node.v_reset, state[1])
            trains[layer].append(spikes)
            signal, layer = spikes.astype(np.float64), layer + 1
    return [np.stack(train, axis=1) for train in trains]


def first_steps(spikes: np.ndarray) -> np.ndarray:
    """First spike step of every neuron, [B, N] from [B, T, N]; T where it never fired."""
    fired = spikes.any(axis=1)
    return np.where(fired, spikes.argmax(axis=1), spikes.shape[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run")
    parser.add_argument("--samples", type=int, default=1000)
    parser.add_argument("--split", choices=("train", "val", "test"), default="test")
    parser.add_argument("--trial", type=int)
    args = parser.parse_args()
    loaded = load_run(args.run, args.trial)
    net = loaded.network.double()
    graph = to_nir(net, dt=1e-3)
    dataset = getattr(loaded.data.load(), args.split)
    counts = dict.fromkeys(["samples", *LABELS], 0)
    decision = loaded.config.loss.decision
    for x, _ in DataLoader(dataset, batch_size=100):
        if counts["samples"] >= args.samples:
            break
        x = x[: args.samples - counts["samples"]]
        x = x.reshape(x.shape[0], x.shape[1], -1).double()
        with torch.no_grad():
            ours = [s.numpy() > 0 for s in net(x).spikes]
        theirs = simulate(graph, x.numpy())
        same = np.stack([(a == b).all(axis=(1, 2)) for a, b in zip(ours, theirs)]).all(axis=0)  # [B]
        first = np.stack([(first_steps(a) == first_steps(b)).all(axis=1) for a, b in zip(ours, theirs)])  # [L, B]
        once = np.stack([(a.sum(axis=1) <= 1).all(axis=1) for a in ours]).all(axis=0)
        both = once & np.stack([(b.sum(axis=1) <= 1).all(axis=1) for b in theirs]).all(axis=0)
        decided = [decide(torch.from_numpy(spikes[-1]).double(), decision) for spikes in (ours, theirs)]
        counts["samples"] += x.shape[0]
        counts["every layer"] += int(same.sum())
        counts["output layer"] += int((ours[-1] == theirs[-1]).all(axis=(1, 2)).sum())
        counts["first spikes"] += int(first.all(axis=0).sum())
        counts["first spikes, first layer"] += int(first[0].sum())
        counts["decision"] += int((decided[0] == decided[1]).sum())
        counts["once"] += int(once.sum())
        counts["once in both"] += int(both.sum())
        counts["agree there"] += int((both & same).sum())
    n = counts["samples"]
    cfg = loaded.config
    print(f"{cfg.task.name} / {cfg.method.name}, single_spike={cfg.single_spike}, {n} {args.split} samples:")
    for key, label in LABELS.items():
        print(f"  {label}: {counts[key]} ({100 * counts[key] / n:.1f} %)")


if __name__ == "__main__":
    main()
