"""Beyond the paper: the rules on latency MNIST under the same loss and the same decision (most
spike): the spike-train loss with 1 and with 3 target spikes for the label's output neuron
(activation, timing and ANTLR), and the count loss (1/0 target spikes; activation and ANTLR,
since the count loss gives the timing rule no gradient).

    antlr-figure same_loss --scale quick           # docs/figures/same_loss.{png,md}
    antlr-figure same_loss --scale medium --jobs 2 --out docs/figures/medium
    antlr-figure same_loss --scale full --choose-step trials=3 --out docs/figures/full

--choose-step first picks the one-spike target step on the validation split: every candidate
step, every rule, one trial at the --choose-scale (default: one epoch on every training image);
the step with the best validation accuracy, averaged over the rules, is used for the one-spike
setting, and same_loss_target_step.md says what each step scored. The scales, and those of the
choice: ``scales/same_loss.yaml``.
"""

from __future__ import annotations

import copy

from ..results import plots as plot
from . import common

SPIKE_TRAIN1 = "same_loss_mnist_spike_train1"
PRESETS = [
    (SPIKE_TRAIN1, "spike-train loss, target spike at 80"),
    ("same_loss_mnist_spike_train3", "spike-train loss, targets at 40, 60, 80"),
    ("same_loss_mnist", "count loss (1/0 spikes)"),
]
CANDIDATE_STEPS = (20, 40, 60, 80)


def choice_scales() -> dict:
    """``{choice scale: antlr-train overrides}`` of ``--choose-scale``."""
    return common.load_scales("same_loss")["choose_step"]


def validation_scores(sweep) -> dict:
    """``{(target step,): {rule: [validation accuracy per trial]}}`` of the choice sweep."""
    scores: dict = {}
    for run in common.load_runs(sweep):
        step = tuple(run["config"]["loss.label_steps"])
        scores.setdefault(step, {}).setdefault(run["config"]["method.name"], []).append(run["summary"]["val_accuracy"])
    return scores


def choose_step(args) -> int:
    """The one-spike target step with the best validation accuracy, averaged over the rules."""
    steps = ",".join(f"[{s}]" for s in CANDIDATE_STEPS)
    overrides = choice_scales()[args.choose_scale]
    # one trial per rule and step, whatever trials= the main sweeps take
    own = copy.copy(args)
    own.overrides = [o for o in args.overrides if not o.startswith("trials=")]
    sweep = common.run_sweep(
        own,
        "choose_step",
        [f"experiment={SPIKE_TRAIN1}", common.data_root(args, "mnist"), *overrides, f"loss.label_steps={steps}"],
    )
    scores = validation_scores(sweep)
    methods = plot.by_method({m for by_method in scores.values() for m in by_method})
    missing = [(s, m) for s in scores for m in methods if m not in scores[s]]
    if len(scores) != len(CANDIDATE_STEPS) or missing:
        raise SystemExit(f"same_loss --choose-step: {sweep} lacks runs for {missing or 'some steps'}")
    mean = {s: sum(sum(v) / len(v) for v in scores[s].values()) / len(methods) for s in scores}
    best = max(sorted(mean), key=lambda s: mean[s])
    rows = [
        [
            s[0],
            *(f"{100 * sum(scores[s][m]) / len(scores[s][m]):.2f}" for m in methods),
            f"{100 * mean[s]:.2f}",
            "chosen" if s == best else "",
        ]
        for s in sorted(scores)
    ]
    common.write_table(
        args.out / "same_loss_target_step.md",
        ["target step", *(f"{m} val. accuracy (%)" for m in methods), "mean (%)", ""],
        rows,
        f"One-spike target step for {SPIKE_TRAIN1}, chosen on the validation split (never the test "
        f"set): one trial per rule and step, overrides `{' '.join(overrides)}`.\n",
    )
    print(f"target step chosen on validation: {best[0]}", flush=True)
    return best[0]


def parse_args(argv=None, prog=None, root=None, scales=None):
    scales = scales or common.load_scales("same_loss")["scales"]
    return common.parse_args(
        __doc__.splitlines()[0],
        "same_loss",
        argv,
        scales=scales,
        prog=prog,
        root=root,
        extra=[
            (
                "--choose-step",
                dict(action="store_true", help="pick the one-spike target step on the validation split first"),
            ),
            (
                "--choose-scale",
                dict(
                    choices=tuple(choice_scales()),
                    default="epoch",
                    help="the scale of that choice (default: one epoch on every training image)",
                ),
            ),
            ("--choose-only", dict(action="store_true", help="stop after the choice (its table is written)")),
        ],
    )


def main(argv=None, prog=None, root=None) -> int:
    scales = common.load_scales("same_loss")["scales"]
    args = parse_args(argv, prog, root, scales)
    presets = PRESETS
    if args.choose_step or args.choose_only:
        step = choose_step(args)
        if args.choose_only:
            return 0
        presets = [
            (p, f"spike-train loss, target spike at {step} (chosen on validation)", [f"loss.label_steps=[{step}]"])
            if p == SPIKE_TRAIN1
            else (p, title)
            for p, title in PRESETS
        ]
    overrides = scales[args.scale]["overrides"]
    common.accuracy_figure(
        args,
        "mnist",
        presets,
        overrides,
        "same_loss",
        f"The rules under one loss and decision (most spike), latency MNIST ({args.scale} scale)",
        f"Same loss and decision (most spike) for every rule in each setting, mean ± std over trials "
        f"({args.scale} scale; overrides: `{common.overrides_text(args, overrides)}`). The test loss is "
        f"each setting's own loss, comparable between the rows of a setting only.\n",
        with_loss=True,
    )
    return 0
