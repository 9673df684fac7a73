"""Fig. 6 (paper 4.1): random spike-train matching, training loss against iteration (log scale),
mean over trials, 1 target spike (a) and 3 target spikes (b), activation / timing / ANTLR.

    python scripts/fig6_matching.py --scale quick        # docs/figures/fig6_matching.{png,md}
    python scripts/fig6_matching.py --scale full --jobs 2
    python scripts/fig6_matching.py --scale quick --steps 5000 --trials 5 --only a --out /tmp/fig6_longer
"""

from __future__ import annotations

import figures_common as fc

# scale -> (iterations, evaluation interval, trials)
SCALES = {"tiny": (4, 2, 1), "quick": (2000, 100, 3), "full": (50000, 500, 100)}


def main(argv=None) -> None:
    args = fc.parse_args(__doc__.splitlines()[0], "fig6_matching", argv, extra=(
        ("--steps", dict(type=int, help="iterations instead of the scale's")),
        ("--trials", dict(type=int, help="trials instead of the scale's")),
        ("--only", dict(choices=("a", "b"), help="only panel a (1 target spike) or b (3)"))))
    steps, every, trials = SCALES[args.scale]
    steps, trials = args.steps or steps, args.trials or trials
    panels, rows = [], []
    for preset, spikes in (("fig6a_matching", 1), ("fig6b_matching", 3)):
        if args.only and preset[4] != args.only:
            continue
        sweep = fc.run_sweep(args, preset, [f"experiment={preset}", fc.seeds(trials),
                                            f"trainer.max_steps={steps}", f"trainer.val_every_n_steps={every}"])
        runs = fc.load_runs(sweep)
        title = f"({'ab'[spikes > 1]}) {spikes} target spike{'s' * (spikes > 1)}"
        panels.append((title, runs))
        for method in fc.by_method({r["config"]["method.name"] for r in runs}):
            mine = [r for r in runs if r["config"]["method.name"] == method]
            first = [r["history"][0]["train_loss"] for r in mine]
            last = [r["history"][-1]["train_loss"] for r in mine]
            best = [r["summary"]["test_loss"] for r in mine]
            improved = sum(b < f for b, f in zip(last, first))
            rows.append([spikes, method, len(mine), int(mine[0]["history"][-1]["step"]),
                         fc.fmt(*fc.report.mean_std(first)), fc.fmt(*fc.report.mean_std(last)),
                         fc.fmt(*fc.report.mean_std(best)), f"{improved}/{len(mine)}"])
    fc.loss_curves(args.out / "fig6_matching.png", panels,
                   f"Fig. 6: spike-train matching, 10-50-50-5 ({args.scale} scale: {steps} iterations)")
    fc.write_table(args.out / "fig6_matching.md",
                   ["target spikes", "method", "n", "iterations", f"train loss, first {every} it.",
                    f"train loss, last {every} it.", "loss of best checkpoint", "trials improved"], rows,
                   f"Spike-train loss, mean ± std over trials ({args.scale} scale).\n")


if __name__ == "__main__":
    main()
