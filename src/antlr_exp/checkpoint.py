"""Kept for one release: moved to :mod:`antlr_exp.training.checkpoint`. This name is that module itself (patching
a name through it reaches the code); import it from its new place."""

import sys
from importlib import import_module

sys.modules[__name__] = import_module("antlr_exp.training.checkpoint")
