"""Fig. 8 (paper 4.3): N-MNIST, test accuracy against hidden and output spikes per
sample, mean ± std over trials per rule, (a) without and (b) with the single-spike restriction.

    antlr-figure fig8 --scale quick           # docs/figures/fig8_nmnist.{png,md}
    antlr-figure fig8 --scale full --jobs 2   # 16 trials x 20 epochs on the data given

The scales: ``scales/fig8.yaml``.
"""

from __future__ import annotations

from . import common

PRESETS = [("fig8a_nmnist", "(a) N-MNIST"), ("fig8b_nmnist_single_spike", "(b) single spike")]


def main(argv=None, prog=None, root=None) -> int:
    return common.accuracy_driver(
        "fig8",
        "fig8_nmnist",
        __doc__.splitlines()[0],
        "nmnist",
        PRESETS,
        "Fig. 8: N-MNIST, 2x34x34-800-10",
        "N-MNIST",
        argv,
        prog,
        root,
    )
