#!/usr/bin/env python
"""Time one full training step (forward, loss, backward, clipping, Adam) per rule, side by side.

Shapes (paper section 4):
  mnist   784-800-10,       T=100, batch 16, latency-coded input, ~150 input spikes per sample
  nmnist  2x34x34-800-10,   T=300, batch 16, binary event frames, ~3,000 nonzeros per sample

Weights start at 5x PyTorch's default so that the layers fire as in training (about 170 hidden
spikes per sample on the MNIST shape, 630 on N-MNIST); every row uses the same weights.

Rows: the engine with each rule (activation and activation_rnn with the count loss 1/0,
timing with the latency loss and the no-spike weight penalty, antlr with latency + no-spike
count term); (a) the per-time-step autograd reference of the tests (activation rule, count
loss); (b) snntorch's ``Synaptic`` neuron (reset to zero) unrolled with BPTT, count loss
(skipped with a message if snntorch is absent: ``pip install -e .[bench]``).

Every row steps with the same optimizer (fused Adam where available) and element-wise clipping.
Rows take turns in one process (load from other processes falls on all rows alike): each turn
runs ``--block`` consecutive steps of a row (default 4) and times all but the first, since
training runs steps back to back and the first step after another row's turn runs on caches that
row evicted (``--block 1`` times single steps in turn, each one cold); each row's peak resident
memory is measured in a fresh subprocess of its own. Prints
ms/iteration (median), peak memory and the ratio of every row to the antlr row; ``--json PATH``
writes them.

Stacked trials (``trials=K``): ``--trials-rows`` times, per rule, one training step of K trials
stacked in one network against one step of a single trial, per trial-iteration, on the ``fig6``
shape (10-50-50-5, T=100, batch 1, spike-train loss against one random target spike per output;
K = 100) and on ``mnist`` (antlr, K = 4, against 4 separate steps). The JSON gives each fig6
rule ``speedup_vs_single`` (single-trial time over stacked time per trial).
``--trials-sweep 1 10 50 100 200`` times K stacked trials for each K given, taking turns, and fits
``step = fixed + K x per_trial``: ``fixed`` is the per-step work every K shares, ``per_trial`` what
one more trial adds, and the speedup over one trial tends to ``ms(K=1) / per_trial`` as K grows.

On a GPU (``--device cuda``, or ``--compare-paths`` on any device) the rows are instead our engine
on each kernel path, ``triton`` (antlr_exp.triton_kernels) and ``pytorch`` (the per-step loop),
then snntorch and, where it and CuPy are installed, SpikingJelly; shapes mnist, nmnist and
``obench``, the open-neuromorphic SNN library benchmark (one Linear + LIF layer of 4096 neurons,
batch 16, T=500, forward and backward). Steps are synchronized with the device; the peak device
memory of one step is reported.

    python scripts/bench.py                 # both shapes
    python scripts/bench.py --shapes mnist --iters 20 --json bench.json
    python scripts/bench.py --spike-train-loss   # the spike-train loss: convolution against O(T)
    python scripts/bench.py --device cuda        # GPU: Triton kernels vs PyTorch path vs snntorch
    python scripts/bench.py --trials-rows --json trials.json   # stacked trials
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

SHAPES = {
    "mnist": {"sizes": [784, 800, 10], "frame": None, "steps": 100, "batch": 16, "spikes_per_sample": 150, "t_max": 24},
    "nmnist": {"sizes": [2312, 800, 10], "frame": (2, 34, 34), "steps": 300, "batch": 16, "spikes_per_sample": 3000, "t_max": 300},
    # Fig. 6: random spike-train matching (trials rows only)
    "fig6": {"sizes": [10, 50, 50, 5], "frame": None, "steps": 100, "batch": 1, "spikes_per_sample": 10, "t_max": 100,
             "loss": "spike_train", "trials": 100},
    # seconds-long smoke test of the script itself (tests/test_bench.py); not a benchmark
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


def _scale_weights(weights) -> None:
    import torch

    with torch.no_grad():
        for w in weights:
            w.mul_(WEIGHT_SCALE)


def engine_step_fn(method: str, shape: dict, x, labels):
    import torch

    from antlr_exp.losses import count_loss, count_targets, latency_loss, no_spike_count_term, no_spike_weight_penalty
    from antlr_exp.network import SpikingNetwork

    torch.manual_seed(0)
    net = SpikingNetwork(shape["sizes"], shape["steps"], rule=method)
    _scale_weights([l.weight for l in net.layers])
    opt = make_adam(net.parameters())
    targets = count_targets(labels, shape["sizes"][-1], 1.0, 0.0)

    def step():
        opt.zero_grad(set_to_none=True)
        out = net(x)
        if method in ("activation", "activation_rnn"):
            loss = count_loss(out.output_spikes, targets)
        elif method == "timing":
            loss = latency_loss(out.output_spikes, out.output_times, labels)
            loss = loss + no_spike_weight_penalty(net, out, 100.0)
        else:
            loss = latency_loss(out.output_spikes, out.output_times, labels) + no_spike_count_term(
                out.output_spikes, labels, 0.1
            )
        loss.backward()
        torch.nn.utils.clip_grad_value_(net.parameters(), 1.0)
        opt.step()

    return step


def stacked_step_fn(method: str, shape: dict, trials: int, seed: int = 0):
    """One training step of ``trials`` stacked trials (trials=1: a plain network), each trial with
    its own input batch; the loss is the sum of the trials' batch means, as antlr-train takes it."""
    import torch

    from antlr_exp.losses import (count_loss, count_targets, latency_loss, no_spike_count_term,
                                  no_spike_weight_penalty, spike_train_loss)
    from antlr_exp.network import SpikingNetwork

    batches = [make_batch(shape, seed + k) for k in range(trials)]
    x = batches[0][0] if trials == 1 else torch.stack([b[0] for b in batches])
    labels = torch.cat([b[1] for b in batches])
    n_out, steps = shape["sizes"][-1], shape["steps"]
    g = torch.Generator().manual_seed(seed + 1)
    # spike-train targets: one spike per output at a random step
    target_trains = torch.zeros(trials * shape["batch"], steps, n_out)
    target_trains.scatter_(1, torch.randint(0, steps, (trials * shape["batch"], 1, n_out), generator=g), 1.0)
    torch.manual_seed(0)
    net = SpikingNetwork(shape["sizes"], steps, rule=method, trials=trials)
    _scale_weights([l.weight for l in net.layers])
    opt = make_adam(net.parameters())
    counts = count_targets(labels, n_out, 1.0, 0.0)

    def step():
        opt.zero_grad(set_to_none=True)
        out = net(x)
        if shape.get("loss") == "spike_train":
            per = spike_train_loss(out.output_spikes, out.output_times, target_trains, reduction="none")
        elif method in ("activation", "activation_rnn"):
            per = count_loss(out.output_spikes, counts, reduction="none")
        else:
            per = latency_loss(out.output_spikes, out.output_times, labels, reduction="none")
            if method == "antlr":
                per = per + no_spike_count_term(out.output_spikes, labels, 0.1, reduction="none")
        loss = per.view(trials, -1).mean(dim=1).sum()
        if method == "timing":
            loss = loss + no_spike_weight_penalty(net, out, 100.0)
        loss.backward()
        torch.nn.utils.clip_grad_value_(net.parameters(), 1.0)
        opt.step()

    return step


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


def time_trial_rows(shape_name: str, methods, iters: int, max_seconds: float, block: int = 1) -> dict:
    """Per rule: ms per step of one trial and of K stacked trials, taking turns in blocks of
    ``block`` steps (all but the first timed, as in :func:`time_rows`); per trial-iteration times
    and ``speedup_vs_single``."""
    import torch

    shape = SHAPES[shape_name]
    trials = shape.get("trials", 4)
    rows = {}
    for method in methods:
        fns = {"single": stacked_step_fn(method, shape, 1), "stacked": stacked_step_fn(method, shape, trials)}
        med, timed = take_turns(fns, iters, max_seconds, block)
        rows[method] = {"trials": trials, "ms_single_step": med["single"], "ms_stacked_step": med["stacked"],
                        "ms_per_trial_iteration": med["stacked"] / trials,
                        "speedup_vs_single": med["single"] * trials / med["stacked"],
                        "iters": timed, "threads": torch.get_num_threads(), "block": block}
    return rows


def time_trials_sweep(shape_name: str, methods, ks, iters: int, max_seconds: float, block: int = 4) -> dict:
    """Per rule: ms per training step of K stacked trials for each K in ``ks``, the K taking turns
    (``block`` steps a turn, all but the first timed), and the least-squares line
    ``step = fixed + K * per_trial`` through the medians. ``fixed`` is the per-step work that any K
    shares (interpreter, autograd, optimizer calls); ``per_trial`` what one more trial adds. The
    speedup over a single trial tends to ``ms(K=1) / per_trial`` as K grows."""
    import torch

    ks = sorted(set(ks))
    shape = SHAPES[shape_name]
    rows = {}
    for method in methods:
        med, timed = take_turns({k: stacked_step_fn(method, shape, k) for k in ks}, iters, max_seconds, block)
        n = len(ks)
        mean_k, mean_t = sum(ks) / n, sum(med.values()) / n
        var_k = sum((k - mean_k) ** 2 for k in ks)
        per_trial = sum((k - mean_k) * (med[k] - mean_t) for k in ks) / var_k if var_k else float("nan")
        fixed = mean_t - per_trial * mean_k
        single = med.get(1)
        rows[method] = {
            "steps": {str(k): {"ms_step": med[k], "ms_per_trial_iteration": med[k] / k,
                               "speedup_vs_single": single * k / med[k] if single else None} for k in ks},
            "fit": {"fixed_ms": fixed, "per_trial_ms": per_trial,
                    "limit_speedup": single / per_trial if single and per_trial > 0 else None},
            "iters": timed, "threads": torch.get_num_threads(), "block": block,
        }
    return rows


def _print_trials_sweep(shape: str, rows: dict) -> None:
    s = SHAPES[shape]
    print(f"\n{shape}, stacked trials by K: {'-'.join(map(str, s['sizes']))}, T={s['steps']}, batch {s['batch']}, "
          f"{s.get('loss', 'count/latency')} loss")
    print(f"{'method':<16}{'K':>6}{'step ms':>10}{'ms/trial-it':>13}{'speedup':>9}")
    for method, r in rows.items():
        for k, row in r["steps"].items():
            speed = f"{row['speedup_vs_single']:.1f}x" if row["speedup_vs_single"] else "-"
            print(f"{method:<16}{k:>6}{row['ms_step']:>10.2f}{row['ms_per_trial_iteration']:>13.3f}{speed:>9}")
        fit = r["fit"]
        limit = f"{fit['limit_speedup']:.1f}x" if fit["limit_speedup"] else "-"
        print(f"{'':<16}fit: step = {fit['fixed_ms']:.2f} ms + K x {fit['per_trial_ms']:.4f} ms; "
              f"speedup as K grows -> {limit}")


def _print_trial_table(shape: str, rows: dict) -> None:
    s = SHAPES[shape]
    print(f"\n{shape} trials: {'-'.join(map(str, s['sizes']))}, T={s['steps']}, batch {s['batch']}, "
          f"{s.get('loss', 'count/latency')} loss")
    print(f"{'method':<16}{'K':>5}{'1 trial ms':>12}{'K trials ms':>13}{'ms/trial-it':>13}{'speedup':>9}")
    for method, r in rows.items():
        print(f"{method:<16}{r['trials']:>5}{r['ms_single_step']:>12.2f}{r['ms_stacked_step']:>13.2f}"
              f"{r['ms_per_trial_iteration']:>13.3f}{r['speedup_vs_single']:>8.1f}x")


def reference_step_fn(shape: dict, x, labels):
    import torch

    from antlr_exp.losses import count_loss, count_targets
    from antlr_exp.network import SpikingNetwork
    from antlr_exp.reference import reference_forward

    torch.manual_seed(0)
    net = SpikingNetwork(shape["sizes"], shape["steps"], rule="activation")
    _scale_weights([l.weight for l in net.layers])
    opt = make_adam(net.parameters())
    targets = count_targets(labels, shape["sizes"][-1], 1.0, 0.0)
    flat = x.reshape(x.shape[0], x.shape[1], -1)

    def step():
        opt.zero_grad(set_to_none=True)
        spikes, _ = reference_forward(
            flat, [l.weight for l in net.layers], [l.bias for l in net.layers], net.params, reset_paths=False
        )
        count_loss(spikes[-1], targets).backward()
        torch.nn.utils.clip_grad_value_(net.parameters(), 1.0)
        opt.step()

    return step


def snntorch_step_fn(shape: dict, x, labels):
    import snntorch as snn
    import torch
    from torch import nn

    from antlr_exp.losses import count_loss, count_targets

    torch.manual_seed(0)
    sizes = shape["sizes"]
    linears = nn.ModuleList(nn.Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:]))
    neurons = nn.ModuleList(snn.Synaptic(alpha=0.99, beta=0.99, reset_mechanism="zero") for _ in linears)
    _scale_weights([l.weight for l in linears])
    params = list(linears.parameters())
    opt = make_adam(params)
    targets = count_targets(labels, sizes[-1], 1.0, 0.0)
    flat = x.reshape(x.shape[0], x.shape[1], -1)

    def step():
        opt.zero_grad(set_to_none=True)
        states = [neuron.init_synaptic() for neuron in neurons]
        out_spikes = []
        for t in range(flat.shape[1]):
            s = flat[:, t]
            for index, (linear, neuron) in enumerate(zip(linears, neurons)):
                syn, mem = states[index]
                s, syn, mem = neuron(linear(s), syn, mem)
                states[index] = (syn, mem)
            out_spikes.append(s)
        count_loss(torch.stack(out_spikes, dim=1), targets).backward()
        torch.nn.utils.clip_grad_value_(params, 1.0)
        opt.step()

    return step


def build_step(shape_name: str, method: str):
    """A zero-argument training step for one row, or a string saying why the row is skipped."""
    shape = SHAPES[shape_name]
    x, labels = make_batch(shape)
    if method in ENGINE_METHODS:
        return engine_step_fn(method, shape, x, labels)
    if method == "reference":
        return reference_step_fn(shape, x, labels)
    try:
        return snntorch_step_fn(shape, x, labels)
    except ImportError:
        return "snntorch is not installed (pip install -e '.[bench]')"


def time_rows(shape_name: str, methods, iters: int, max_seconds: float, block: int = 1) -> dict:
    """Median ms per step of every row, the rows taking turns in this one process.

    Taking turns spreads any load from other processes over all of them, so the ratios stay
    meaningful on a shared machine. With ``block`` > 1 each turn runs ``block`` consecutive
    steps of a row and times all but the first: training runs steps back to back, and the first
    step after another row's turn pays for the caches that row evicted (``block=1``: single steps
    in turn, every one timed cold). A row stops after ``max_seconds`` of its own time (at least
    2 timed steps).
    """
    import torch

    steps = {m: build_step(shape_name, m) for m in methods}
    results = {m: {"skipped": fn} for m, fn in steps.items() if isinstance(fn, str)}
    live = {m: fn for m, fn in steps.items() if not isinstance(fn, str)}
    for fn in live.values():
        fn()  # warm-up
    times = {m: [] for m in live}
    spent = {m: 0.0 for m in live}
    for _ in range(iters):
        for m, fn in live.items():
            if spent[m] > max_seconds and len(times[m]) >= 2:
                continue
            for index in range(block):
                t0 = time.perf_counter()
                fn()
                elapsed = time.perf_counter() - t0
                spent[m] += elapsed
                if index > 0 or block == 1:
                    times[m].append(elapsed)
    for m, ts in times.items():
        ts.sort()
        results[m] = {"ms_per_iter": 1000.0 * ts[len(ts) // 2], "ms_min": 1000.0 * ts[0], "iters": len(ts),
                      "threads": torch.get_num_threads(), "block": block}
    return {m: results[m] for m in methods}


def measure_memory(shape_name: str, method: str) -> dict:
    """Peak resident memory of a fresh process that sets up one row and runs 2 steps."""
    step = build_step(shape_name, method)
    if isinstance(step, str):
        return {"skipped": step}
    base = rss_mb()
    step()
    step()
    return {"peak_rss_mb": peak_rss_mb(), "setup_rss_mb": base}


def run_memory(shape: str, method: str) -> dict:
    cmd = [sys.executable, os.path.abspath(__file__), "--memory-worker", shape, method]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        return {"error": proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else f"exit {proc.returncode}"}
    return json.loads(proc.stdout.strip().splitlines()[-1])


#: the spike-train loss comparison: a 40-100-5 network, T=100, batch 64, antlr
LOSS_SHAPE = {"sizes": [40, 100, 5], "frame": None, "steps": 100, "batch": 64, "spikes_per_sample": 40, "t_max": 100}


def _conv_spike_train_loss():
    """The long-convolution spike-train loss that the O(T) form replaced (kept as a test oracle)."""
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, "tests"))
    from spike_train_oracle import conv_spike_train_loss

    return conv_spike_train_loss


def spike_train_loss_rows(iters: int, max_seconds: float) -> dict:
    """Old (convolution) against new (O(T) recursion) spike-train loss: the loss's forward and
    backward alone, and a whole antlr training step, timed round-robin; ms (median) and ratios."""
    import torch

    from antlr_exp.losses import spike_train_loss
    from antlr_exp.network import SpikingNetwork

    shape = LOSS_SHAPE
    losses = {"conv": _conv_spike_train_loss(), "recursion": spike_train_loss}
    x, _ = make_batch(shape)
    g = torch.Generator().manual_seed(1)
    target = (torch.rand(shape["batch"], shape["steps"], shape["sizes"][-1], generator=g) < 0.03).float()
    torch.manual_seed(0)
    net = SpikingNetwork(shape["sizes"], shape["steps"], rule="antlr")
    _scale_weights([l.weight for l in net.layers])
    with torch.no_grad():
        out = net(x)
    spikes = out.output_spikes.detach().clone().requires_grad_()
    times = out.output_times.detach().clone().requires_grad_()
    opt = make_adam(net.parameters())

    def loss_only(fn):
        def step():
            fn(spikes, times, target).backward()
        return step

    def train_step(fn):
        def step():
            opt.zero_grad(set_to_none=True)
            o = net(x)
            fn(o.output_spikes, o.output_times, target).backward()
            torch.nn.utils.clip_grad_value_(net.parameters(), 1.0)
            opt.step()
        return step

    rows = {}
    for part, make in (("loss", loss_only), ("train_step", train_step)):
        fns = {name: make(fn) for name, fn in losses.items()}
        times_ms = {name: [] for name in fns}
        for fn in fns.values():
            fn()  # warm-up
        started = time.perf_counter()
        for i in range(iters):
            for name, fn in fns.items():
                t0 = time.perf_counter()
                fn()
                times_ms[name].append(1000.0 * (time.perf_counter() - t0))
            if time.perf_counter() - started > max_seconds and i >= 1:
                break
        med = {name: sorted(ts)[len(ts) // 2] for name, ts in times_ms.items()}
        rows[part] = {"conv_ms": med["conv"], "recursion_ms": med["recursion"],
                      "speedup": med["conv"] / med["recursion"], "iters": len(times_ms["conv"])}
    rows["output_spikes_per_sample"] = float(out.output_spikes.sum()) / shape["batch"]
    rows["threads"] = torch.get_num_threads()
    return rows


def _print_loss_rows(rows: dict) -> None:
    s = LOSS_SHAPE
    print(f"\nspike-train loss: {'-'.join(map(str, s['sizes']))}, T={s['steps']}, batch {s['batch']}, antlr "
          f"({rows['output_spikes_per_sample']:.1f} output spikes/sample)")
    print(f"{'part':<16}{'conv ms':>10}{'O(T) ms':>10}{'speedup':>10}")
    for part in ("loss", "train_step"):
        r = rows[part]
        print(f"{part:<16}{r['conv_ms']:>10.2f}{r['recursion_ms']:>10.2f}{r['speedup']:>9.1f}x")


#: the open-neuromorphic SNN library benchmark: one Linear + LIF layer of 4096 neurons, batch 16,
#: T=500, forward and backward (no optimizer); random input spikes at ``input_rate`` per step
OBENCH = {"sizes": [4096, 4096], "frame": None, "steps": 500, "batch": 16, "input_rate": 0.05}
#: the rows of --compare-paths: our engine on each kernel path, then the baselines
PATH_ROWS = ("triton", "pytorch", "snntorch", "spikingjelly")


def _sync(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _path_shape(shape_name: str) -> dict:
    return OBENCH if shape_name == "obench" else SHAPES[shape_name]


def _path_batch(shape_name: str, device: str):
    """Input spikes [B, T, N] and labels on ``device``."""
    import torch

    shape = _path_shape(shape_name)
    if shape_name == "obench":
        g = torch.Generator().manual_seed(0)
        x = (torch.rand(shape["batch"], shape["steps"], shape["sizes"][0], generator=g) < shape["input_rate"]).float()
        labels = torch.zeros(shape["batch"], dtype=torch.long)
    else:
        x, labels = make_batch(shape)
    return x.to(device), labels.to(device)


def _engine_path_step(shape_name: str, kernels: str, device: str):
    """One step of our engine with ANTLR_EXP_KERNELS=``kernels``: on the paper shapes the antlr training
    step of the CPU rows (latency + no-spike count loss, clipping, Adam); on ``obench`` forward and
    backward of ``sum(S)`` through activation_rnn (BPTT with reset paths, as the other libraries do)."""
    import torch

    from antlr_exp.losses import latency_loss, no_spike_count_term
    from antlr_exp.network import SpikingNetwork

    shape = _path_shape(shape_name)
    x, labels = _path_batch(shape_name, device)
    torch.manual_seed(0)
    obench = shape_name == "obench"
    net = SpikingNetwork(shape["sizes"], shape["steps"], rule="activation_rnn" if obench else "antlr").to(device)
    _scale_weights([l.weight for l in net.layers])
    opt = None if obench else make_adam(net.parameters())

    def step():
        os.environ["ANTLR_EXP_KERNELS"] = kernels
        if obench:
            net.zero_grad(set_to_none=True)
            net(x).output_spikes.sum().backward()
            return
        opt.zero_grad(set_to_none=True)
        out = net(x)
        loss = latency_loss(out.output_spikes, out.output_times, labels) + no_spike_count_term(out.output_spikes, labels, 0.1)
        loss.backward()
        torch.nn.utils.clip_grad_value_(net.parameters(), 1.0)
        opt.step()

    return step


def _snntorch_path_step(shape_name: str, device: str):
    """snntorch on ``device``: the Synaptic rows of the CPU table on the paper shapes; on ``obench`` its
    ``Leaky`` neuron (as in the open-neuromorphic benchmark), forward and backward of ``sum(S)``."""
    import snntorch as snn
    import torch
    from torch import nn

    from antlr_exp.losses import count_loss, count_targets

    shape = _path_shape(shape_name)
    x, labels = _path_batch(shape_name, device)
    flat = x.reshape(x.shape[0], x.shape[1], -1)
    torch.manual_seed(0)
    sizes = shape["sizes"]
    obench = shape_name == "obench"
    linears = nn.ModuleList(nn.Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:])).to(device)
    if obench:
        neurons = nn.ModuleList(snn.Leaky(beta=0.99, reset_mechanism="zero") for _ in linears)
    else:
        neurons = nn.ModuleList(snn.Synaptic(alpha=0.99, beta=0.99, reset_mechanism="zero") for _ in linears)
    neurons = neurons.to(device)  # their state buffers follow the module
    _scale_weights([l.weight for l in linears])
    params = list(linears.parameters())
    opt = None if obench else make_adam(params)
    targets = count_targets(labels, sizes[-1], 1.0, 0.0).to(device)

    def step():
        if opt is not None:
            opt.zero_grad(set_to_none=True)
        else:
            linears.zero_grad(set_to_none=True)
        states = [n.init_leaky() if obench else n.init_synaptic() for n in neurons]
        out_spikes = []
        for t in range(flat.shape[1]):
            s = flat[:, t]
            for index, (linear, neuron) in enumerate(zip(linears, neurons)):
                if obench:
                    s, states[index] = neuron(linear(s), states[index])
                else:
                    syn, mem = states[index]
                    s, syn, mem = neuron(linear(s), syn, mem)
                    states[index] = (syn, mem)
            out_spikes.append(s)
        spikes = torch.stack(out_spikes, dim=1)
        (spikes.sum() if obench else count_loss(spikes, targets)).backward()
        if opt is not None:
            torch.nn.utils.clip_grad_value_(params, 1.0)
            opt.step()

    return step


def _spikingjelly_path_step(shape_name: str, device: str):
    """SpikingJelly's multi-step LIF node (CuPy backend), on ``obench`` only: forward and backward of sum(S)."""
    if shape_name != "obench":
        return "SpikingJelly row on the obench shape only"
    import torch
    from spikingjelly.activation_based import layer, neuron

    if not device.startswith("cuda"):
        return "SpikingJelly's CuPy backend needs CUDA"
    import cupy  # noqa: F401  (the backend the published numbers use)

    shape = OBENCH
    x, _ = _path_batch(shape_name, device)
    torch.manual_seed(0)
    linear = layer.Linear(shape["sizes"][0], shape["sizes"][1], step_mode="m").to(device)
    node = neuron.LIFNode(tau=100.0, step_mode="m", backend="cupy").to(device)
    time_major = x.transpose(0, 1).contiguous()  # SpikingJelly's multi-step layout [T, B, N]

    def step():
        linear.zero_grad(set_to_none=True)
        node.reset()
        node(linear(time_major)).sum().backward()

    return step


def build_path_step(shape_name: str, row: str, device: str):
    """A zero-argument step of one --compare-paths row, or a string saying why it is skipped."""
    if row == "triton":
        from antlr_exp import kernels

        os.environ["ANTLR_EXP_KERNELS"] = "triton"
        try:
            import torch

            kernels.triton_kernels(torch.device(device))
        except RuntimeError as exc:
            return str(exc)
        return _engine_path_step(shape_name, "triton", device)
    if row == "pytorch":
        return _engine_path_step(shape_name, "python", device)
    try:
        return _snntorch_path_step(shape_name, device) if row == "snntorch" else _spikingjelly_path_step(shape_name, device)
    except ImportError as exc:
        return f"{row}: {exc.name} is not installed"


def time_path_rows(shape_name: str, rows, iters: int, max_seconds: float, device: str) -> dict:
    """Median ms per step of every row on ``device``, round-robin, synchronizing around each step;
    with the peak device memory of each row where the device is CUDA."""
    import torch

    steps = {r: build_path_step(shape_name, r, device) for r in rows}
    results = {r: {"skipped": fn} for r, fn in steps.items() if isinstance(fn, str)}
    live = {r: fn for r, fn in steps.items() if not isinstance(fn, str)}
    cuda = device.startswith("cuda")
    peaks = {}
    for r, fn in live.items():  # warm-up (Triton compiles here), and the memory peak of one step
        if cuda:
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
        fn()
        _sync(device)
        if cuda:
            peaks[r] = torch.cuda.max_memory_allocated() / 2**20
    times = {r: [] for r in live}
    spent = {r: 0.0 for r in live}
    for _ in range(iters):
        for r, fn in live.items():
            if spent[r] > max_seconds and len(times[r]) >= 2:
                continue
            _sync(device)
            t0 = time.perf_counter()
            fn()
            _sync(device)
            elapsed = time.perf_counter() - t0
            times[r].append(elapsed)
            spent[r] += elapsed
    for r, ts in times.items():
        ts.sort()
        results[r] = {"ms_per_iter": 1000.0 * ts[len(ts) // 2], "ms_min": 1000.0 * ts[0], "iters": len(ts)}
        if r in peaks:
            results[r]["peak_device_mb"] = peaks[r]
    return {r: results[r] for r in rows}


def _print_path_table(shape_name: str, rows: dict, device: str) -> None:
    s = _path_shape(shape_name)
    what = "forward + backward" if shape_name == "obench" else "training step"
    print(f"\n{shape_name} on {device}: {'-'.join(map(str, s['sizes']))}, T={s['steps']}, batch {s['batch']}, {what}")
    ref = rows.get("triton", {}).get("ms_per_iter")
    print(f"{'row':<16}{'ms/iter':>10}{'/ triton':>10}{'peak MB':>10}")
    for row, r in rows.items():
        if "ms_per_iter" not in r:
            print(f"{row:<16}  {r.get('skipped')}")
            continue
        ratio = f"{r['ms_per_iter'] / ref:.1f}x" if ref else "-"
        peak = f"{r['peak_device_mb']:.0f}" if "peak_device_mb" in r else "-"
        print(f"{row:<16}{r['ms_per_iter']:>10.2f}{ratio:>10}{peak:>10}")


def _write_json(path, payload: dict) -> None:
    """``--json PATH``: write ``payload`` there (nothing without a path)."""
    if path:
        with open(path, "w") as f:
            json.dump(payload, f, indent=2)
        print(f"wrote {path}")


def _cpu_payload(results: dict, key: str) -> dict:
    """The JSON of the CPU tables: the shapes timed, the thread count and ``results`` under ``key``."""
    import torch

    return {"shapes": {k: SHAPES[k] for k in results}, "threads": torch.get_num_threads(), key: results}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shapes", nargs="+", choices=list(SHAPES) + ["obench"],
                        help="default: mnist nmnist (and obench with --compare-paths); "
                             "with --trials-rows: fig6 mnist")
    parser.add_argument("--methods", nargs="+", default=list(ENGINE_METHODS + BASELINES), choices=list(ENGINE_METHODS + BASELINES))
    parser.add_argument("--iters", type=int, default=10, help="turns per row (median step reported)")
    parser.add_argument("--block", type=int, default=4,
                        help="steps per turn of a rule row, all but the first timed (back to back, as in training); "
                             "1: single steps in turn, each timed just after another row's step")
    parser.add_argument("--max-seconds", type=float, default=30.0, help="stop timing a row after this much of its own time (at least 2 steps)")
    parser.add_argument("--threads", type=int, help="torch intra-op threads (default: torch's choice)")
    parser.add_argument("--no-memory", action="store_true", help="skip the per-row memory subprocesses")
    parser.add_argument("--json", help="write the results to this path")
    parser.add_argument("--trials-rows", action="store_true",
                        help="time stacked trials instead: fig6 (K=100, every rule) and mnist (antlr, K=4)")
    parser.add_argument("--trials-sweep", type=int, nargs="+", metavar="K",
                        help="time K stacked trials for each K given (e.g. 1 10 50 100 200; default shape fig6, "
                             "--methods' engine rules) and fit step = fixed + K x per-trial")
    parser.add_argument("--device", default="cpu", help="cpu (the rule rows above) or cuda (implies --compare-paths)")
    parser.add_argument("--compare-paths", action="store_true",
                        help="rows per kernel path (triton, pytorch) and library (snntorch, spikingjelly) on --device; "
                             "shapes may include obench (on CPU the triton row needs TRITON_INTERPRET=1)")
    parser.add_argument("--spike-train-loss", action="store_true",
                        help="instead of the shapes: the spike-train loss, convolution against O(T) recursion")
    parser.add_argument("--memory-worker", nargs=2, metavar=("SHAPE", "METHOD"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    import torch

    from antlr_exp.runtime import tune_malloc

    tune_malloc()  # every row, engine and baselines alike
    if args.threads:
        torch.set_num_threads(args.threads)
        os.environ["BENCH_THREADS"] = str(args.threads)
    elif os.environ.get("BENCH_THREADS"):
        torch.set_num_threads(int(os.environ["BENCH_THREADS"]))
    if args.memory_worker:
        print(json.dumps(measure_memory(*args.memory_worker)))
        return 0

    if args.device.startswith("cuda"):
        if not torch.cuda.is_available():
            parser.error(f"--device {args.device}: no CUDA device is available")
        args.compare_paths = True
    elif args.device != "cpu":
        parser.error(f"--device {args.device}: accepted are cpu and cuda (or cuda:N)")
    if args.compare_paths:
        results = {}
        for shape in args.shapes or ["mnist", "nmnist", "obench"]:
            results[shape] = time_path_rows(shape, PATH_ROWS, args.iters, args.max_seconds, args.device)
            _print_path_table(shape, results[shape], args.device)
        _write_json(args.json, {"device": torch.cuda.get_device_name() if args.device.startswith("cuda") else "cpu",
                                "shapes": {k: _path_shape(k) for k in results}, "results": results})
        return 0
    if "obench" in (args.shapes or []):
        parser.error("--shapes obench: only with --compare-paths or --device cuda")
    if args.trials_sweep:
        if any(k < 1 for k in args.trials_sweep):
            parser.error(f"--trials-sweep {' '.join(map(str, args.trials_sweep))}: every K must be >= 1")
        if len(set(args.trials_sweep)) < 2:
            parser.error("--trials-sweep: give at least two different K (the fit needs two points)")
        results = {}
        for shape in args.shapes or ["fig6"]:
            methods = [m for m in args.methods if m in ENGINE_METHODS]
            results[shape] = time_trials_sweep(shape, methods, args.trials_sweep, args.iters, args.max_seconds, args.block)
            _print_trials_sweep(shape, results[shape])
        _write_json(args.json, _cpu_payload(results, "trials_sweep"))
        return 0
    if args.trials_rows:
        args.shapes = args.shapes or ["fig6", "mnist"]
    elif "fig6" in (args.shapes or []):
        parser.error("--shapes fig6: only with --trials-rows or --trials-sweep")
    args.shapes = args.shapes or ["mnist", "nmnist"]

    if args.spike_train_loss:
        rows = spike_train_loss_rows(args.iters, args.max_seconds)
        _print_loss_rows(rows)
        _write_json(args.json, {"shapes": {"spike_train_loss": LOSS_SHAPE}, "threads": torch.get_num_threads(),
                                "results": {"spike_train_loss": rows}})
        return 0

    results = {}
    if args.trials_rows:
        for shape in args.shapes:
            methods = list(ENGINE_METHODS) if shape != "mnist" else ["antlr"]
            methods = [m for m in methods if m in args.methods]
            results[shape] = time_trial_rows(shape, methods, args.iters, args.max_seconds, args.block)
            _print_trial_table(shape, results[shape])
        _write_json(args.json, _cpu_payload(results, "trials_rows"))
        return 0
    for shape in args.shapes:
        rows = time_rows(shape, args.methods, args.iters, args.max_seconds, args.block)
        if not args.no_memory:
            for method in args.methods:
                if "ms_per_iter" in rows[method]:
                    rows[method].update(run_memory(shape, method))
        results[shape] = rows
        _print_table(shape, rows)
    _write_json(args.json, _cpu_payload(results, "results"))
    return 0


def _print_table(shape: str, rows: dict) -> None:
    s = SHAPES[shape]
    print(f"\n{shape}: {'x'.join(map(str, s['frame'])) if s['frame'] else s['sizes'][0]}-"
          f"{'-'.join(map(str, s['sizes'][1:]))}, T={s['steps']}, batch {s['batch']}, "
          f"~{s['spikes_per_sample']} input spikes/sample")
    ref = rows.get("antlr", {}).get("ms_per_iter")
    print(f"{'method':<16}{'ms/iter':>10}{'/ antlr':>10}{'peak RSS MB':>13}{'step MB':>10}")
    for method, r in rows.items():
        if "ms_per_iter" not in r:
            print(f"{method:<16}  {r.get('skipped') or r.get('error')}")
            continue
        ratio = f"{r['ms_per_iter'] / ref:.1f}x" if ref else "-"
        peak = f"{r['peak_rss_mb']:.0f}" if "peak_rss_mb" in r else "-"
        step_mb = f"{r['peak_rss_mb'] - r['setup_rss_mb']:.0f}" if "peak_rss_mb" in r else "-"
        print(f"{method:<16}{r['ms_per_iter']:>10.1f}{ratio:>10}{peak:>13}{step_mb:>10}")


if __name__ == "__main__":
    sys.exit(main())
