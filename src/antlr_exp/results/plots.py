"""``antlr-plot``: draw a sweep's results as PNGs, or a run's spikes with ``--raster RUN``.

``accuracy_vs_spikes.png``: every finished job as a point, test accuracy (the test loss on tasks
without labels) against test spikes per sample (hidden + output), one colour per setting (the
rows of ``antlr-report``), the setting's mean as a larger marker; ``accuracy_vs_synops.png`` the
same against synaptic operations per sample (where the jobs measured them). ``loss_curves.png``: training
and validation loss against the optimizer step from each job's ``metrics.csv``, the mean over the
setting's jobs. Needs matplotlib (``pip install 'antlr-exp[figures]'``).

The figures of ``antlr-figure`` (:mod:`antlr_exp.figures`) are drawn here too: accuracy against
spikes per setting, loss curves with their spread, the weight sweep and the loss landscape. Each
drawing function returns a matplotlib figure; :func:`save` writes it.
"""

from __future__ import annotations

import csv
import math
import sys
from pathlib import Path
from typing import Optional

from .layout import METRICS_FILE
from .report import mean_std, scan, setting_keys

SPIKES = ("test_hidden_spikes_per_sample", "test_output_spikes_per_sample")
SYNOPS = "test_synops_per_sample"


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


def _spikes(summary: dict) -> Optional[float]:
    values = [summary.get(k) for k in SPIKES]
    return None if None in values else sum(values)


def _synops(summary: dict) -> Optional[float]:
    return summary.get(SYNOPS)


def has_synops(grouped: dict) -> bool:
    """Whether any job's summary has the synaptic operations (runs before they were measured have not)."""
    return any(_synops(s) is not None for jobs in grouped.values() for s, _ in jobs)


def _accuracy_against(grouped: dict, x_of, xlabel: str):
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(7, 5))
    has_accuracy = any(s.get("test_accuracy") is not None for jobs in grouped.values() for s, _ in jobs)
    metric = "test_accuracy" if has_accuracy else "test_loss"
    for label, jobs in grouped.items():
        points = [(x_of(s), s[metric]) for s, _ in jobs if s.get(metric) is not None and x_of(s) is not None]
        if not points:
            continue
        xs, ys = zip(*points)
        drawn = axes.scatter(xs, ys, alpha=0.5, label=f"{label} (n={len(points)})")
        axes.scatter([_mean(xs)], [_mean(ys)], s=150, marker="D", edgecolors="black", color=drawn.get_facecolor()[0])
    axes.set_xlabel(xlabel)
    axes.set_ylabel(metric.replace("_", " "))
    axes.grid(alpha=0.3)
    legend(axes, fontsize=8)
    figure.tight_layout()
    return figure


def accuracy_vs_spikes(grouped: dict):
    return _accuracy_against(grouped, _spikes, "test spikes per sample (hidden + output)")


def accuracy_vs_synops(grouped: dict):
    return _accuracy_against(grouped, _synops, "test synaptic operations per sample")


def read_metrics(folder: Path) -> list:
    """The rows of a job's ``metrics.csv``, one dict per evaluation point, every value a float
    (nan where the row has none)."""
    with open(Path(folder) / METRICS_FILE, newline="") as stream:
        return [
            {k: float(v) if v not in ("", None) else math.nan for k, v in row.items()} for row in csv.DictReader(stream)
        ]


def _curves(folder: Path) -> dict:
    return {
        int(r["step"]): {k: r[k] for k in ("train_loss", "val_loss") if not math.isnan(r.get(k, math.nan))}
        for r in read_metrics(folder)
    }


def mean_curve(curves: list) -> tuple:
    """``curves``: one ``{step: value}`` per job. Returns the steps every job reached (sorted), the
    mean over the jobs at each, and its standard error (0 with one job)."""
    steps = sorted(set.intersection(*(set(c) for c in curves)))
    spread = [mean_std([c[step] for c in curves]) for step in steps]
    return steps, [m for m, _ in spread], [(sd or 0.0) / math.sqrt(len(curves)) for _, sd in spread]


def loss_curves(grouped: dict):
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, 2, figsize=(11, 4.5), sharey=True)
    for index, (label, jobs) in enumerate(grouped.items()):
        curves = [_curves(folder) for _, folder in jobs if (folder / METRICS_FILE).is_file()]
        if not curves:
            continue
        for ax, key in zip(axes, ("train_loss", "val_loss")):
            steps, means, _ = mean_curve([{step: v[key] for step, v in c.items() if key in v} for c in curves])
            ax.plot(steps, means, color=f"C{index}", label=f"{label} (n={len(curves)})")
    for ax, title in zip(axes, ("training loss", "validation loss")):
        ax.set_title(f"{title} (mean over jobs)")
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("loss")
    legend(axes[0], fontsize=8)  # runs without a metrics.csv draw no curve
    figure.tight_layout()
    return figure


# -- the figures of antlr-figure --------------------------------------------------------------

#: the rules in the paper's order, and their colour in every figure
METHOD_ORDER = ("activation", "activation_rnn", "timing", "antlr")
COLORS = {"activation": "tab:blue", "activation_rnn": "tab:cyan", "timing": "tab:orange", "antlr": "tab:green"}
#: the spikes "required to classify a sample" (paper Figs. 7-8): counted up to the decision
SPIKES_TO_DECISION = ("test_hidden_spikes_to_decision_per_sample", "test_output_spikes_to_decision_per_sample")


def by_method(items, key=lambda item: item) -> list:
    """``items`` sorted by rule in the paper's order (others after them)."""
    order = {m: i for i, m in enumerate(METHOD_ORDER)}
    return sorted(items, key=lambda item: order.get(key(item), len(order)))


def legend(ax, **options) -> None:
    """The legend of ``ax`` where something on it has a label; none (and no matplotlib warning)
    on a panel with nothing to show, e.g. a sweep with no finished run yet."""
    if ax.get_legend_handles_labels()[0]:
        ax.legend(**options)


def save(figure, path: Path, dpi: int = 110) -> None:
    """Write ``figure`` to ``path`` (its folder made if missing) and close it."""
    import matplotlib.pyplot as plt

    Path(path).parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=dpi)
    plt.close(figure)
    print(f"wrote {path}")


def accuracy_vs_spikes_panels(panels: list, suptitle: str, label_of=None):
    """One row per ``(title, rows)`` panel, ``rows`` as ``antlr-report`` aggregates them (one per
    rule or setting: ``test_accuracy_mean``/``_std``, ``<spike metric>_mean``/``_std``, ``n``); two
    columns, hidden and output spikes per sample up to the decision: test accuracy against spikes,
    the mean with standard-deviation bars in both directions."""
    import matplotlib.pyplot as plt

    label_of = label_of or (lambda r: r["method.name"])
    figure, axes = plt.subplots(len(panels), 2, figsize=(10, 3.6 * len(panels)), squeeze=False)
    for (title, rows), row_axes in zip(panels, axes):
        for ax, metric, what in zip(row_axes, SPIKES_TO_DECISION, ("hidden", "output")):
            for r in rows:
                acc, acc_sd = r["test_accuracy_mean"], r["test_accuracy_std"] or 0.0
                x, x_sd = r[f"{metric}_mean"], r[f"{metric}_std"] or 0.0
                if acc is None or x is None:
                    continue
                ax.errorbar(
                    x,
                    100 * acc,
                    xerr=x_sd,
                    yerr=100 * acc_sd,
                    fmt="o",
                    capsize=4,
                    color=COLORS.get(r["method.name"]),
                    label=f"{label_of(r)}: {100 * acc:.2f} ± {100 * acc_sd:.2f} % (n={r['n']})",
                )
            ax.set_xlabel(f"{what} spikes per sample, up to the decision (spikes)")
            ax.set_ylabel("test accuracy (%)")
            ax.set_title(f"{title}: {what} spikes")
            ax.grid(alpha=0.3)
            legend(ax, fontsize=7, loc="best")
    figure.suptitle(suptitle)
    figure.tight_layout()
    return figure


def loss_panels(panels: list, suptitle: str, key: str = "train_loss"):
    """One panel per ``(title, {rule: [curve per trial]})``, a curve ``{step: loss}``: the mean over
    the trials with its standard error shaded, log y."""
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, len(panels), figsize=(5.5 * len(panels), 4), squeeze=False)
    for ax, (title, curves_by_method) in zip(axes[0], panels):
        for method in by_method(curves_by_method):
            curves = curves_by_method[method]
            steps, means, sems = mean_curve(curves)
            color = COLORS.get(method)
            ax.plot(steps, means, color=color, label=f"{method} (n={len(curves)})")
            ax.fill_between(
                steps,
                [max(m - s, 1e-3) for m, s in zip(means, sems)],
                [m + s for m, s in zip(means, sems)],
                color=color,
                alpha=0.2,
            )
        ax.set_yscale("log")
        ax.set_xlabel("training iteration")
        ax.set_ylabel("training loss (spike-train loss, mean over trials)")
        ax.set_title(title)
        ax.grid(alpha=0.3, which="both")
        legend(ax)
    figure.suptitle(suptitle)
    figure.tight_layout()
    return figure


def weight_sweep(series: list, suptitle: str):
    """One row per ``(rows, key, axis label, symlog)``: test accuracy (left) and spikes per sample
    up to the decision (right) against the swept weight ``key``, mean ± std over trials; the x
    axis symlog (linear near 0) or log."""
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(len(series), 2, figsize=(10, 3.6 * len(series)), squeeze=False)
    for row_axes, (rows, key, label, symlog) in zip(axes, series):
        if not rows:
            continue
        x = [r[key] for r in rows]
        row_axes[0].errorbar(
            x,
            [100 * r["test_accuracy_mean"] for r in rows],
            yerr=[100 * (r["test_accuracy_std"] or 0.0) for r in rows],
            fmt="o-",
            capsize=4,
            color=COLORS["antlr"],
            label=f"antlr (n={rows[0]['n']} per point)",
        )
        row_axes[0].set_ylabel("test accuracy (%)")
        for metric, what, marker in zip(SPIKES_TO_DECISION, ("hidden", "output"), ("o-", "s--")):
            row_axes[1].errorbar(
                x,
                [r[f"{metric}_mean"] for r in rows],
                yerr=[r[f"{metric}_std"] or 0.0 for r in rows],
                fmt=marker,
                capsize=4,
                label=f"{what} spikes to decision",
            )
        row_axes[1].set_ylabel("spikes per sample (spikes)")
        for ax in row_axes:
            ax.set_xscale("symlog", linthresh=0.1) if symlog else ax.set_xscale("log")
            ax.set_xlabel(label)
            ax.grid(alpha=0.3)
            legend(ax, fontsize=8)
    figure.suptitle(suptitle)
    figure.tight_layout()
    return figure


def landscape(result: dict, titles: dict, suptitle: str):
    """Fig. 5: one column per surface of ``titles`` (``{key: title}``, ``result["surfaces"][key]``
    each [n, n] over ``result["axis"]`` in both directions); row 1 on the true loss's colour
    scale, row 2 each on its own, row 3 inside the region where the output spike count equals the
    optimum's, minus the value at the optimum. The count-change boundary is dashed."""
    import matplotlib
    import matplotlib.pyplot as plt
    import numpy as np

    axis, loss, count, centre = result["axis"], result["loss"], result["count"], result["centre"]
    same = count == count[centre]
    extent = (axis[0], axis[-1], axis[0], axis[-1])
    figure, grid = plt.subplots(3, len(titles), figsize=(4.5 * len(titles), 13.5), constrained_layout=True)
    shared = matplotlib.colors.Normalize(vmin=float(loss.min()), vmax=float(loss.max()))
    rows = (
        ("shared colour scale (the true loss's)", "loss", "viridis", lambda z: z, True),
        ("own colour scale", "loss (rule's estimate)", "viridis", lambda z: z, False),
        (
            "same-count region, minus optimum",
            "loss - loss at optimum",
            "magma",
            lambda z: np.where(same, z - z[centre], np.nan),
            False,
        ),
    )
    for row, (label, bar_label, cmap, view, use_shared) in enumerate(rows):
        for column, (key, title) in enumerate(titles.items()):
            ax = grid[row, column]
            image = ax.imshow(
                view(result["surfaces"][key]),
                origin="lower",
                extent=extent,
                norm=shared if use_shared else None,
                cmap=cmap,
                aspect="equal",
                interpolation="nearest",
            )
            if (~same).any() and same.any():
                ax.contour(
                    axis, axis, same.astype(float), levels=[0.5], colors="white", linestyles="--", linewidths=1.0
                )
            ax.plot(0, 0, marker="+", color="red", markersize=10)
            ax.set_xlabel("Dim_0: step along PC1 (parameter units)")
            ax.set_ylabel("Dim_1: step along PC2 (parameter units)")
            ax.set_title(f"{title}\n{label}", fontsize=10)
            if not use_shared:
                figure.colorbar(image, ax=ax, label=bar_label, shrink=0.8)
        if use_shared:
            figure.colorbar(
                grid[row, -1].images[0], ax=grid[row, :], label="loss (spike-train loss, dimensionless)", shrink=0.9
            )
    figure.suptitle(suptitle, fontsize=12)
    return figure


def main(argv: Optional[list] = None) -> int:
    """The ``antlr-plot`` command (:mod:`antlr_exp.cli.plot`)."""
    from ..cli.plot import main as command

    return command(argv)


if __name__ == "__main__":
    sys.exit(main())
