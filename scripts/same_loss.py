"""the rules under one loss: the same as ``antlr-figure same_loss`` (antlr_exp.figures.same_loss), from this repository."""

from antlr_exp.cli.figure import shim

shim(__file__)
