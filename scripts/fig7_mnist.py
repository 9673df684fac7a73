"""Fig. 7, latency MNIST: the same as ``antlr-figure fig7`` (antlr_exp.figures.fig7_mnist), from this repository."""

from antlr_exp.cli.figure import shim

shim(__file__)
