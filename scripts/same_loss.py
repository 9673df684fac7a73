"""Beyond the paper: the rules on latency MNIST under the same loss and the same decision (most
spike): the spike-train loss with 1 and with 3 target spikes for the label's output neuron
(activation, timing and ANTLR), and the count loss (1/0 target spikes; activation and ANTLR,
since the count loss gives the timing rule no gradient).

    python scripts/same_loss.py --scale quick           # docs/figures/same_loss.{png,md}
    python scripts/same_loss.py --scale medium --jobs 2 --out docs/figures/medium
    python scripts/same_loss.py --scale full --choose-step trials=3 --out docs/figures/full

--choose-step first picks the one-spike target step on the validation split: every candidate
step, every rule, one trial at the --choose-scale (default: one epoch on every training image);
the step with the best validation accuracy, averaged over the rules, is used for the one-spike
setting, and same_loss_target_step.md says what each step scored.
"""

from __future__ import annotations

import copy

import figures_common as fc

SPIKE_TRAIN1 = "same_loss_mnist_spike_train1"
PRESETS = [
    (SPIKE_TRAIN1, "spike-train loss, target spike at 80"),
    ("same_loss_mnist_spike_train3", "spike-train loss, targets at 40, 60, 80"),
    ("same_loss_mnist", "count loss (1/0 spikes)"),
]
CANDIDATE_STEPS = (20, 40, 60, 80)
SCALES = {
    "tiny": ["data.limit_train=32", "data.limit_test=32", "trainer.max_steps=2", fc.seeds(1)],
    "quick": ["data.limit_train=3000", "data.limit_test=1000", "trainer.max_epochs=1", fc.seeds(5)],
    # every training image there is and the whole test set, one epoch (about 20 minutes here with --jobs 2)
    "medium": ["trainer.max_epochs=1", fc.seeds(3)],
    "full": [],  # the presets: 16 seeds, 20 epochs
}


# the scale at which --choose-step compares the candidate steps (one trial per rule and step)
CHOICE_SCALES = {
    "tiny": ["data.limit_train=32", "data.limit_test=32", "trainer.max_steps=2", fc.seeds(1)],
    "quick": ["data.limit_train=3000", "data.limit_test=1000", "trainer.max_epochs=1", fc.seeds(1)],
    "epoch": ["trainer.max_epochs=1", fc.seeds(1)],
}


def choose_step(args) -> int:
    """The one-spike target step with the best validation accuracy, averaged over the rules."""
    steps = ",".join(f"[{s}]" for s in CANDIDATE_STEPS)
    # one trial per rule and step, whatever trials= the main sweeps take
    own = copy.copy(args)
    own.overrides = [o for o in args.overrides if not o.startswith("trials=")]
    sweep = fc.run_sweep(own, "choose_step", [f"experiment={SPIKE_TRAIN1}", fc.data_root(args, "mnist"),
                                               *CHOICE_SCALES[args.choose_scale], f"loss.label_steps={steps}"])
    scores: dict = {}
    for run in fc.load_runs(sweep):
        step = tuple(run["config"]["loss.label_steps"])
        scores.setdefault(step, {}).setdefault(run["config"]["method.name"], []).append(run["summary"]["val_accuracy"])
    methods = fc.by_method({m for by_method in scores.values() for m in by_method})
    missing = [(s, m) for s in scores for m in methods if m not in scores[s]]
    if len(scores) != len(CANDIDATE_STEPS) or missing:
        raise SystemExit(f"same_loss.py --choose-step: {sweep} lacks runs for {missing or 'some steps'}")
    mean = {s: sum(sum(v) / len(v) for v in scores[s].values()) / len(methods) for s in scores}
    best = max(sorted(mean), key=lambda s: mean[s])
    rows = [[s[0], *(f"{100 * sum(scores[s][m]) / len(scores[s][m]):.2f}" for m in methods), f"{100 * mean[s]:.2f}",
             "chosen" if s == best else ""] for s in sorted(scores)]
    fc.write_table(args.out / "same_loss_target_step.md",
                   ["target step", *(f"{m} val. accuracy (%)" for m in methods), "mean (%)", ""], rows,
                   f"One-spike target step for {SPIKE_TRAIN1}, chosen on the validation split (never the test "
                   f"set): one trial per rule and step, overrides `{' '.join(CHOICE_SCALES[args.choose_scale])}`.\n")
    print(f"target step chosen on validation: {best[0]}", flush=True)
    return best[0]


def main(argv=None) -> None:
    args = fc.parse_args(__doc__.splitlines()[0], "same_loss", argv, scales=SCALES, extra=[
        ("--choose-step", dict(action="store_true", help="pick the one-spike target step on the validation split first")),
        ("--choose-scale", dict(choices=tuple(CHOICE_SCALES), default="epoch",
                                help="the scale of that choice (default: one epoch on every training image)")),
        ("--choose-only", dict(action="store_true", help="stop after the choice (its table is written)")),
    ])
    presets = PRESETS
    if args.choose_step or args.choose_only:
        step = choose_step(args)
        if args.choose_only:
            return
        presets = [(p, f"spike-train loss, target spike at {step} (chosen on validation)", [f"loss.label_steps=[{step}]"])
                   if p == SPIKE_TRAIN1 else (p, title) for p, title in PRESETS]
    fc.accuracy_figure(
        args, "mnist", presets, SCALES[args.scale], "same_loss",
        f"The rules under one loss and decision (most spike), latency MNIST ({args.scale} scale)",
        f"Same loss and decision (most spike) for every rule in each setting, mean ± std over trials "
        f"({args.scale} scale; overrides: `{fc.overrides_text(args, SCALES[args.scale])}`). The test loss is "
        f"each setting's own loss, comparable between the rows of a setting only.\n", with_loss=True)


if __name__ == "__main__":
    main()
