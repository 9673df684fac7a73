"""Fig. 5, the loss landscape: the same as ``antlr-figure fig5`` (antlr_exp.figures.fig5_landscape), from this repository."""

from antlr_exp.cli.figure import shim

shim(__file__)
