"""Where a training step's time goes, now ``python -m benchmarks.profile_step`` from the repository root; this path runs the same."""

import runpy
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository, which holds benchmarks/
runpy.run_module("benchmarks.profile_step", run_name="__main__", alter_sys=True)
