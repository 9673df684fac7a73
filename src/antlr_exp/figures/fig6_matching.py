"""Fig. 6 (paper 4.1): random spike-train matching, training loss against iteration (log scale),
mean over trials, 1 target spike (a) and 3 target spikes (b), activation / timing / ANTLR.

    antlr-figure fig6 --scale quick        # docs/figures/fig6_matching.{png,md}
    antlr-figure fig6 --scale full --jobs 2
    antlr-figure fig6 --scale quick --steps 5000 --trials 5 --only a --out /tmp/fig6_longer

The scales: ``scales/fig6.yaml``.
"""

from __future__ import annotations

from ..results import plots as plot
from ..results import report
from . import common

PRESETS = (("fig6a_matching", 1), ("fig6b_matching", 3))


def table_rows(spikes: int, runs: list) -> list:
    """Per rule: trials, iterations, train loss at the first and last evaluation, the best
    checkpoint's loss (mean ± std over trials) and how many trials improved."""
    rows = []
    for method in plot.by_method({r["config"]["method.name"] for r in runs}):
        mine = [r for r in runs if r["config"]["method.name"] == method]
        first = [r["history"][0]["train_loss"] for r in mine]
        last = [r["history"][-1]["train_loss"] for r in mine]
        best = [r["summary"]["test_loss"] for r in mine]
        improved = sum(b < f for b, f in zip(last, first))
        rows.append(
            [
                spikes,
                method,
                len(mine),
                int(mine[0]["history"][-1]["step"]),
                common.fmt(*report.mean_std(first)),
                common.fmt(*report.mean_std(last)),
                common.fmt(*report.mean_std(best)),
                f"{improved}/{len(mine)}",
            ]
        )
    return rows


def loss_by_method(runs: list) -> dict:
    """``{rule: [{step: train loss} per trial]}``."""
    curves: dict = {}
    for r in runs:
        curve = {int(row["step"]): row["train_loss"] for row in r["history"]}
        curves.setdefault(r["config"]["method.name"], []).append(curve)
    return curves


def main(argv=None, prog=None, root=None) -> int:
    scales = common.load_scales("fig6")["scales"]
    args = common.parse_args(
        __doc__.splitlines()[0],
        "fig6_matching",
        argv,
        scales=scales,
        prog=prog,
        root=root,
        extra=(
            ("--steps", dict(type=int, help="iterations instead of the scale's")),
            ("--trials", dict(type=int, help="trials instead of the scale's")),
            ("--only", dict(choices=("a", "b"), help="only panel a (1 target spike) or b (3)")),
        ),
    )
    scale = scales[args.scale]
    steps, every = args.steps or scale["max_steps"], scale["val_every_n_steps"]
    trials = args.trials or scale["trials"]
    panels, rows = [], []
    for preset, spikes in PRESETS:
        if args.only and preset[4] != args.only:
            continue
        sweep = common.run_sweep(
            args,
            preset,
            [
                f"experiment={preset}",
                f"trials={trials}",
                f"trainer.max_steps={steps}",
                f"trainer.val_every_n_steps={every}",
            ],
        )
        runs = common.load_runs(sweep)
        panels.append((f"({'ab'[spikes > 1]}) {spikes} target spike{'s' * (spikes > 1)}", loss_by_method(runs)))
        rows += table_rows(spikes, runs)
    plot.save(
        plot.loss_panels(panels, f"Fig. 6: spike-train matching, 10-50-50-5 ({args.scale} scale: {steps} iterations)"),
        args.out / "fig6_matching.png",
    )
    common.write_table(
        args.out / "fig6_matching.md",
        [
            "target spikes",
            "method",
            "n",
            "iterations",
            f"train loss, first {every} it.",
            f"train loss, last {every} it.",
            "loss of best checkpoint",
            "trials improved",
        ],
        rows,
        f"Spike-train loss, mean ± std over trials ({args.scale} scale).\n",
    )
    return 0
