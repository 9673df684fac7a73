"""What every benchmark shares: the shapes, the input batch, the optimizer, the weight scale,
memory readings, rows taking turns, and the JSON they write."""

from __future__ import annotations

import json
import time

SHAPES = {
    "mnist": {"sizes": [784, 800, 10], "frame": None, "steps": 100, "batch": 16, "spikes_per_sample": 150, "t_max": 24},
    "nmnist": {
        "sizes": [2312, 800, 10],
        "frame": (2, 34, 34),
        "steps": 300,
        "batch": 16,
        "spikes_per_sample": 3000,
        "t_max": 300,
    },
    # Fig. 6: random spike-train matching (trials rows only)
    "fig6": {
        "sizes": [10, 50, 50, 5],
        "frame": None,
        "steps": 100,
        "batch": 1,
        "spikes_per_sample": 10,
        "t_max": 100,
        "loss": "spike_train",
        "trials": 100,
    },
    # seconds-long smoke test of the script itself (tests/bench/test_bench.py); not a benchmark
    "tiny": {"sizes": [40, 30, 4], "frame": None, "steps": 20, "batch": 4, "spikes_per_sample": 12, "t_max": 10},
}
ENGINE_METHODS = ("activation", "activation_rnn", "timing", "antlr")
#: weights start at PyTorch's default times this, so that the hidden and output layers fire as
#: they do in training (at 1x the hidden layer is silent on these inputs); every row uses it.
WEIGHT_SCALE = 5.0
BASELINES = ("reference", "snntorch")


def make_batch(shape: dict, seed: int = 0):
    """Input spikes [B, T, N] (each input neuron fires at most once) and labels [B]."""
    import torch

    g = torch.Generator().manual_seed(seed)
    batch, steps, n_in = shape["batch"], shape["steps"], shape["sizes"][0]
    x = torch.zeros(batch, steps, n_in)
    for b in range(batch):
        neurons = torch.randperm(n_in, generator=g)[: shape["spikes_per_sample"]]
        times = torch.randint(0, shape["t_max"], (neurons.numel(),), generator=g)
        x[b, times, neurons] = 1.0
    labels = torch.randint(0, shape["sizes"][-1], (batch,), generator=g)
    if shape["frame"] is not None:
        x = x.view(batch, steps, *shape["frame"])
    return x, labels


def _status_mb(key: str) -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


def rss_mb() -> float:
    """Resident memory now (MB)."""
    return _status_mb("VmRSS")


def peak_rss_mb() -> float:
    """Peak resident memory of this process image (MB). VmHWM, unlike getrusage's ru_maxrss,
    does not carry over the parent's peak into a freshly started subprocess."""
    return _status_mb("VmHWM")


def make_adam(params, lr: float = 1e-3):
    """Adam for every row alike: torch's fused kernel where this torch has it for the device."""
    import torch

    params = list(params)
    try:
        return torch.optim.Adam(params, lr=lr, fused=True)
    except (RuntimeError, TypeError):
        return torch.optim.Adam(params, lr=lr)


def scale_weights(weights) -> None:
    import torch

    with torch.no_grad():
        for w in weights:
            w.mul_(WEIGHT_SCALE)


def take_turns(fns: dict, iters: int, max_seconds: float, block: int) -> tuple:
    """The step functions ``fns`` take turns, ``block`` steps a turn (all but the first timed; every
    step with ``block=1``), for ``iters`` rounds or until ``max_seconds`` of steps are spent (at
    least 2 timed steps each). Returns ``({key: median ms per step}, timed steps per key)``."""
    for fn in fns.values():
        fn()
    times = {key: [] for key in fns}
    spent = 0.0
    for _ in range(iters):
        for key, fn in fns.items():
            for index in range(block):
                t0 = time.perf_counter()
                fn()
                elapsed = time.perf_counter() - t0
                spent += elapsed
                if index > 0 or block == 1:
                    times[key].append(elapsed)
        if spent > max_seconds and min(len(v) for v in times.values()) >= 2:
            break
    return {key: 1000.0 * sorted(v)[len(v) // 2] for key, v in times.items()}, min(len(v) for v in times.values())


def sync(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def write_json(path, payload: dict) -> None:
    """``--json PATH``: write ``payload`` there (nothing without a path)."""
    if path:
        with open(path, "w") as f:
            json.dump(payload, f, indent=2)
        print(f"wrote {path}")


def cpu_payload(results: dict, key: str) -> dict:
    """The JSON of the CPU tables: the shapes timed, the thread count and ``results`` under ``key``."""
    import torch

    return {"shapes": {k: SHAPES[k] for k in results}, "threads": torch.get_num_threads(), key: results}
