"""One training epoch timed, now ``python benchmarks/epoch.py``; this path runs the same."""

import runpy
from pathlib import Path

runpy.run_path(str(Path(__file__).resolve().parents[1] / "benchmarks" / "epoch.py"), run_name="__main__")
