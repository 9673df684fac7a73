"""Timing harnesses of the engine, one module per question (see README.md). Run them from the
repository root as modules, e.g. ``python -m benchmarks.bench``; they import the installed
``antlr_exp`` (and its oracles, such as :mod:`antlr_exp.reference`), never the tests."""
