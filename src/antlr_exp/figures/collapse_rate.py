"""How many trials of a run had their output layer collapse, and how accurate they were.

A trial collapsed when its output layer fired fewer than ``--below`` spikes per training sample
(default 1) in any evaluation row after the first epoch (``train_output_spikes_per_sample`` of
its ``metrics.csv``). Reads the ``seed_<s>/`` folders of stacked runs (``trials=K``) and plain
run folders alike, prints one line per trial and the rate with its 95 % Wilson interval.

    python -m antlr_exp.figures.collapse_rate multirun/collapse/plain/0 [more run folders] [--json out.json]
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import sys
from pathlib import Path

KEY = "train_output_spikes_per_sample"


def wilson_interval(successes: int, n: int, z: float = 1.959964) -> tuple:
    """The Wilson score interval of a binomial proportion (95 % by default)."""
    if n == 0:
        return (0.0, 1.0)
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return (max(0.0, centre - half), min(1.0, centre + half))


def trial_folders(paths: list) -> list:
    """Every folder below ``paths`` with a ``metrics.csv`` (a trial's own folder)."""
    found = []
    for path in paths:
        found += sorted({p.parent.resolve() for p in Path(path).rglob("metrics.csv")})
    return found


def trial_record(folder: Path, below: float) -> dict:
    """One trial: its seed, lowest output spikes per training sample after the first epoch, the
    epoch of its first collapse (or None), and its test accuracy (None before it finished)."""
    with open(folder / "metrics.csv") as stream:
        rows = list(csv.DictReader(stream))
    later = [row for row in rows if float(row["epoch"]) > 1 and row.get(KEY) not in (None, "")]
    lows = [float(row[KEY]) for row in later]
    collapsed_at = next((float(row["epoch"]) for row in later if float(row[KEY]) < below), None)
    summary_file = folder / "summary.json"
    summary = json.loads(summary_file.read_text()) if summary_file.is_file() else {}
    seed = summary.get("seed", folder.name.removeprefix("seed_"))  # a stacked trial's folder is seed_<s>
    return {
        "folder": str(folder),
        "seed": int(seed) if str(seed).isdigit() else seed,
        "epochs": float(rows[-1]["epoch"]) if rows else 0.0,
        "min_output_spikes": min(lows) if lows else None,
        "collapsed_at_epoch": collapsed_at,
        "test_accuracy": summary.get("test_accuracy"),
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("paths", nargs="+", help="run folders (a stacked run's job folder, or plain runs)")
    parser.add_argument(
        "--below", type=float, default=1.0, help="collapse: output spikes per training sample below this"
    )
    parser.add_argument("--json", type=Path, help="also write the records and the rate here")
    args = parser.parse_args(argv)
    records = [trial_record(folder, args.below) for folder in trial_folders(args.paths)]
    if not records:
        parser.exit(2, f"collapse_rate: error: no metrics.csv below {', '.join(args.paths)}\n")
    for r in records:
        low = "-" if r["min_output_spikes"] is None else f"{r['min_output_spikes']:.3g}"
        when = "-" if r["collapsed_at_epoch"] is None else f"{r['collapsed_at_epoch']:g}"
        acc = "-" if r["test_accuracy"] is None else f"{100 * r['test_accuracy']:.1f} %"
        print(
            f"seed {r['seed']}: epochs {r['epochs']:g}, lowest output spikes {low}, collapsed at epoch {when}, "
            f"test accuracy {acc}"
        )
    collapsed = sum(r["collapsed_at_epoch"] is not None for r in records)
    low, high = wilson_interval(collapsed, len(records))
    tested = [r["test_accuracy"] for r in records if r["test_accuracy"] is not None]
    mean = sum(tested) / len(tested) if tested else None
    std = math.sqrt(sum((a - mean) ** 2 for a in tested) / (len(tested) - 1)) if len(tested) > 1 else None
    print(
        f"collapsed: {collapsed} of {len(records)} ({100 * collapsed / len(records):.0f} %, 95 % interval "
        f"{100 * low:.0f}-{100 * high:.0f} %)"
        + (f"; test accuracy {100 * mean:.2f} +- {100 * std:.2f} % over {len(tested)}" if std is not None else "")
    )
    if args.json:
        args.json.write_text(
            json.dumps(
                {"trials": records, "collapsed": collapsed, "n": len(records), "interval95": [low, high]}, indent=2
            )
            + "\n"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
