"""The default mode: one full training step (forward, loss, backward, clipping, Adam) per rule of
the engine, beside the per-time-step autograd reference (:mod:`antlr_exp.reference`) and
snntorch, on the paper's shapes; each row's peak resident memory in a subprocess of its own."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from .common import ENGINE_METHODS, SHAPES, make_adam, make_batch, peak_rss_mb, rss_mb, scale_weights

#: the repository, where ``python -m benchmarks.bench`` finds this package
ROOT = Path(__file__).resolve().parents[1]


def engine_step_fn(method: str, shape: dict, x, labels):
    import torch

    from antlr_exp.losses import count_loss, count_targets, latency_loss, no_spike_count_term, no_spike_weight_penalty
    from antlr_exp.network import SpikingNetwork

    torch.manual_seed(0)
    net = SpikingNetwork(shape["sizes"], shape["steps"], rule=method)
    scale_weights([l.weight for l in net.layers])
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


def reference_step_fn(shape: dict, x, labels):
    import torch

    from antlr_exp.losses import count_loss, count_targets
    from antlr_exp.network import SpikingNetwork
    from antlr_exp.reference import reference_forward

    torch.manual_seed(0)
    net = SpikingNetwork(shape["sizes"], shape["steps"], rule="activation")
    scale_weights([l.weight for l in net.layers])
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
    scale_weights([l.weight for l in linears])
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
        results[m] = {
            "ms_per_iter": 1000.0 * ts[len(ts) // 2],
            "ms_min": 1000.0 * ts[0],
            "iters": len(ts),
            "threads": torch.get_num_threads(),
            "block": block,
        }
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
    cmd = [sys.executable, "-m", "benchmarks.bench", "--memory-worker", shape, method]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    if proc.returncode != 0:
        return {"error": proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else f"exit {proc.returncode}"}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def print_table(shape: str, rows: dict) -> None:
    s = SHAPES[shape]
    print(
        f"\n{shape}: {'x'.join(map(str, s['frame'])) if s['frame'] else s['sizes'][0]}-"
        f"{'-'.join(map(str, s['sizes'][1:]))}, T={s['steps']}, batch {s['batch']}, "
        f"~{s['spikes_per_sample']} input spikes/sample"
    )
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
