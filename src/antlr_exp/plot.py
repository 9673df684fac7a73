"""Kept for one release: ``antlr-plot`` lives in :mod:`antlr_exp.results.plots`; this name is the
same module."""

import sys

from .results import plots as _plots

if __name__ == "__main__":
    sys.exit(_plots.main())
sys.modules[__name__] = _plots
