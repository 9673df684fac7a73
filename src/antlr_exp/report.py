"""Kept for one release: ``antlr-report`` lives in :mod:`antlr_exp.results.report`; this name is
the same module."""

import sys

from .results import report as _report

if __name__ == "__main__":
    sys.exit(_report.main())
sys.modules[__name__] = _report
