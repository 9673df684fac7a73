"""What the figure drivers share: their command line, the scales (``scales/<figure>.yaml``),
running a sweep through ``antlr-train -m``, reading the job folders back, and the markdown tables.

Every driver runs its sweeps as subprocesses (``antlr-train -m experiment=<preset> ...``), so the
same command scales out with ``--jobs N`` (joblib) or any Hydra launcher passed as an extra
override (e.g. ``hydra/launcher=slurm``). Aggregation over trials is :mod:`antlr_exp.results.report`'s,
and every PNG is drawn by :mod:`antlr_exp.results.plots`.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from importlib import resources
from pathlib import Path
from typing import Optional

from omegaconf import OmegaConf

from ..config import flatten
from ..results import plots as plot
from ..results import report

#: the metrics of the accuracy tables, accuracy first, then the spikes to the decision and in the window
TABLE_METRICS = (
    "test_accuracy",
    *plot.SPIKES_TO_DECISION,
    "test_hidden_spikes_per_sample",
    "test_output_spikes_per_sample",
)


def load_scales(figure: str) -> dict:
    """The contents of ``scales/<figure>.yaml``: ``{"scales": {scale: settings}, ...}``."""
    text = resources.files("antlr_exp.figures").joinpath("scales").joinpath(f"{figure}.yaml").read_text()
    return OmegaConf.to_container(OmegaConf.create(text), resolve=True)


def antlr_train_command() -> list:
    """``antlr-train`` beside this interpreter (a venv's), else the one on PATH."""
    beside = Path(sys.executable).with_name("antlr-train")
    return [str(beside)] if beside.exists() else [shutil.which("antlr-train") or "antlr-train"]


def parse_args(
    description: str,
    name: str,
    argv=None,
    extra=(),
    scales=("tiny", "quick", "full"),
    prog: Optional[str] = None,
    root: Optional[Path] = None,
) -> argparse.Namespace:
    """The drivers' common options (and ``extra``: ``(flag, argparse options)`` pairs). ``name``
    names the sweep folders; ``root`` (default: the current folder) holds ``docs/figures`` and
    ``multirun``, the default places of the figures and the sweeps."""
    root = Path.cwd() if root is None else Path(root)
    p = argparse.ArgumentParser(prog=prog, description=description)
    for flag, options in extra:
        p.add_argument(flag, **options)
    p.add_argument(
        "--scale",
        choices=tuple(scales),
        default="quick",
        help="full: the paper's trials/iterations/epochs; quick: minutes on 2 CPU cores; tiny: the test"
        + ("; medium: all training images, 1 epoch, 3 trials" if "medium" in scales else ""),
    )
    p.add_argument(
        "--out",
        type=Path,
        default=root / "docs" / "figures",
        help="where the PNG and the table go (default: docs/figures)",
    )
    p.add_argument(
        "--sweep-root", type=Path, default=None, help="parent of the sweep folders (default multirun/<driver>_<scale>)"
    )
    # the folder holding mnist/ and nmnist/, found as antlr-train's data.root finds it
    p.add_argument(
        "--data",
        type=Path,
        default=Path(os.environ.get("ANTLR_EXP_DATA") or "data"),
        help="folder holding mnist/ and nmnist/ (default: $ANTLR_EXP_DATA, else data)",
    )
    p.add_argument("--no-run", action="store_true", help="only redraw from existing sweep folders")
    p.add_argument("--jobs", type=int, default=1, help=">1: hydra/launcher=local with this many parallel jobs")
    p.add_argument("overrides", nargs="*", help="extra antlr-train overrides for every sweep (e.g. device=cuda)")
    args = p.parse_args(argv)
    args.name, args.root = name, root
    if args.sweep_root is None:
        suffix = f"_{args.out.name}" if args.out.name != "figures" else ""
        args.sweep_root = root / "multirun" / f"{name}_{args.scale}{suffix}"
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
    cmd = [
        *antlr_train_command(),
        "-m",
        *overrides,
        *extra,
        f"hydra.sweep.dir={sweep_dir}",
        "trainer.progress_bar=false",
    ]
    if args.jobs > 1:
        cmd += ["hydra/launcher=local", f"hydra.launcher.n_jobs={args.jobs}"]
    print("$", shlex.join(["antlr-train", *cmd[1:]]), flush=True)
    started = time.perf_counter()
    subprocess.run(cmd, cwd=args.root, check=True, stdout=subprocess.DEVNULL if args.scale == "tiny" else None)
    print(f"[{label}: {time.perf_counter() - started:.0f} s]", flush=True)
    return sweep_dir


def _is_resume(override: str) -> bool:
    key, _, value = override.partition("=")
    return key.lstrip("+~") == "resume" and value.strip().lower() in ("true", "yes", "1", "on")


def overrides_text(args: argparse.Namespace, scale_overrides: list) -> str:
    """The overrides every sweep of a driver ran with (the scale's, then the command line's; data
    and output settings left out), as the tables' preface states them."""
    shown = [
        o
        for o in [*scale_overrides, *args.overrides]
        if not o.startswith(("data.root=", "hydra.", "hydra/", "device=", "resume="))
    ]
    return " ".join(shown) or "none"


def data_root(args: argparse.Namespace, task: str) -> str:
    return f"data.root={(args.data / task).resolve()}"


# -- reading job folders --------------------------------------------------------------------


def load_runs(sweep_dir: Path) -> list:
    """``[{"config": flat config, "summary": dict, "history": [metrics.csv rows as floats]}]``."""
    runs = []
    for summary_file in sorted(Path(sweep_dir).rglob("summary.json")):
        folder = summary_file.parent
        config = flatten(OmegaConf.to_container(OmegaConf.load(folder / ".hydra" / "config.yaml"), resolve=True))
        runs.append(
            {"config": config, "summary": json.loads(summary_file.read_text()), "history": plot.read_metrics(folder)}
        )
    return runs


def aggregate(sweep_dirs, by=("method.name",), metrics=TABLE_METRICS) -> list:
    rows = report.aggregate([str(d) for d in sweep_dirs], by=list(by), metrics=list(metrics))
    return plot.by_method(rows, key=lambda row: row["method.name"])


# -- tables ---------------------------------------------------------------------------------


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
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text("\n".join(lines) + "\n")
    print(f"wrote {path}")


def read_table(path: Path) -> list:
    """The rows of a markdown table written by ``write_table`` as dicts (for tests and checks)."""
    lines = [line for line in Path(path).read_text().splitlines() if line.startswith("|")]
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    return [dict(zip(header, (c.strip() for c in line.strip("|").split("|")))) for line in lines[2:]]


def accuracy_table(path: Path, panels: list, preface: str = "", label_key=None, with_loss: bool = False) -> None:
    """One row per (panel, method[, label_key]): accuracy and spikes, mean ± std over trials;
    ``label_key``: one config key or a tuple of them shown after the method; ``with_loss``: also
    the test loss (comparable only where the rows share a loss)."""
    keys = [label_key] if isinstance(label_key, str) else list(label_key or ())
    header = [
        "setting",
        "method",
        *keys,
        "n",
        "test accuracy (%)",
        "hidden spikes to decision",
        "output spikes to decision",
        "hidden spikes (window)",
        "output spikes (window)",
        *(["test loss"] if with_loss else []),
    ]
    rows = []
    for title, agg in panels:
        for r in agg:
            rows.append(
                [
                    title,
                    r["method.name"],
                    *(r[k] for k in keys),
                    r["n"],
                    fmt(r["test_accuracy_mean"], r["test_accuracy_std"], 100, 4),
                    *(fmt(r[f"{m}_mean"], r[f"{m}_std"]) for m in TABLE_METRICS[1:]),
                    *([fmt(r["test_loss_mean"], r["test_loss_std"], digits=4)] if with_loss else []),
                ]
            )
    write_table(path, header, rows, preface)


def accuracy_figure(
    args: argparse.Namespace,
    task: str,
    presets: list,
    overrides: list,
    stem: str,
    suptitle: str,
    preface: str = "",
    label_key: str = None,
    with_loss: bool = False,
) -> list:
    """Run each ``(preset, title[, its own overrides])`` sweep with ``overrides``, then draw
    ``<stem>.png`` (accuracy against spikes, one row of panels per preset) and ``<stem>.md``;
    returns the panels."""
    panels = []
    for preset, title, *own in presets:
        sweep = run_sweep(
            args, preset, [f"experiment={preset}", data_root(args, task), *overrides, *(own[0] if own else [])]
        )
        by = ["method.name"] + ([label_key] if label_key else [])
        panels.append((title, aggregate([sweep], by=by, metrics=(*TABLE_METRICS, "test_loss"))))
    label_of = (lambda r: f"{r['method.name']} {label_key.split('.')[-1]}={r[label_key]}") if label_key else None
    plot.save(plot.accuracy_vs_spikes_panels(panels, suptitle, label_of), args.out / f"{stem}.png")
    accuracy_table(args.out / f"{stem}.md", panels, preface, label_key, with_loss)
    return panels


def accuracy_driver(
    figure: str,
    name: str,
    description: str,
    task: str,
    presets: list,
    title: str,
    what: str,
    argv=None,
    prog=None,
    root=None,
) -> int:
    """A driver of Fig. 7 or 8: the scale's overrides (``scales/<figure>.yaml``) on each preset's
    sweep; ``<name>.png`` and ``<name>.md`` headed ``title`` and ``what`` (the table's subject)."""
    scales = load_scales(figure)["scales"]
    args = parse_args(description, name, argv, scales=scales, prog=prog, root=root)
    overrides = scales[args.scale]["overrides"]
    accuracy_figure(
        args,
        task,
        presets,
        overrides,
        name,
        f"{title} ({args.scale} scale)",
        f"{what}, mean ± std over trials ({args.scale} scale; overrides: "
        f"`{overrides_text(args, overrides)}`). Spikes per test sample.\n",
    )
    return 0
