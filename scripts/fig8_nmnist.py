"""Fig. 8, N-MNIST: the same as ``antlr-figure fig8`` (antlr_exp.figures.fig8_nmnist), from this repository."""

from antlr_exp.cli.figure import shim

shim(__file__)
