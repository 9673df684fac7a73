"""``python -m antlr_exp.engine.backends --check [--strict]``: build the C++ kernels and say
whether they work (``--strict``: exit 1 where they do not)."""

import argparse
import sys

from . import check

parser = argparse.ArgumentParser(prog="python -m antlr_exp.engine.backends", description=__doc__)
parser.add_argument("--check", action="store_true", required=True, help="build the C++ kernels and report")
parser.add_argument("--strict", action="store_true", help="exit 1 where the C++ kernels did not build")
sys.exit(check(parser.parse_args().strict))
