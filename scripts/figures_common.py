"""Shared pieces of the figure drivers (fig6_matching, fig7_mnist, fig8_nmnist, lambda_sweep,
same_loss): the command line, running a sweep through ``antlr-train -m``, reading the job
folders back, and drawing / tabulating the results.

Every driver runs its sweeps as subprocesses (``antlr-train -m experiment=<preset> ...``), so the
same command scales out with ``--launcher local`` (joblib) or any Hydra launcher passed as an
extra override (e.g. ``hydra/launcher=slurm``). Aggregation over trials is ``antlr_exp.report``'s.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from omegaconf import OmegaConf  # noqa: E402

from antlr_exp import report  # noqa: E402
from antlr_exp.config import flatten  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
ANTLR_TRAIN = Path(sys.executable).parent / "antlr-train"
SCALES = ("tiny", "quick", "full")
METHOD_ORDER = ("activation", "activation_rnn", "timing", "antlr")
COLORS = {"activation": "tab:blue", "activation_rnn": "tab:cyan", "timing": "tab:orange", "antlr": "tab:green"}
# spikes "required to classify a sample" (paper Figs. 7-8): counted up to the decision
SPIKE_METRICS = ("test_hidden_spikes_to_decision_per_sample", "test_output_spikes_to_decision_per_sample")
TABLE_METRICS = ("test_accuracy", *SPIKE_METRICS,
                 "test_hidden_spikes_per_sample", "test_output_spikes_per_sample")


def parse_args(description: str, name: str, argv=None, extra=(), scales=SCALES) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=description)
    for flag, options in extra:
        p.add_argument(flag, **options)
    p.add_argument("--scale", choices=tuple(scales), default="quick",
                   help="full: the paper's trials/iterations/epochs; quick: minutes on 2 CPU cores; tiny: the test"
                        + ("; medium: all training images, 1 epoch, 3 trials" if "medium" in scales else ""))
    p.add_argument("--out", type=Path, default=REPO / "docs" / "figures", help="where the PNG and the table go")
    p.add_argument("--sweep-root", type=Path, default=None,
                   help="parent of the sweep folders (default multirun/<driver>_<scale>)")
    # the folder holding mnist/ and nmnist/, found as antlr-train's data.root finds it
    p.add_argument("--data", type=Path, default=Path(os.environ.get("ANTLR_EXP_DATA") or "data"), help="folder holding mnist/ and nmnist/ (default: $ANTLR_EXP_DATA, else data)")
    p.add_argument("--no-run", action="store_true", help="only redraw from existing sweep folders")
    p.add_argument("--jobs", type=int, default=1, help=">1: hydra/launcher=local with this many parallel jobs")
    p.add_argument("overrides", nargs="*", help="extra antlr-train overrides for every sweep (e.g. device=cuda)")
    args = p.parse_args(argv)
    args.name = name
    if args.sweep_root is None:
        args.sweep_root = REPO / "multirun" / f"{name}_{args.scale}{'_' + args.out.name if args.out.name != 'figures' else ''}"
    args.out.mkdir(parents=True, exist_ok=True)
    return args


def run_sweep(args: argparse.Namespace, label: str, overrides: list) -> Path:
    """``antlr-train -m <overrides>`` into ``<sweep root>/<label>``; returns that folder."""
    sweep_dir = (args.sweep_root / label).resolve()
    if args.no_run:
        return sweep_dir
    extra = list(args.overrides)
    if not sweep_dir.is_dir() and any(_is_resume(o) for o in extra):
        # resume=true continues a driver: its started sweeps continue, the ones it has not reached start
        print(f"[{label}: not started before, so it starts now (resume=true applies to started sweeps)]", flush=True)
        extra = [o for o in extra if not _is_resume(o)]
    cmd = [str(ANTLR_TRAIN), "-m", *overrides, *extra,
           f"hydra.sweep.dir={sweep_dir}", "trainer.progress_bar=false"]
    if args.jobs > 1:
        cmd += ["hydra/launcher=local", f"hydra.launcher.n_jobs={args.jobs}"]
    print("$", shlex.join(["antlr-train", *cmd[1:]]), flush=True)
    started = time.perf_counter()
    subprocess.run(cmd, cwd=REPO, check=True, stdout=subprocess.DEVNULL if args.scale == "tiny" else None)
    print(f"[{label}: {time.perf_counter() - started:.0f} s]", flush=True)
    return sweep_dir


def _is_resume(override: str) -> bool:
    key, _, value = override.partition("=")
    return key.lstrip("+~") == "resume" and value.strip().lower() in ("true", "yes", "1", "on")


def overrides_text(args: argparse.Namespace, scale_overrides: list) -> str:
    """The overrides every sweep of a driver ran with (the scale's, then the command line's; data
    and output settings left out), as the tables' preface states them."""
    shown = [o for o in [*scale_overrides, *args.overrides] if not o.startswith(("data.root=", "hydra.", "hydra/", "device=", "resume="))]
    return " ".join(shown) or "none"


def data_root(args: argparse.Namespace, task: str) -> str:
    return f"data.root={(args.data / task).resolve()}"


def seeds(n: int) -> str:
    """Trials 0..n-1, trained together in each job (one process per method and setting)."""
    return f"trials={n}"


# -- reading job folders --------------------------------------------------------------------

def load_runs(sweep_dir: Path) -> list:
    """``[{"config": flat config, "summary": dict, "history": [metrics.csv rows as floats]}]``."""
    runs = []
    for summary_file in sorted(Path(sweep_dir).rglob("summary.json")):
        folder = summary_file.parent
        config = flatten(OmegaConf.to_container(OmegaConf.load(folder / ".hydra" / "config.yaml"), resolve=True))
        with open(folder / "metrics.csv", newline="") as stream:
            history = [{k: float(v) if v not in ("", None) else math.nan for k, v in row.items()}
                       for row in csv.DictReader(stream)]
        runs.append({"config": config, "summary": json.loads(summary_file.read_text()), "history": history})
    return runs


def by_method(items, key=lambda item: item) -> list:
    """Items sorted by method in the paper's order."""
    order = {m: i for i, m in enumerate(METHOD_ORDER)}
    return sorted(items, key=lambda item: order.get(key(item), len(order)))


def aggregate(sweep_dirs, by=("method.name",), metrics=TABLE_METRICS) -> list:
    rows = report.aggregate([str(d) for d in sweep_dirs], by=list(by), metrics=list(metrics))
    return by_method(rows, key=lambda row: row["method.name"])


def fmt(mean, std, scale=1.0, digits=3) -> str:
    if mean is None:
        return "-"
    if std is None:
        return f"{mean * scale:.{digits}g}"
    return f"{mean * scale:.{digits}g} ± {std * scale:.2g}"


def write_table(path: Path, header: list, rows: list, preface: str = "") -> None:
    lines = [preface] if preface else []
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    path.write_text("\n".join(lines) + "\n")
    print(f"wrote {path}")


def read_table(path: Path) -> list:
    """The rows of a markdown table written by ``write_table`` as dicts (for tests and checks)."""
    lines = [line for line in Path(path).read_text().splitlines() if line.startswith("|")]
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    return [dict(zip(header, (c.strip() for c in line.strip("|").split("|")))) for line in lines[2:]]


# -- figures --------------------------------------------------------------------------------

def accuracy_table(path: Path, panels: list, preface: str = "", label_key=None, with_loss: bool = False) -> None:
    """One row per (panel, method[, label_key]): accuracy and spikes, mean ± std over trials;
    ``label_key``: one config key or a tuple of them shown after the method; ``with_loss``: also
    the test loss (comparable only where the rows share a loss)."""
    keys = [label_key] if isinstance(label_key, str) else list(label_key or ())
    header = ["setting", "method", *keys, "n", "test accuracy (%)", "hidden spikes to decision",
              "output spikes to decision", "hidden spikes (window)", "output spikes (window)",
              *(["test loss"] if with_loss else [])]
    rows = []
    for title, agg in panels:
        for r in agg:
            rows.append([title, r["method.name"], *(r[k] for k in keys), r["n"], fmt(r["test_accuracy_mean"], r["test_accuracy_std"], 100, 4),
                         *(fmt(r[f"{m}_mean"], r[f"{m}_std"]) for m in TABLE_METRICS[1:]),
                         *([fmt(r["test_loss_mean"], r["test_loss_std"], digits=4)] if with_loss else [])])
    write_table(path, header, rows, preface)


def accuracy_vs_spikes(path: Path, panels: list, suptitle: str, label_of=None) -> None:
    """Rows of panels (one per setting) x 2 columns (hidden, output spikes): test accuracy
    against spikes per sample, mean with standard-deviation error bars in both directions."""
    label_of = label_of or (lambda r: r["method.name"])
    fig, axes = plt.subplots(len(panels), 2, figsize=(10, 3.6 * len(panels)), squeeze=False)
    for (title, agg), row_axes in zip(panels, axes):
        for ax, metric, what in zip(row_axes, SPIKE_METRICS, ("hidden", "output")):
            for r in agg:
                method = r["method.name"]
                acc, acc_sd = r["test_accuracy_mean"], r["test_accuracy_std"] or 0.0
                x, x_sd = r[f"{metric}_mean"], r[f"{metric}_std"] or 0.0
                if acc is None or x is None:
                    continue
                ax.errorbar(x, 100 * acc, xerr=x_sd, yerr=100 * acc_sd, fmt="o", capsize=4,
                            color=COLORS.get(method), label=f"{label_of(r)}: {100 * acc:.2f} ± {100 * acc_sd:.2f} % "
                            f"(n={r['n']})")
            ax.set_xlabel(f"{what} spikes per sample, up to the decision (spikes)")
            ax.set_ylabel("test accuracy (%)")
            ax.set_title(f"{title}: {what} spikes")
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7, loc="best")
    fig.suptitle(suptitle)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    print(f"wrote {path}")


def loss_curves(path: Path, panels: list, suptitle: str) -> None:
    """Training loss against iteration, mean over trials (± standard error shaded), log y."""
    fig, axes = plt.subplots(1, len(panels), figsize=(5.5 * len(panels), 4), squeeze=False)
    for ax, (title, runs) in zip(axes[0], panels):
        for method in by_method({r["config"]["method.name"] for r in runs}):
            curves = [r["history"] for r in runs if r["config"]["method.name"] == method]
            length = min(len(c) for c in curves)
            steps = [curves[0][i]["step"] for i in range(length)]
            values = [[c[i]["train_loss"] for c in curves] for i in range(length)]
            means = [sum(v) / len(v) for v in values]
            sems = [(report.mean_std(v)[1] or 0.0) / math.sqrt(len(v)) for v in values]
            ax.plot(steps, means, color=COLORS.get(method), label=f"{method} (n={len(curves)})")
            ax.fill_between(steps, [max(m - s, 1e-3) for m, s in zip(means, sems)],
                            [m + s for m, s in zip(means, sems)], color=COLORS.get(method), alpha=0.2)
        ax.set_yscale("log")
        ax.set_xlabel("training iteration")
        ax.set_ylabel("training loss (spike-train loss, mean over trials)")
        ax.set_title(title)
        ax.grid(alpha=0.3, which="both")
        ax.legend()
    fig.suptitle(suptitle)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    print(f"wrote {path}")


def accuracy_figure(args: argparse.Namespace, task: str, presets: list, overrides: list, stem: str,
                    suptitle: str, preface: str = "", label_key: str = None, with_loss: bool = False) -> list:
    """Run each ``(preset, title[, its own overrides])`` sweep with ``overrides``, then draw
    ``<stem>.png`` (accuracy against spikes, one row of panels per preset) and ``<stem>.md``;
    returns the panels."""
    panels = []
    for preset, title, *own in presets:
        sweep = run_sweep(args, preset, [f"experiment={preset}", data_root(args, task), *overrides, *(own[0] if own else [])])
        by = ["method.name"] + ([label_key] if label_key else [])
        panels.append((title, aggregate([sweep], by=by, metrics=(*TABLE_METRICS, "test_loss"))))
    label_of = (lambda r: f"{r['method.name']} {label_key.split('.')[-1]}={r[label_key]}") if label_key else None
    accuracy_vs_spikes(args.out / f"{stem}.png", panels, suptitle, label_of)
    accuracy_table(args.out / f"{stem}.md", panels, preface, label_key, with_loss)
    return panels
