"""Where a training step's time goes, and what removing a piece would save, side by side.

Builds the step of ``python -m benchmarks.bench`` (antlr; ``mnist``: 784-800-10, T=100, batch 16;
``fig6``: 100 stacked trials of 10-50-50-5, T=100, batch 1, spike-train loss), then

1. prints the heaviest PyTorch operations of the step by input shape (torch.profiler; the C++
   kernels' own time is the step's time minus these), and
2. times the step alternately, step by step in one process, as it is and with one piece taken
   out, so that load from other processes falls on both rows alike. These variants patch the
   per-layer path (``SpikingNetwork.fused = False``, one autograd node per layer), which is
   the one they apply to: the fused network backward of the C++ path has no dense spike-time
   gradient to fill, and the step timed "as is" there is given first for comparison:
   ``no_fill``: the dense spike-time gradient of a layer's input allocated without its zero
   fill (wrong numbers, timing only); ``no_transposes``: every weight transpose served from a
   cache made at the first step (stale weights, timing only).

The two variants compute wrong gradients on purpose: they bound what removing the piece could
gain, and are never used for training.

    python -m benchmarks.profile_step --shape mnist
    python -m benchmarks.profile_step --shape fig6 --steps 40
"""

from __future__ import annotations

import argparse
import collections
import sys
import time

import torch

from .common import SHAPES
from .rules import build_step as rule_step
from .trials import stacked_step_fn


def build_step(shape: str):
    if shape == "fig6":
        return stacked_step_fn("antlr", SHAPES["fig6"], 100)
    return rule_step(shape, "antlr")


def heaviest_operations(step, steps: int, rows: int) -> list:
    """``(ms per step, calls per step, name, first input shape)`` of the heaviest aten operations."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
        for _ in range(steps):
            step()
    totals = collections.defaultdict(lambda: [0.0, 0])
    for event in prof.events():
        if event.name.startswith("aten::"):
            key = (event.name, str(event.input_shapes[:1]))
            totals[key][0] += event.self_cpu_time_total
            totals[key][1] += 1
    ranked = sorted(totals.items(), key=lambda item: -item[1][0])[:rows]
    return [(t / steps / 1000, n / steps, name, shapes) for (name, shapes), (t, n) in ranked]


def _targets() -> dict:
    """What the variants replace: name -> (object, attribute). The per-layer backward reads
    ``times_gradient_at_events`` from the engine's layer module, the event products read
    ``stacked_weight_t`` from its synapses module, and the C++ kernels are the CPU backend's ``ops``."""
    from antlr_exp.engine import layer, synapses
    from antlr_exp.engine.backends import select

    return {
        "times_gradient_at_events": (layer, "times_gradient_at_events"),
        "stacked_weight_t": (synapses, "stacked_weight_t"),
        "ops": (select("cpu"), "ops"),
    }


def without_fill():
    """``times_gradient_at_events`` as it is, with ``torch.empty`` serving its ``torch.zeros``."""
    owner, name = _targets()["times_gradient_at_events"]
    original = getattr(owner, name)

    def variant(*args):
        zeros = torch.zeros
        torch.zeros = torch.empty
        try:
            return original(*args)
        finally:
            torch.zeros = zeros

    return {"times_gradient_at_events": variant}


def without_transposes():
    """Weight transposes (the C++ ``transpose_contiguous`` and ``stacked_weight_t``) from a cache."""
    targets = _targets()
    ext = getattr(*targets["ops"])
    stacked = getattr(*targets["stacked_weight_t"])
    cache: dict = {}

    class Cached:
        def __getattr__(self, name):
            return getattr(ext, name)

        def transpose_contiguous(self, w):
            key = ("t", w.data_ptr(), tuple(w.shape))
            if key not in cache:
                cache[key] = ext.transpose_contiguous(w)
            return cache[key]

    def stacked_cached(w):
        if w.dim() == 2:
            return w.t()
        key = ("s", w.data_ptr(), tuple(w.shape))
        if key not in cache:
            cache[key] = stacked(w)
        return cache[key]

    return {"ops": Cached(), "stacked_weight_t": stacked_cached}


def time_variants(step, steps: int) -> dict:
    """Median ms per step: the fused path as it is, then the per-layer path as it is and with each
    piece taken out."""
    from antlr_exp.engine.network import SpikingNetwork

    targets = _targets()
    variants = {"fused, as is": None, "as is": {}, "no_fill": without_fill(), "no_transposes": without_transposes()}
    originals = {name: getattr(*targets[name]) for patch in variants.values() if patch for name in patch}
    times = {name: [] for name in variants}
    fused = SpikingNetwork.fused
    try:
        for _ in range(steps):
            for name, patch in variants.items():
                SpikingNetwork.fused = patch is None
                for key, value in originals.items():
                    setattr(*targets[key], (patch or {}).get(key, value))
                started = time.perf_counter()
                step()
                times[name].append(time.perf_counter() - started)
    finally:
        SpikingNetwork.fused = fused
        for key, value in originals.items():
            setattr(*targets[key], value)
    return {name: 1000 * sorted(t)[len(t) // 2] for name, t in times.items()}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shape", choices=("mnist", "fig6"), default="mnist")
    parser.add_argument("--steps", type=int, default=30, help="timed steps per row")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    from antlr_exp.cli.runtime import tune_malloc
    from antlr_exp.engine.backends import select

    tune_malloc()
    if select("cpu").name != "cpp":
        print("the C++ kernels are not available: nothing to compare", file=sys.stderr)
        return 1
    step = build_step(args.shape)
    for _ in range(3):
        step()
    print(f"{args.shape}: heaviest PyTorch operations (profiled, ms per step; the profiler adds its own cost)")
    for ms, calls, name, shapes in heaviest_operations(step, 10, 12):
        print(f"  {ms:7.3f} ms  {calls:5.1f} calls  {name} {shapes}")
    medians = time_variants(step, args.steps)
    base = medians["as is"]
    print(
        f"{args.shape}: median ms per step, {args.steps} steps each, timed alternately "
        "(ratios against the per-layer path as it is)"
    )
    for name, ms in medians.items():
        print(f"  {name:14s} {ms:8.2f} ms  {base / ms:5.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
