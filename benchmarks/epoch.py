"""One training epoch of ``antlr-train task=mnist method=antlr``: with and without the training
early stop, or (``--against REV``) this checkout against an earlier git revision, side by side.

Two trainers are built from the same config, seed and data (the paper's loss for ANTLR on MNIST:
latency + no-spike count term), one with ``trainer.train_early_stop=true`` and one with
``false``. Their training steps are timed alternately, batch by batch, over one epoch of the
training split, so load from other processes falls on both alike. Prints the epoch time of each,
the ratio, and the mean number of steps simulated per training step; ``--json PATH`` writes them.
Evaluation is not timed (it always simulates the whole window).

    python benchmarks/epoch.py                          # the data under $ANTLR_EXP_DATA/mnist
    python benchmarks/epoch.py --limit-train 2000 --json epoch.json

``--against REV`` ("before" and "after"): the source of revision REV (``git archive``) and this
checkout each train in a worker process of its own, with its own defaults for ``task=mnist
method=antlr`` and the same seed and data; the coordinator has them take turns, ``--block``
training steps at a time, so load from other processes falls on both alike. Setup (data,
kernel builds) is not timed. Prints both epoch times and the ratio.

    python benchmarks/epoch.py --against HEAD~10 --threads 2   # this checkout against ten commits back
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Optional


def build(overrides: list):
    from hydra import compose, initialize_config_dir

    from antlr_exp.config import CONF_DIR, validate
    from antlr_exp.train import Trainer, load_trials, resolve_device

    with initialize_config_dir(version_base="1.3", config_dir=str(CONF_DIR)):
        cfg = compose(config_name="config", overrides=overrides)
    validate(cfg)
    datas, net = load_trials(cfg)
    return Trainer(cfg, Path("unused"), datas, resolve_device("cpu"), net=net)


def worker(root: str, threads: Optional[int]) -> int:
    """Serve training steps of this interpreter's antlr_exp: read a count, train that many steps
    of the epoch, answer the seconds spent (``done`` when the epoch is over)."""
    import torch
    from torch.utils.data import DataLoader

    from antlr_exp import train as train_module
    from antlr_exp.config import CONF_DIR

    try:
        from antlr_exp.cli.runtime import tune_malloc

        tune_malloc()
    except ImportError:  # revisions before it
        pass
    if threads:
        torch.set_num_threads(threads)
    from hydra import compose, initialize_config_dir

    overrides = ["task=mnist", "method=antlr", f"data.root={root}", "trainer.progress_bar=false"]
    with initialize_config_dir(version_base="1.3", config_dir=str(CONF_DIR)):
        cfg = compose(config_name="config", overrides=overrides)
    device = torch.device("cpu")
    if hasattr(train_module, "load_trials"):
        datas, net = train_module.load_trials(cfg)
        trainer = train_module.Trainer(cfg, Path("unused"), datas, device, net=net)
        batches = trainer._epoch_batches()
        data = datas[0]
    else:
        data = train_module.load_data(cfg)
        trainer = train_module.Trainer(cfg, Path("unused"), data, device)
        order = torch.randperm(len(data.train), generator=torch.Generator().manual_seed(int(cfg.seed))).tolist()
        batches = iter(DataLoader(data.train, batch_size=cfg.trainer.batch_size, sampler=order))
    import antlr_exp

    try:  # build (or load) the C++ kernels now, outside the timed steps
        from antlr_exp.kernels import cpp_kernels

        cpp_kernels()
    except ImportError:
        pass
    print(
        f"ready {len(data.train)} {cfg.trainer.batch_size} {torch.get_num_threads()} {antlr_exp.__file__}", flush=True
    )
    for line in sys.stdin:
        count, spent, steps = int(line), 0.0, 0
        for inputs, targets in batches:
            start = time.perf_counter()
            trainer._train_step(inputs, targets)
            spent += time.perf_counter() - start
            steps += 1
            if steps == count:
                break
        print(f"{'steps' if steps == count else 'done'} {steps} {spent}", flush=True)
        if steps < count:
            break
    return 0


def against(rev: str, root: str, threads: Optional[int], block: int, json_path: Optional[str]) -> int:
    """Time one epoch of revision ``rev`` and of this checkout in alternating blocks of steps."""
    import subprocess
    import tempfile

    repo = Path(__file__).resolve().parents[1]
    with tempfile.TemporaryDirectory(prefix="bench-epoch-") as tmp:
        archive = subprocess.run(
            ["git", "-C", str(repo), "archive", rev, "src", "conf"], check=True, capture_output=True
        ).stdout
        subprocess.run(["tar", "-x", "-C", tmp], input=archive, check=True)
        sources = {"before": Path(tmp) / "src", "after": repo / "src"}
        workers = {}
        for name, src in sources.items():
            env = dict(os.environ, PYTHONPATH=str(src))
            cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", "--data-root", root]
            if threads:
                cmd += ["--threads", str(threads)]
            workers[name] = subprocess.Popen(
                cmd, env=env, cwd=tmp, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
            )
            ready = workers[name].stdout.readline().split()  # after its data load and kernel build
            if not ready or ready[0] != "ready":
                raise SystemExit(f"the {name} worker ({src}) did not start")
            if not Path(ready[4]).resolve().is_relative_to(src.resolve()):
                raise SystemExit(f"the {name} worker imported {ready[4]}, not the package under {src}")
            print(
                f"{name}: {src if name == 'after' else rev} ready ({ready[1]} training images, batch {ready[2]}, "
                f"{ready[3]} thread(s))",
                flush=True,
            )
        spent = {name: 0.0 for name in workers}
        steps = {name: 0 for name in workers}
        live = set(workers)
        while live:
            for name in list(workers):
                if name not in live:
                    continue
                workers[name].stdin.write(f"{block}\n")
                workers[name].stdin.flush()
                word, count, seconds = workers[name].stdout.readline().split()
                steps[name] += int(count)
                spent[name] += float(seconds)
                if word == "done":
                    live.discard(name)
        for w in workers.values():
            w.stdin.close()
            w.wait()
    result = {
        "before_rev": rev,
        "training_images": int(ready[1]),
        "steps": steps,
        "threads": int(ready[3]),
        "epoch_s": {k: round(v, 2) for k, v in spent.items()},
        "speedup": spent["before"] / spent["after"],
    }
    print(f"one epoch of task=mnist method=antlr, {steps['after']} steps, {result['threads']} thread(s)")
    for name in ("before", "after"):
        print(f"  {name:<7} {spent[name]:8.1f} s")
    print(f"  after / before: {result['speedup']:.2f}x faster")
    if json_path:
        Path(json_path).write_text(json.dumps(result, indent=2) + "\n")
        print(f"wrote {json_path}")
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-root", default=None, help="MNIST folder (default $ANTLR_EXP_DATA/mnist)")
    parser.add_argument("--limit-train", type=int, default=None, help="a seeded subset of the training split")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--json", help="write the results to this path")
    parser.add_argument("--against", metavar="REV", help="time this checkout against git revision REV")
    parser.add_argument("--block", type=int, default=50, help="--against: steps per turn (default 50)")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("overrides", nargs="*", help="extra antlr-train overrides for both trainers")
    args = parser.parse_args(argv)
    root = args.data_root or str(Path(os.environ.get("ANTLR_EXP_DATA") or "data") / "mnist")
    if args.worker:
        return worker(root, args.threads)
    if args.against:
        return against(args.against, root, args.threads, args.block, args.json)

    import torch

    from antlr_exp.cli.runtime import tune_malloc

    tune_malloc()
    if args.threads:
        torch.set_num_threads(args.threads)
    common = ["task=mnist", "method=antlr", f"data.root={root}", "trainer.progress_bar=false", *args.overrides]
    if args.limit_train:
        common.append(f"data.limit_train={args.limit_train}")
    trainers = {
        name: build([*common, f"trainer.train_early_stop={flag}"])
        for name, flag in (("full_window", "false"), ("early_stop", "true"))
    }
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
        "training_images": len(trainers["early_stop"].data.train),
        "steps": steps,
        "batch_size": trainers["early_stop"].settings.batch_size,
        "threads": torch.get_num_threads(),
        "epoch_s": {k: round(v, 2) for k, v in spent.items()},
        "speedup": spent["full_window"] / spent["early_stop"],
        "mean_simulated_steps": simulated,
    }
    print(
        f"one epoch, {result['training_images']} training images, {steps} steps of {result['batch_size']}, "
        f"{result['threads']} thread(s)"
    )
    for name in trainers:
        print(f"  {name:<12} {spent[name]:8.1f} s   {simulated[name]:6.1f} simulated steps per training step")
    print(f"  early stop: {result['speedup']:.2f}x faster")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
