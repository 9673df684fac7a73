"""Beyond the paper: how sensitive is ANTLR to its weights? Latency MNIST with the paper's ANTLR
loss, lambda_act swept at lambda_tim = 1 (with Adam only the ratio matters, up to clipping).
Test accuracy and spikes per sample against lambda_act / lambda_tim.

    python scripts/lambda_sweep.py --scale quick        # docs/figures/lambda_sweep.{png,md}
"""

from __future__ import annotations

import figures_common as fc

KEY = "method.lambda_act"
SCALES = {
    "tiny": ["data.limit_train=32", "data.limit_test=32", "trainer.max_steps=2", fc.seeds(1), f"{KEY}=0.1,1"],
    "quick": ["data.limit_train=3000", "data.limit_test=1000", "trainer.max_epochs=1", fc.seeds(2),
              f"{KEY}=0,0.1,1,10"],
    "full": [],  # the preset: lambda_act in 0, 0.1, 0.3, 1, 3, 10; 16 seeds; 20 epochs
}


def main(argv=None) -> None:
    args = fc.parse_args(__doc__.splitlines()[0], "lambda_sweep", argv)
    sweep = fc.run_sweep(args, "lambda_sweep_mnist",
                         ["experiment=lambda_sweep_mnist", fc.data_root(args, "mnist"), *SCALES[args.scale]])
    rows = sorted(fc.aggregate([sweep], by=["method.name", KEY, "method.lambda_tim"]), key=lambda r: r[KEY])
    fc.accuracy_table(args.out / "lambda_sweep.md", [("antlr, latency MNIST", rows)],
                      f"ANTLR, lambda_tim = 1, lambda_act swept; mean ± std over trials ({args.scale} scale; "
                      f"overrides: `{' '.join(SCALES[args.scale]) or 'none'}`).\n", KEY)
    ratios = [r[KEY] / r["method.lambda_tim"] for r in rows]
    fig, axes = fc.plt.subplots(1, 2, figsize=(10, 3.8))
    acc = [100 * r["test_accuracy_mean"] for r in rows]
    acc_sd = [100 * (r["test_accuracy_std"] or 0.0) for r in rows]
    axes[0].errorbar(ratios, acc, yerr=acc_sd, fmt="o-", capsize=4, color=fc.COLORS["antlr"],
                     label=f"antlr (n={rows[0]['n']} per point)")
    axes[0].set_ylabel("test accuracy (%)")
    for metric, what, marker in zip(fc.SPIKE_METRICS, ("hidden", "output"), ("o-", "s--")):
        axes[1].errorbar(ratios, [r[f"{metric}_mean"] for r in rows], yerr=[r[f"{metric}_std"] or 0.0 for r in rows],
                         fmt=marker, capsize=4, label=f"{what} spikes to decision")
    axes[1].set_ylabel("spikes per sample (spikes)")
    for ax in axes:
        ax.set_xscale("symlog", linthresh=0.1)
        ax.set_xlabel("lambda_act / lambda_tim (symlog; 0 = timing part only)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(f"ANTLR weight sensitivity, latency MNIST ({args.scale} scale)")
    fig.tight_layout()
    fig.savefig(args.out / "lambda_sweep.png", dpi=110)
    print(f"wrote {args.out / 'lambda_sweep.png'}")


if __name__ == "__main__":
    main()
