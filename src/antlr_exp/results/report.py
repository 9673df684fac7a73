"""``antlr-report``: a table of mean and standard deviation over trials from multirun folders.

Every folder below the given paths that holds a ``summary.json`` is one finished job; its
``.hydra/config.yaml`` says what it ran (for an ``evaluate=`` run, the evaluated checkpoint's
config, saved beside its summary as ``evaluated_config.yaml``). Jobs are grouped by method, loss
and every other config value that differs between jobs of one method (except the seed and
bookkeeping such as paths, caches and loggers), so
``antlr-train -m method=activation,timing,antlr seed=0,1,2`` gives one row per method with n = 3.
With ``--by``, the task and the loss stay columns wherever the jobs differ in them (an MNIST
accuracy is never averaged with a spike-train task's). A job folder reached through several of
the paths counts once.
A job folder without a summary (failed or still running) and a job a sweep never started are
named below the table; an unreadable summary is skipped with a warning.

Standard deviations are sample standard deviations (ddof = 1); with one trial there is none.
"""

from __future__ import annotations

import csv
import difflib
import io
import json
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from omegaconf import OmegaConf

# importing the resolvers registers those saved configs use; neither module loads torch
from ..config.resolvers import flatten
from .layout import EVALUATED_CONFIG, HYDRA_CONFIG, MULTIRUN_FILE, SUMMARY_FILE, TRIALS_FILE

DEFAULT_METRICS = (
    "test_accuracy",
    "test_hidden_spikes_per_sample",
    "test_output_spikes_per_sample",
    "test_hidden_spikes_to_decision_per_sample",
    "test_output_spikes_to_decision_per_sample",
    "test_synops_per_sample",
    "test_synops_to_decision_per_sample",
    "test_loss",
)
#: Config keys (and prefixes) that never define a setting.
NOT_A_SETTING = (
    "seed",
    "resume",
    "evaluate",
    "device",
    "kernels",
    "data.root",
    "data.download",
    "logger",
    "trainer.progress_bar",
    "optimized_metric",
    "task.options.cache_dir",
    "trainer.record_gradients",
)
#: Columns every table starts with.
ALWAYS = ("method.name", "loss.name")
#: Kept in every grouping, also one given with --by, wherever the jobs differ in them: the mean of
#: an MNIST accuracy and a spike-train task's, or of two different losses, means nothing.
NEVER_MIXED = ("task.name", "loss.name")
#: Summary keys that are metrics (``<split>_<name>``): each must be a number (or null).
METRIC_PREFIXES = ("train_", "val_", "test_")
FORMATS = ("markdown", "csv", "json")


@dataclass
class Jobs:
    """What the folders hold: finished jobs, and the job folders that are not."""

    finished: list = field(default_factory=list)  # [(flat config, summary)]
    folders: list = field(default_factory=list)  # the job folder of each finished job
    failed: list = field(default_factory=list)  # job folders with a config and no summary
    missing: list = field(default_factory=list)  # (sweep folder, job number) never started
    skipped: list = field(default_factory=list)  # (summary file, why)


def _job_config(folder: Path) -> Optional[Path]:
    for candidate in (folder / EVALUATED_CONFIG, folder / HYDRA_CONFIG):
        if candidate.is_file():
            return candidate
    return None


def expected_jobs(sweep: Path) -> Optional[int]:
    """How many jobs the sweep in ``sweep`` (its ``multirun.yaml``) asked for, or None."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    try:
        hydra = OmegaConf.load(sweep / MULTIRUN_FILE).hydra
        sweeper = OmegaConf.to_container(hydra.sweeper, resolve=False)
        if "optuna" in str(sweeper.get("_target_", "")):
            return int(sweeper["n_trials"])
        arguments = {str(k): f"{k}={v}" for k, v in (sweeper.get("params") or {}).items()}
        for override in hydra.overrides.task:
            arguments[str(override).split("=", 1)[0]] = str(override)
        count = 1
        for override in OverridesParser.create().parse_overrides(list(arguments.values())):
            if override.is_sweep_override():
                count *= len(list(override.sweep_string_iterator()))
        return count
    except Exception:  # no multirun.yaml, or a sweep this cannot count
        return None


def _not_a_number(summary: dict) -> Optional[str]:
    """The first metric of ``summary`` that is neither a number nor null, as ``key=value``."""
    for key, value in summary.items():
        number = isinstance(value, (int, float)) and not isinstance(value, bool)
        if key.startswith(METRIC_PREFIXES) and value is not None and not number:
            return f"{key}={value!r} is not a number"
    return None


def scan(paths) -> Jobs:
    """Every job below ``paths``: finished (config + readable summary), failed, missing. A job
    folder reached through several of ``paths`` (``SW SW/0``, ``SW SW/``) counts once."""
    jobs = Jobs()
    seen: set = set()  # the real paths of the job and sweep folders already counted
    for path in paths:
        path = Path(path)
        for summary_file in sorted(path.rglob(SUMMARY_FILE)):
            if summary_file.parent.resolve() in seen:
                continue
            seen.add(summary_file.parent.resolve())
            config_file = _job_config(summary_file.parent)
            if config_file is None:
                continue
            try:
                summary = json.loads(summary_file.read_text())
                if not isinstance(summary, dict):
                    raise ValueError("not a JSON object")
                if _not_a_number(summary):
                    raise ValueError(_not_a_number(summary))
                config = OmegaConf.to_container(OmegaConf.load(config_file), resolve=True)
            except Exception as error:
                jobs.skipped.append((summary_file, f"{type(error).__name__}: {error}"))
                continue
            jobs.finished.append((flatten(config), summary))
            jobs.folders.append(summary_file.parent)
        for sweep_file in sorted(path.rglob(MULTIRUN_FILE)) if path.is_dir() else []:
            sweep = sweep_file.parent
            if ("sweep", sweep.resolve()) in seen:
                continue
            seen.add(("sweep", sweep.resolve()))
            numbered = {int(p.name): p for p in sweep.iterdir() if p.is_dir() and p.name.isdigit()}
            for number, folder in sorted(numbered.items()):
                finished = (folder / SUMMARY_FILE).is_file() or (folder / TRIALS_FILE).is_file()
                if (folder / HYDRA_CONFIG).is_file() and not finished:
                    jobs.failed.append(folder)
            expected = expected_jobs(sweep)
            candidates = list(numbered) + ([expected - 1] if expected else [])
            jobs.missing += [(sweep, n) for n in range(max(candidates, default=-1) + 1) if n not in numbered]
    return jobs


def load_jobs(paths) -> list:
    """``[(flat config, summary)]`` of every finished job below ``paths``, in folder order."""
    return scan(paths).finished


def setting_keys(jobs: list) -> list:
    """``method.name``, ``loss.name`` and every other config key whose value differs between jobs
    of the same method (keys that follow from the method add no column)."""
    by_method: dict = {}
    for config, _ in jobs:
        by_method.setdefault(config.get("method.name"), []).append(config)
    keys = list(ALWAYS)
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


class ReportError(ValueError):
    """A --by or --metrics key no job has."""


def check_keys(jobs: list, by: Optional[list], metrics: Optional[list]) -> None:
    """Every ``by`` key must be a config key of some job, every metric a numeric summary key."""
    config_keys = sorted(set().union(*(config for config, _ in jobs))) if jobs else []
    metric_keys = sorted(
        {k for _, s in jobs for k, v in s.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    )
    for flag, given, accepted in (("--by", by or [], config_keys), ("--metrics", metrics or [], metric_keys)):
        for key in given:
            if key not in accepted:
                close = difflib.get_close_matches(key, accepted, n=3)
                hint = f"did you mean {', '.join(close)}? " if close else ""
                raise ReportError(f"{flag} {key}: no job has this key; {hint}accepted: {', '.join(accepted)}")


def aggregate(paths, by: Optional[list] = None, metrics: Optional[list] = None, jobs: Optional[list] = None) -> list:
    """One dict per setting: the ``by`` keys, ``n`` and ``<metric>_mean`` / ``<metric>_std``."""
    jobs = load_jobs(paths) if jobs is None else jobs
    if by:
        differ = [k for k in NEVER_MIXED if len({repr(config.get(k)) for config, _ in jobs}) > 1]
        by = [k for k in differ if k not in by] + list(by)
    else:
        by = setting_keys(jobs)
    metrics = list(metrics) if metrics else [m for m in DEFAULT_METRICS if any(s.get(m) is not None for _, s in jobs)]
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


def _columns(rows: list) -> tuple:
    by = [k for k in rows[0] if k != "n" and not k.endswith(("_mean", "_std"))]
    metrics = [k[: -len("_mean")] for k in rows[0] if k.endswith("_mean")]
    return by, metrics


def markdown(rows: list, by: list, metrics: list) -> str:
    header = [*by, "n", *metrics]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        cells = [str(row[k]) for k in by] + [str(row["n"])]
        cells += [_cell(row[f"{m}_mean"], row[f"{m}_std"]) for m in metrics]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def render(rows: list, fmt: str = "markdown") -> str:
    """The table as markdown (mean ± std cells), CSV or JSON (one column per mean and std)."""
    if fmt == "markdown":
        return markdown(rows, *_columns(rows))
    if fmt == "json":
        return json.dumps(rows, indent=2)
    stream = io.StringIO()
    writer = csv.DictWriter(stream, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return stream.getvalue().rstrip("\n")


def problems(jobs: Jobs) -> list:
    """Lines naming the skipped summaries, failed jobs and missing jobs."""
    lines = [f"warning: skipped {path}: unreadable summary ({why})" for path, why in jobs.skipped]
    if jobs.failed:
        lines.append(
            f"{len(jobs.failed)} failed or unfinished job(s) (no summary.json): "
            + ", ".join(str(f) for f in jobs.failed)
        )
    if jobs.missing:
        lines.append(
            f"{len(jobs.missing)} job(s) never started: " + ", ".join(str(sweep / str(n)) for sweep, n in jobs.missing)
        )
    return lines


def sweep_report(folder: Path) -> str:
    """What a sweep ends with: the table of ``antlr-report FOLDER`` and its failed or missing jobs."""
    jobs = scan([folder])
    lines = [f"antlr-report {folder}:"]
    rows = aggregate([folder], jobs=jobs.finished)
    lines.append(render(rows) if rows else f"no finished jobs below {folder}")
    return "\n".join(lines + problems(jobs))


def main(argv: Optional[list] = None) -> int:
    """The ``antlr-report`` command (:mod:`antlr_exp.cli.report`)."""
    from ..cli.report import main as command

    return command(argv)


if __name__ == "__main__":
    sys.exit(main())
