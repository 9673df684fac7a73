"""Fig. 7 (paper 4.2): latency-coded MNIST, test accuracy against hidden and output spikes per
sample, mean ± std over trials per rule, (a) without and (b) with the single-spike restriction.

    python scripts/fig7_mnist.py --scale quick           # docs/figures/fig7_mnist.{png,md}
    python scripts/fig7_mnist.py --scale full --jobs 2   # 16 trials x 20 epochs on all 50k images
"""

from __future__ import annotations

import figures_common as fc

# scale -> overrides (full: the presets' own 20 epochs and 16 seeds)
SCALES = {
    "tiny": ["data.limit_train=32", "data.limit_test=32", "trainer.max_steps=2", fc.seeds(1)],
    "quick": ["data.limit_train=3000", "data.limit_test=1000", "trainer.max_epochs=1", fc.seeds(3)],
    "full": [],
}


def main(argv=None) -> None:
    args = fc.parse_args(__doc__.splitlines()[0], "fig7_mnist", argv)
    fc.accuracy_figure(
        args, "mnist",
        [("fig7a_mnist", "(a) latency MNIST"), ("fig7b_mnist_single_spike", "(b) single spike")],
        SCALES[args.scale], "fig7_mnist",
        f"Fig. 7: latency-coded MNIST, 784-800-10 ({args.scale} scale)",
        f"Latency MNIST, mean ± std over trials ({args.scale} scale; overrides: "
        f"`{fc.overrides_text(args, SCALES[args.scale])}`). Spikes per test sample.\n")


if __name__ == "__main__":
    main()
