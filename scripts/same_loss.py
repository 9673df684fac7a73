"""Beyond the paper: activation vs ANTLR on latency MNIST under the same loss (count, 1/0 target
spikes) and the same decision (most spike).

    python scripts/same_loss.py --scale quick           # docs/figures/same_loss.{png,md}
"""

from __future__ import annotations

import figures_common as fc

SCALES = {
    "tiny": ["data.limit_train=32", "data.limit_test=32", "trainer.max_steps=2", fc.seeds(1)],
    "quick": ["data.limit_train=3000", "data.limit_test=1000", "trainer.max_epochs=1", fc.seeds(3)],
    "full": [],
}


def main(argv=None) -> None:
    args = fc.parse_args(__doc__.splitlines()[0], "same_loss", argv)
    fc.accuracy_figure(
        args, "mnist", [("same_loss_mnist", "count loss, most-spike decision")],
        SCALES[args.scale], "same_loss",
        f"Activation vs ANTLR, same count loss and decision, latency MNIST ({args.scale} scale)",
        f"Same loss (count 1/0) and decision (most spike) for both rules, mean ± std over trials "
        f"({args.scale} scale; overrides: `{' '.join(SCALES[args.scale]) or 'none'}`).\n")


if __name__ == "__main__":
    main()
