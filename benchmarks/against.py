"""One training step of the bench's shapes: this checkout against an earlier git revision, side by side.

The source of revision REV (``git archive``) and this checkout each run in a worker process of their
own, building the same step (:func:`benchmarks.rules.build_step`: same shape, rule, batch and
weights; the rows import only the public names, which both versions have). The coordinator has
them take turns, ``--block`` steps at a time (all but the first timed), alternating which goes
first, so load from other processes falls on both alike. Prints the median ms per step of each and
the ratio before/after (above 1: this checkout is faster).

    python -m benchmarks.against 6c01395 --shapes mnist nmnist --methods antlr --threads 1
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

WORKER = """
import sys, time, torch
torch.set_num_threads(int(sys.argv[1]))
from benchmarks.rules import build_step
import antlr_exp
steps = {}
for row in sys.argv[2:]:
    shape, method = row.split(":")
    steps[row] = build_step(shape, method)
    steps[row](); steps[row]()
print("ready", antlr_exp.__file__, flush=True)
for line in sys.stdin:
    row, block = line.split()
    times = []
    for i in range(int(block)):
        start = time.perf_counter(); steps[row](); spent = time.perf_counter() - start
        if i:
            times.append(spent)
    print(" ".join(map(str, times)), flush=True)
"""


def start(src: Path, threads: int, rows: list, cwd: str) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(src), str(REPO)]), OMP_NUM_THREADS=str(threads))
    worker = subprocess.Popen(
        [sys.executable, "-c", WORKER, str(threads), *rows], env=env, cwd=cwd, stdin=subprocess.PIPE,
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    ready = worker.stdout.readline().split()  # after the kernels are built and the steps warmed up
    if not ready or not Path(ready[1]).resolve().is_relative_to(src.resolve()):
        raise SystemExit(f"the worker for {src} did not start with its own package ({ready})")
    return worker


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("rev", help="the git revision to compare against")
    parser.add_argument("--shapes", nargs="+", default=["mnist", "nmnist"])
    parser.add_argument("--methods", nargs="+", default=["antlr"])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--turns", type=int, default=15, help="turns per row and version")
    parser.add_argument("--block", type=int, default=4, help="steps per turn (the first is not timed)")
    parser.add_argument("--json", type=Path, help="also write the medians and ratios here")
    args = parser.parse_args(argv)
    rows = [f"{shape}:{method}" for shape in args.shapes for method in args.methods]
    with tempfile.TemporaryDirectory(prefix="bench-against-") as tmp:
        archive = subprocess.run(["git", "-C", str(REPO), "archive", args.rev, "src"], check=True, capture_output=True)
        subprocess.run(["tar", "-x", "-C", tmp], input=archive.stdout, check=True)
        sources = {"before": Path(tmp) / "src", "after": REPO / "src"}
        workers = {name: start(src, args.threads, rows, tmp) for name, src in sources.items()}
        times = {(name, row): [] for name in workers for row in rows}
        for turn in range(args.turns):
            order = list(workers) if turn % 2 == 0 else list(reversed(workers))
            for row in rows:
                for name in order:
                    workers[name].stdin.write(f"{row} {args.block}\n")
                    workers[name].stdin.flush()
                    times[(name, row)] += [float(x) for x in workers[name].stdout.readline().split()]
        for worker in workers.values():
            worker.stdin.close()
            worker.wait()
    result = {"before_rev": args.rev, "threads": args.threads, "rows": {}}
    print(f"one training step, {args.threads} thread(s), this checkout against {args.rev}")
    for row in rows:
        before, after = (statistics.median(times[(name, row)]) * 1e3 for name in ("before", "after"))
        result["rows"][row] = {"before_ms": before, "after_ms": after, "ratio": before / after}
        count = len(times[("after", row)])
        print(
            f"  {row:<14} before {before:8.2f} ms  after {after:8.2f} ms  (median of {count})  before/after {before / after:.3f}"
        )
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
