"""Fig. 6, spike-train matching: the same as ``antlr-figure fig6`` (antlr_exp.figures.fig6_matching), from this repository."""

from antlr_exp.cli.figure import shim

shim(__file__)
