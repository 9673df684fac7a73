#!/usr/bin/env python
"""One training epoch of ``antlr-train task=mnist method=antlr`` with and without the training
early stop, side by side.

Two trainers are built from the same config, seed and data (the paper's loss for ANTLR on MNIST:
latency + no-spike count term), one with ``trainer.train_early_stop=true`` and one with
``false``. Their training steps are timed alternately, batch by batch, over one epoch of the
training split, so load from other processes falls on both alike. Prints the epoch time of each,
the ratio, and the mean number of steps simulated per training step; ``--json PATH`` writes them.
Evaluation is not timed (it always simulates the whole window).

    python scripts/bench_epoch.py                          # the data under $ANTLR_EXP_DATA/mnist
    python scripts/bench_epoch.py --limit-train 2000 --json epoch.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path


def build(overrides: list):
    from hydra import compose, initialize_config_dir

    from antlr_exp.config import CONF_DIR, validate
    from antlr_exp.train import Trainer, load_trials, resolve_device

    with initialize_config_dir(version_base="1.3", config_dir=str(CONF_DIR)):
        cfg = compose(config_name="config", overrides=overrides)
    validate(cfg)
    datas, net = load_trials(cfg)
    return Trainer(cfg, Path("unused"), datas, resolve_device("cpu"), net=net)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-root", default=None, help="MNIST folder (default $ANTLR_EXP_DATA/mnist)")
    parser.add_argument("--limit-train", type=int, default=None, help="a seeded subset of the training split")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--json", help="write the results to this path")
    parser.add_argument("overrides", nargs="*", help="extra antlr-train overrides for both trainers")
    args = parser.parse_args(argv)

    import torch

    from antlr_exp.runtime import tune_malloc

    tune_malloc()
    if args.threads:
        torch.set_num_threads(args.threads)
    root = args.data_root or str(Path(os.environ.get("ANTLR_EXP_DATA", "data")) / "mnist")
    common = ["task=mnist", "method=antlr", f"data.root={root}", "trainer.progress_bar=false", *args.overrides]
    if args.limit_train:
        common.append(f"data.limit_train={args.limit_train}")
    trainers = {name: build([*common, f"trainer.train_early_stop={flag}"])
                for name, flag in (("full_window", "false"), ("early_stop", "true"))}
    assert trainers["early_stop"].early_stop and not trainers["full_window"].early_stop
    spent = {name: 0.0 for name in trainers}
    batches = {name: trainer._epoch_batches() for name, trainer in trainers.items()}
    steps = 0
    for pair in zip(*batches.values()):
        for (name, trainer), (inputs, targets) in zip(trainers.items(), pair):
            start = time.perf_counter()
            trainer._train_step(inputs, targets)
            spent[name] += time.perf_counter() - start
        steps += 1
    simulated = {name: sum(t.simulated_steps) / len(t.simulated_steps) for name, t in trainers.items()}
    result = {
        "training_images": len(trainers["early_stop"].data.train), "steps": steps,
        "batch_size": trainers["early_stop"].settings.batch_size, "threads": torch.get_num_threads(),
        "epoch_s": {k: round(v, 2) for k, v in spent.items()},
        "speedup": spent["full_window"] / spent["early_stop"],
        "mean_simulated_steps": simulated,
    }
    print(f"one epoch, {result['training_images']} training images, {steps} steps of {result['batch_size']}, "
          f"{result['threads']} thread(s)")
    for name in trainers:
        print(f"  {name:<12} {spent[name]:8.1f} s   {simulated[name]:6.1f} simulated steps per training step")
    print(f"  early stop: {result['speedup']:.2f}x faster")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
