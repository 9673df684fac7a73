"""Fig. 7 (paper 4.2): latency-coded MNIST, test accuracy against hidden and output spikes per
sample, mean ± std over trials per rule, (a) without and (b) with the single-spike restriction.

    antlr-figure fig7 --scale quick           # docs/figures/fig7_mnist.{png,md}
    antlr-figure fig7 --scale full --jobs 2   # 16 trials x 20 epochs on all 50k images

The scales: ``scales/fig7.yaml``.
"""

from __future__ import annotations

from . import common

PRESETS = [("fig7a_mnist", "(a) latency MNIST"), ("fig7b_mnist_single_spike", "(b) single spike")]


def main(argv=None, prog=None, root=None) -> int:
    return common.accuracy_driver(
        "fig7",
        "fig7_mnist",
        __doc__.splitlines()[0],
        "mnist",
        PRESETS,
        "Fig. 7: latency-coded MNIST, 784-800-10",
        "Latency MNIST",
        argv,
        prog,
        root,
    )
