"""Beyond the paper: how sensitive is ANTLR to its weights? Latency MNIST with the paper's ANTLR
loss: lambda_act swept at lambda_tim = 1 (with Adam only the ratio matters, up to clipping), and
lambda_tim swept at lambda_act = 1 (the scale against the element-wise clipping at 1). Test
accuracy and spikes per sample against the swept weight.

    antlr-figure lambda_sweep --scale quick        # docs/figures/lambda_sweep.{png,md}
    antlr-figure lambda_sweep --scale full trials=3 --out docs/figures/full

The scales (overrides and swept values): ``scales/lambda_sweep.yaml``.
"""

from __future__ import annotations

from ..results import plots as plot
from . import common

ACT, TIM = "method.lambda_act", "method.lambda_tim"


def main(argv=None, prog=None, root=None) -> int:
    scales = common.load_scales("lambda_sweep")["scales"]
    args = common.parse_args(__doc__.splitlines()[0], "lambda_sweep", argv, scales=scales, prog=prog, root=root)
    scale = scales[args.scale]
    overrides, act_values, tim_values = scale["overrides"], scale["lambda_act"], scale["lambda_tim"]
    data = common.data_root(args, "mnist")
    act_sweep = common.run_sweep(
        args,
        "lambda_sweep_mnist",
        ["experiment=lambda_sweep_mnist", data, *overrides, *([f"{ACT}={act_values}"] if act_values else [])],
    )
    # lambda_act = lambda_tim = 1 is a point of both studies: run once, in the first
    tim_sweep = common.run_sweep(
        args, "lambda_tim_sweep_mnist", ["experiment=lambda_tim_sweep_mnist", data, *overrides, f"{TIM}={tim_values}"]
    )
    rows = common.aggregate([act_sweep, tim_sweep], by=["method.name", ACT, TIM])
    by_act = sorted((r for r in rows if r[TIM] == 1.0), key=lambda r: r[ACT])
    by_tim = sorted((r for r in rows if r[ACT] == 1.0), key=lambda r: r[TIM])
    table = by_act + [r for r in by_tim if r[TIM] != 1.0]
    common.accuracy_table(
        args.out / "lambda_sweep.md",
        [("antlr, latency MNIST", table)],
        f"ANTLR, lambda_act swept at lambda_tim = 1, then lambda_tim swept at lambda_act = 1; "
        f"mean ± std over trials ({args.scale} scale; overrides: "
        f"`{common.overrides_text(args, overrides)}`).\n",
        label_key=(ACT, TIM),
    )
    figure = plot.weight_sweep(
        [
            (by_act, ACT, "lambda_act (lambda_tim = 1; symlog, 0 = timing part only)", True),
            (by_tim, TIM, "lambda_tim (lambda_act = 1; log)", False),
        ],
        f"ANTLR weight sensitivity, latency MNIST ({args.scale} scale)",
    )
    plot.save(figure, args.out / "lambda_sweep.png")
    return 0
