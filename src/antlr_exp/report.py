"""``antlr-report``: a table of mean and standard deviation over trials from multirun folders.

Every folder below the given paths that holds a ``summary.json`` is one finished job; its
``.hydra/config.yaml`` says what it ran. Jobs are grouped by method and by every other config
value that differs between jobs of one method (except the seed and bookkeeping such as paths
and loggers), so
``antlr-train -m method=activation,timing,antlr seed=0,1,2`` gives one row per method with n = 3.

Standard deviations are sample standard deviations (ddof = 1); with one trial there is none.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import sys
from pathlib import Path
from typing import Optional

from omegaconf import OmegaConf

from .config import flatten  # importing config also registers the resolvers saved configs use

DEFAULT_METRICS = (
    "test_accuracy",
    "test_hidden_spikes_per_sample",
    "test_output_spikes_per_sample",
    "test_hidden_spikes_to_decision_per_sample",
    "test_output_spikes_to_decision_per_sample",
    "test_loss",
)
#: Config keys (and prefixes) that never define a setting.
NOT_A_SETTING = ("seed", "resume", "evaluate", "device", "data.root", "data.download", "logger",
                 "trainer.progress_bar", "optimized_metric")


def load_jobs(paths) -> list:
    """``[(flat config, summary)]`` of every finished job below ``paths``, in folder order."""
    jobs = []
    for path in paths:
        for summary_file in sorted(Path(path).rglob("summary.json")):
            config_file = summary_file.parent / ".hydra" / "config.yaml"
            if not config_file.is_file():
                continue
            config = OmegaConf.to_container(OmegaConf.load(config_file), resolve=True)
            jobs.append((flatten(config), json.loads(summary_file.read_text())))
    return jobs


def setting_keys(jobs: list) -> list:
    """``method.name`` and every other config key whose value differs between jobs of the same
    method (keys that follow from the method, such as its loss, add no column)."""
    by_method: dict = {}
    for config, _ in jobs:
        by_method.setdefault(config.get("method.name"), []).append(config)
    keys = ["method.name"]
    for key in sorted(set().union(*(config for config, _ in jobs))) if jobs else []:
        if key in keys or any(key == k or key.startswith(k + ".") for k in NOT_A_SETTING):
            continue
        if any(len({repr(c.get(key)) for c in configs}) > 1 for configs in by_method.values()):
            keys.append(key)
    return keys


def mean_std(values: list) -> tuple:
    """Mean and sample standard deviation (ddof = 1; None with fewer than two values)."""
    mean = sum(values) / len(values)
    if len(values) < 2:
        return mean, None
    return mean, math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))


def aggregate(paths, by: Optional[list] = None, metrics: Optional[list] = None) -> list:
    """One dict per setting: the ``by`` keys, ``n`` and ``<metric>_mean`` / ``<metric>_std``."""
    jobs = load_jobs(paths)
    by = list(by) if by else setting_keys(jobs)
    metrics = list(metrics) if metrics else [m for m in DEFAULT_METRICS
                                             if any(s.get(m) is not None for _, s in jobs)]
    groups: dict = {}
    for config, summary in jobs:
        groups.setdefault(tuple(config.get(k) for k in by), []).append(summary)
    rows = []
    for setting, summaries in groups.items():
        row = dict(zip(by, setting))
        row["n"] = len(summaries)
        for metric in metrics:
            values = [s[metric] for s in summaries if s.get(metric) is not None]
            row[f"{metric}_mean"], row[f"{metric}_std"] = mean_std(values) if values else (None, None)
        rows.append(row)
    return rows


def _cell(mean, std) -> str:
    if mean is None:
        return "-"
    return f"{mean:.4g}" if std is None else f"{mean:.4g} ± {std:.2g}"


def markdown(rows: list, by: list, metrics: list) -> str:
    header = [*by, "n", *metrics]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        cells = [str(row[k]) for k in by] + [str(row["n"])]
        cells += [_cell(row[f"{m}_mean"], row[f"{m}_std"]) for m in metrics]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def sweep_report(folder: Path) -> str:
    """The table a sweep ends with (what ``antlr-report FOLDER`` prints)."""
    rows = aggregate([folder])
    if not rows:
        return f"antlr-report: no finished jobs below {folder}"
    by = [k for k in rows[0] if k != "n" and not k.endswith(("_mean", "_std"))]
    metrics = [k[: -len("_mean")] for k in rows[0] if k.endswith("_mean")]
    return f"antlr-report {folder}:\n" + markdown(rows, by, metrics)


def main(argv: Optional[list] = None) -> None:
    parser = argparse.ArgumentParser(prog="antlr-report", description=__doc__.split("\n\n")[0])
    parser.add_argument("paths", nargs="+", help="multirun folders (or any folders holding job folders)")
    parser.add_argument("--by", nargs="+", help="config keys to group by (default: method.name and what varies)")
    parser.add_argument("--metrics", nargs="+", help=f"summary keys (default: {', '.join(DEFAULT_METRICS)})")
    parser.add_argument("--csv", type=Path, help="also write the table as CSV to this file")
    args = parser.parse_args(argv)
    for path in args.paths:
        if not Path(path).is_dir():
            parser.exit(2, f"antlr-report: error: {path} is not a folder\n")
    rows = aggregate(args.paths, args.by, args.metrics)
    if not rows:
        parser.exit(2, f"antlr-report: error: no finished jobs (summary.json with .hydra/config.yaml) below {', '.join(args.paths)}\n")
    by = [k for k in rows[0] if k != "n" and not k.endswith(("_mean", "_std"))]
    metrics = [k[: -len("_mean")] for k in rows[0] if k.endswith("_mean")]
    print(markdown(rows, by, metrics))
    if args.csv:
        with open(args.csv, "w", newline="") as stream:
            writer = csv.DictWriter(stream, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)


if __name__ == "__main__":
    sys.exit(main())
