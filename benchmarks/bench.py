"""Time one full training step (forward, loss, backward, clipping, Adam) per rule, side by side.

Shapes (paper section 4):
  mnist   784-800-10,       T=100, batch 16, latency-coded input, ~150 input spikes per sample
  nmnist  2x34x34-800-10,   T=300, batch 16, binary event frames, ~3,000 nonzeros per sample

Weights start at 5x PyTorch's default so that the layers fire as in training (about 170 hidden
spikes per sample on the MNIST shape, 630 on N-MNIST); every row uses the same weights.

Rows: the engine with each rule (activation and activation_rnn with the count loss 1/0,
timing with the latency loss and the no-spike weight penalty, antlr with latency + no-spike
count term); (a) the per-time-step autograd reference (``antlr_exp.reference``, the tests' oracle;
activation rule, count loss); (b) snntorch's ``Synaptic`` neuron (reset to zero) unrolled with BPTT, count loss
(skipped with a message if snntorch is absent: ``pip install -e .[bench]``).

Run it from the repository root; ``python scripts/bench.py`` runs the same. Each mode is a
module of this folder: rules (the default), trials, spike_train_loss, paths.

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
on each kernel path, ``triton`` (antlr_exp.triton_kernels, with the fused network backward),
``triton_per_layer`` (one backward node per layer) and ``pytorch`` (the per-step loop),
then snntorch and, where it and CuPy are installed, SpikingJelly; shapes mnist, nmnist and
``obench``, the open-neuromorphic SNN library benchmark (one Linear + LIF layer of 4096 neurons,
batch 16, T=500, forward and backward). Steps are synchronized with the device; the peak device
memory of one step is reported.

    python -m benchmarks.bench                 # both shapes
    python -m benchmarks.bench --shapes mnist --iters 20 --json bench.json
    python -m benchmarks.bench --spike-train-loss   # the spike-train loss: convolution against O(T)
    python -m benchmarks.bench --device cuda        # GPU: Triton kernels vs PyTorch path vs snntorch
    python -m benchmarks.bench --trials-rows --json trials.json   # stacked trials
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from . import paths, rules, spike_train_loss, trials
from .common import BASELINES, ENGINE_METHODS, SHAPES, cpu_payload, write_json


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.bench", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--shapes",
        nargs="+",
        choices=list(SHAPES) + ["obench"],
        help="default: mnist nmnist (and obench with --compare-paths); with --trials-rows: fig6 mnist",
    )
    p.add_argument(
        "--methods", nargs="+", default=list(ENGINE_METHODS + BASELINES), choices=list(ENGINE_METHODS + BASELINES)
    )
    p.add_argument("--iters", type=int, default=10, help="turns per row (median step reported)")
    p.add_argument(
        "--block",
        type=int,
        default=4,
        help="steps per turn of a rule row, all but the first timed (back to back, as in training); "
        "1: single steps in turn, each timed just after another row's step",
    )
    p.add_argument(
        "--max-seconds",
        type=float,
        default=30.0,
        help="stop timing a row after this much of its own time (at least 2 steps)",
    )
    p.add_argument("--threads", type=int, help="torch intra-op threads (default: torch's choice)")
    p.add_argument("--no-memory", action="store_true", help="skip the per-row memory subprocesses")
    p.add_argument("--json", help="write the results to this path")
    p.add_argument(
        "--trials-rows",
        action="store_true",
        help="time stacked trials instead: fig6 (K=100, every rule) and mnist (antlr, K=4)",
    )
    p.add_argument(
        "--trials-sweep",
        type=int,
        nargs="+",
        metavar="K",
        help="time K stacked trials for each K given (e.g. 1 10 50 100 200; default shape fig6, "
        "--methods' engine rules) and fit step = fixed + K x per-trial",
    )
    p.add_argument("--device", default="cpu", help="cpu (the rule rows above) or cuda (implies --compare-paths)")
    p.add_argument(
        "--compare-paths",
        action="store_true",
        help="rows per kernel path (triton, triton_per_layer, pytorch) and library (snntorch, spikingjelly) "
        "on --device; "
        "shapes may include obench (on CPU the triton row needs TRITON_INTERPRET=1)",
    )
    p.add_argument(
        "--spike-train-loss",
        action="store_true",
        help="instead of the shapes: the spike-train loss, convolution against O(T) recursion",
    )
    p.add_argument("--memory-worker", nargs=2, metavar=("SHAPE", "METHOD"), help=argparse.SUPPRESS)
    return p


def set_threads(threads) -> None:
    """``--threads``, passed on to the memory subprocesses through ``BENCH_THREADS``."""
    import torch

    if threads:
        torch.set_num_threads(threads)
        os.environ["BENCH_THREADS"] = str(threads)
    elif os.environ.get("BENCH_THREADS"):
        torch.set_num_threads(int(os.environ["BENCH_THREADS"]))


def check(p: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Refuse, before any timing, what no mode accepts; ``--device cuda`` implies --compare-paths."""
    import torch

    if args.device.startswith("cuda"):
        if not torch.cuda.is_available():
            p.error(f"--device {args.device}: no CUDA device is available")
        args.compare_paths = True
    elif args.device != "cpu":
        p.error(f"--device {args.device}: accepted are cpu and cuda (or cuda:N)")
    if args.compare_paths:
        return
    if "obench" in (args.shapes or []):
        p.error("--shapes obench: only with --compare-paths or --device cuda")
    if args.trials_sweep:
        if any(k < 1 for k in args.trials_sweep):
            p.error(f"--trials-sweep {' '.join(map(str, args.trials_sweep))}: every K must be >= 1")
        if len(set(args.trials_sweep)) < 2:
            p.error("--trials-sweep: give at least two different K (the fit needs two points)")
    elif not args.trials_rows and "fig6" in (args.shapes or []):
        p.error("--shapes fig6: only with --trials-rows or --trials-sweep")


def run_paths(args) -> None:
    import torch

    results = {}
    for shape in args.shapes or ["mnist", "nmnist", "obench"]:
        results[shape] = paths.time_path_rows(shape, paths.PATH_ROWS, args.iters, args.max_seconds, args.device)
        paths.print_table(shape, results[shape], args.device)
    write_json(
        args.json,
        {
            "device": torch.cuda.get_device_name() if args.device.startswith("cuda") else "cpu",
            "shapes": {k: paths.path_shape(k) for k in results},
            "results": results,
        },
    )


def run_trials_sweep(args) -> None:
    results = {}
    for shape in args.shapes or ["fig6"]:
        methods = [m for m in args.methods if m in ENGINE_METHODS]
        results[shape] = trials.time_trials_sweep(
            shape, methods, args.trials_sweep, args.iters, args.max_seconds, args.block
        )
        trials.print_sweep(shape, results[shape])
    write_json(args.json, cpu_payload(results, "trials_sweep"))


def run_trials_rows(args) -> None:
    results = {}
    for shape in args.shapes or ["fig6", "mnist"]:
        methods = [m for m in (ENGINE_METHODS if shape != "mnist" else ["antlr"]) if m in args.methods]
        results[shape] = trials.time_trial_rows(shape, methods, args.iters, args.max_seconds, args.block)
        trials.print_rows(shape, results[shape])
    write_json(args.json, cpu_payload(results, "trials_rows"))


def run_spike_train_loss(args) -> None:
    import torch

    rows = spike_train_loss.spike_train_loss_rows(args.iters, args.max_seconds)
    spike_train_loss.print_table(rows)
    write_json(
        args.json,
        {
            "shapes": {"spike_train_loss": spike_train_loss.LOSS_SHAPE},
            "threads": torch.get_num_threads(),
            "results": {"spike_train_loss": rows},
        },
    )


def run_rules(args) -> None:
    results = {}
    for shape in args.shapes or ["mnist", "nmnist"]:
        rows = rules.time_rows(shape, args.methods, args.iters, args.max_seconds, args.block)
        if not args.no_memory:
            for method in args.methods:
                if "ms_per_iter" in rows[method]:
                    rows[method].update(rules.run_memory(shape, method))
        results[shape] = rows
        rules.print_table(shape, rows)
    write_json(args.json, cpu_payload(results, "results"))


def main(argv=None) -> int:
    p = parser()
    args = p.parse_args(argv)
    from antlr_exp.cli.runtime import tune_malloc

    tune_malloc()  # every row, engine and baselines alike
    set_threads(args.threads)
    if args.memory_worker:
        print(json.dumps(rules.measure_memory(*args.memory_worker)))
        return 0
    check(p, args)
    if args.compare_paths:
        run_paths(args)
    elif args.trials_sweep:
        run_trials_sweep(args)
    elif args.spike_train_loss:
        run_spike_train_loss(args)
    elif args.trials_rows:
        run_trials_rows(args)
    else:
        run_rules(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
