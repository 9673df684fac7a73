"""``python -m antlr_exp.cli``: the same as ``antlr-train``."""

from .train import main

main()
