"""``antlr-plot``: draw a sweep's results as PNGs.

``accuracy_vs_spikes.png``: every finished job as a point, test accuracy (the test loss on tasks
without labels) against test spikes per sample (hidden + output), one colour per setting (the
rows of ``antlr-report``), the setting's mean as a larger marker. ``loss_curves.png``: training
and validation loss against the optimizer step from each job's ``metrics.csv``, the mean over the
setting's jobs. Needs matplotlib (``pip install 'antlr-exp[figures]'``).
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path
from typing import Optional

from .report import scan, setting_keys

SPIKES = ("test_hidden_spikes_per_sample", "test_output_spikes_per_sample")


def groups(paths) -> dict:
    """``{setting label: [(summary, job folder)]}`` in the order the settings first appear."""
    jobs = scan(paths)
    keys = setting_keys(jobs.finished)
    grouped: dict = {}
    for (config, summary), folder in zip(jobs.finished, jobs.folders):
        label = " ".join(f"{k.rsplit('.', 1)[0] if k.endswith('.name') else k}={config.get(k)}" for k in keys)
        grouped.setdefault(label, []).append((summary, folder))
    return grouped


def _mean(values: list) -> float:
    return sum(values) / len(values)


def accuracy_vs_spikes(grouped: dict):
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(7, 5))
    has_accuracy = any(s.get("test_accuracy") is not None for jobs in grouped.values() for s, _ in jobs)
    metric = "test_accuracy" if has_accuracy else "test_loss"
    for label, jobs in grouped.items():
        points = [(sum(s[k] for k in SPIKES), s[metric]) for s, _ in jobs
                  if s.get(metric) is not None and all(s.get(k) is not None for k in SPIKES)]
        if not points:
            continue
        xs, ys = zip(*points)
        drawn = axes.scatter(xs, ys, alpha=0.5, label=f"{label} (n={len(points)})")
        axes.scatter([_mean(xs)], [_mean(ys)], s=150, marker="D", edgecolors="black", color=drawn.get_facecolor()[0])
    axes.set_xlabel("test spikes per sample (hidden + output)")
    axes.set_ylabel(metric.replace("_", " "))
    axes.grid(alpha=0.3)
    axes.legend(fontsize=8)
    figure.tight_layout()
    return figure


def _curves(folder: Path) -> dict:
    with open(folder / "metrics.csv") as stream:
        rows = list(csv.DictReader(stream))
    return {int(r["step"]): {k: float(r[k]) for k in ("train_loss", "val_loss") if r.get(k)} for r in rows}


def loss_curves(grouped: dict):
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, 2, figsize=(11, 4.5), sharey=True)
    for index, (label, jobs) in enumerate(grouped.items()):
        curves = [_curves(folder) for _, folder in jobs if (folder / "metrics.csv").is_file()]
        if not curves:
            continue
        steps = sorted(set.intersection(*(set(c) for c in curves)))  # the steps every job reached
        for ax, key in zip(axes, ("train_loss", "val_loss")):
            ax.plot(steps, [_mean([c[step][key] for c in curves]) for step in steps], color=f"C{index}",
                    label=f"{label} (n={len(curves)})")
    for ax, title in zip(axes, ("training loss", "validation loss")):
        ax.set_title(f"{title} (mean over jobs)")
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("loss")
    axes[0].legend(fontsize=8)
    figure.tight_layout()
    return figure


def main(argv: Optional[list] = None) -> int:
    parser = argparse.ArgumentParser(prog="antlr-plot", description=__doc__.split("\n\n")[0])
    parser.add_argument("paths", nargs="+", help="sweep folders (or any folders holding job folders)")
    parser.add_argument("--out", type=Path, help="where the PNGs go (default: the first folder)")
    args = parser.parse_args(argv)
    try:
        import matplotlib

        matplotlib.use("Agg")
    except ImportError:
        parser.exit(2, "antlr-plot: error: matplotlib is not installed; pip install 'antlr-exp[figures]'\n")
    for path in args.paths:
        if not Path(path).is_dir():
            parser.exit(2, f"antlr-plot: error: {path} is not a folder\n")
    grouped = groups(args.paths)
    if not grouped:
        parser.exit(2, f"antlr-plot: error: no finished jobs (summary.json with .hydra/config.yaml) below "
                       f"{', '.join(args.paths)}\n")
    out = args.out or Path(args.paths[0])
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        parser.exit(2, f"antlr-plot: error: --out {out} cannot be made a folder: {error.strerror or error}\n")
    import matplotlib.pyplot as plt

    for name, draw in (("accuracy_vs_spikes.png", accuracy_vs_spikes), ("loss_curves.png", loss_curves)):
        figure = draw(grouped)
        try:
            figure.savefig(out / name, dpi=120)
        except OSError as error:
            parser.exit(2, f"antlr-plot: error: {out / name} cannot be written: {error.strerror or error}\n")
        finally:
            plt.close(figure)
        print(out / name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
