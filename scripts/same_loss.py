"""Beyond the paper: activation vs ANTLR on latency MNIST under the same loss and the same
decision (most spike): the spike-train loss with 1 and with 3 target spikes for the label's
output neuron, and the count loss (1/0 target spikes).

    python scripts/same_loss.py --scale quick           # docs/figures/same_loss.{png,md}
    python scripts/same_loss.py --scale medium --jobs 2 --out docs/figures/medium
"""

from __future__ import annotations

import figures_common as fc

PRESETS = [
    ("same_loss_mnist_spike_train1", "spike-train loss, target spike at 60"),
    ("same_loss_mnist_spike_train3", "spike-train loss, targets at 40, 60, 80"),
    ("same_loss_mnist", "count loss (1/0 spikes)"),
]
SCALES = {
    "tiny": ["data.limit_train=32", "data.limit_test=32", "trainer.max_steps=2", fc.seeds(1)],
    "quick": ["data.limit_train=3000", "data.limit_test=1000", "trainer.max_epochs=1", fc.seeds(5)],
    # every training image there is and the whole test set, one epoch (about 20 minutes here with --jobs 2)
    "medium": ["trainer.max_epochs=1", fc.seeds(3)],
    "full": [],  # the presets: 16 seeds, 20 epochs
}


def main(argv=None) -> None:
    args = fc.parse_args(__doc__.splitlines()[0], "same_loss", argv, scales=SCALES)
    fc.accuracy_figure(
        args, "mnist", PRESETS, SCALES[args.scale], "same_loss",
        f"Activation vs ANTLR, same loss and decision (most spike), latency MNIST ({args.scale} scale)",
        f"Same loss and decision (most spike) for both rules in each setting, mean ± std over trials "
        f"({args.scale} scale; overrides: `{' '.join(SCALES[args.scale]) or 'none'}`). The test loss is "
        f"each setting's own loss, comparable between the rows of a setting only.\n", with_loss=True)


if __name__ == "__main__":
    main()
