"""Beyond the paper: how sensitive is ANTLR to its weights? Latency MNIST with the paper's ANTLR
loss: lambda_act swept at lambda_tim = 1 (with Adam only the ratio matters, up to clipping), and
lambda_tim swept at lambda_act = 1 (the scale against the element-wise clipping at 1). Test
accuracy and spikes per sample against the swept weight.

    python scripts/lambda_sweep.py --scale quick        # docs/figures/lambda_sweep.{png,md}
    python scripts/lambda_sweep.py --scale full trials=3 --out docs/figures/full
"""

from __future__ import annotations

import figures_common as fc

ACT, TIM = "method.lambda_act", "method.lambda_tim"
# scale -> (overrides of both sweeps, lambda_act values, lambda_tim values besides 1; None: the preset's)
SCALES = {
    "tiny": (["data.limit_train=32", "data.limit_test=32", "trainer.max_steps=2", fc.seeds(1)], "0.1,1", "10"),
    "quick": (["data.limit_train=3000", "data.limit_test=1000", "trainer.max_epochs=1", fc.seeds(2)],
              "0,0.1,1,10", "0.1,10"),
    # the presets: lambda_act in 0, 0.1, 0.3, 1, 3, 10; lambda_tim in 0.1, 10 (1 is shared); 20 epochs
    "full": ([], None, "0.1,10"),
}


def main(argv=None) -> None:
    args = fc.parse_args(__doc__.splitlines()[0], "lambda_sweep", argv)
    overrides, act_values, tim_values = SCALES[args.scale]
    data = fc.data_root(args, "mnist")
    act_sweep = fc.run_sweep(args, "lambda_sweep_mnist", ["experiment=lambda_sweep_mnist", data, *overrides,
                                                          *([f"{ACT}={act_values}"] if act_values else [])])
    # lambda_act = lambda_tim = 1 is a point of both studies: run once, in the first
    tim_sweep = fc.run_sweep(args, "lambda_tim_sweep_mnist", ["experiment=lambda_tim_sweep_mnist", data, *overrides,
                                                              f"{TIM}={tim_values}"])
    rows = fc.aggregate([act_sweep, tim_sweep], by=["method.name", ACT, TIM])
    by_act = sorted((r for r in rows if r[TIM] == 1.0), key=lambda r: r[ACT])
    by_tim = sorted((r for r in rows if r[ACT] == 1.0), key=lambda r: r[TIM])
    table = by_act + [r for r in by_tim if r[TIM] != 1.0]
    fc.accuracy_table(args.out / "lambda_sweep.md", [("antlr, latency MNIST", table)],
                      f"ANTLR, lambda_act swept at lambda_tim = 1, then lambda_tim swept at lambda_act = 1; mean ± "
                      f"std over trials ({args.scale} scale; overrides: `{fc.overrides_text(args, overrides)}`).\n",
                      label_key=(ACT, TIM))
    fig, axes = fc.plt.subplots(2, 2, figsize=(10, 7.2))
    for row_axes, series, key, label in ((axes[0], by_act, ACT, "lambda_act (lambda_tim = 1; symlog, 0 = timing part only)"),
                                         (axes[1], by_tim, TIM, "lambda_tim (lambda_act = 1; log)")):
        if not series:
            continue
        x = [r[key] for r in series]
        row_axes[0].errorbar(x, [100 * r["test_accuracy_mean"] for r in series],
                             yerr=[100 * (r["test_accuracy_std"] or 0.0) for r in series], fmt="o-", capsize=4,
                             color=fc.COLORS["antlr"], label=f"antlr (n={series[0]['n']} per point)")
        row_axes[0].set_ylabel("test accuracy (%)")
        for metric, what, marker in zip(fc.SPIKE_METRICS, ("hidden", "output"), ("o-", "s--")):
            row_axes[1].errorbar(x, [r[f"{metric}_mean"] for r in series],
                                 yerr=[r[f"{metric}_std"] or 0.0 for r in series], fmt=marker, capsize=4,
                                 label=f"{what} spikes to decision")
        row_axes[1].set_ylabel("spikes per sample (spikes)")
        for ax in row_axes:
            ax.set_xscale("symlog", linthresh=0.1) if key == ACT else ax.set_xscale("log")
            ax.set_xlabel(label)
            ax.grid(alpha=0.3)
            ax.legend(fontsize=8)
    fig.suptitle(f"ANTLR weight sensitivity, latency MNIST ({args.scale} scale)")
    fig.tight_layout()
    fig.savefig(args.out / "lambda_sweep.png", dpi=110)
    print(f"wrote {args.out / 'lambda_sweep.png'}")


if __name__ == "__main__":
    main()
