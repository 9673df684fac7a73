"""ANTLR's weights: the same as ``antlr-figure lambda_sweep`` (antlr_exp.figures.lambda_sweep), from this repository."""

from antlr_exp.cli.figure import shim

shim(__file__)
