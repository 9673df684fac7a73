"""Fig. 8 (paper 4.3): N-MNIST, test accuracy against hidden and output spikes per
sample, mean ± std over trials per rule, (a) without and (b) with the single-spike restriction.

    python scripts/fig8_nmnist.py --scale quick           # docs/figures/fig8_nmnist.{png,md}
    python scripts/fig8_nmnist.py --scale full --jobs 2   # 16 trials x 20 epochs on the data given
"""

from __future__ import annotations

import figures_common as fc

# scale -> overrides (full: the presets' own 20 epochs and 16 seeds)
SCALES = {
    "tiny": ["data.limit_train=32", "data.limit_test=32", "trainer.max_steps=2", fc.seeds(1)],
    "quick": ["data.limit_train=500", "data.limit_test=100", "trainer.max_epochs=1", fc.seeds(2)],
    "full": [],
}


def main(argv=None) -> None:
    args = fc.parse_args(__doc__.splitlines()[0], "fig8_nmnist", argv)
    fc.accuracy_figure(
        args, "nmnist",
        [("fig8a_nmnist", "(a) N-MNIST"), ("fig8b_nmnist_single_spike", "(b) single spike")],
        SCALES[args.scale], "fig8_nmnist",
        f"Fig. 8: N-MNIST, 2x34x34-800-10 ({args.scale} scale)",
        f"N-MNIST, mean ± std over trials ({args.scale} scale; overrides: "
        f"`{fc.overrides_text(args, SCALES[args.scale])}`). Spikes per test sample.\n")


if __name__ == "__main__":
    main()
