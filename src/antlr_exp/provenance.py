"""Where a result came from: what ``summary.json`` records besides the metrics.

``package_version``, ``git_commit`` (of the checkout the package runs from, else of the working
directory's repository; None outside git), ``overrides`` (the command line's overrides when run
through antlr-train, None in-process), ``started_at`` / ``ended_at`` (UTC, ISO 8601) and
``run_dir`` (absolute).
"""

from __future__ import annotations

import subprocess
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Optional

from . import __version__


def now() -> str:
    """The current UTC time, ISO 8601 to the second."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def package_version() -> str:
    try:
        return metadata.version("antlr-exp")
    except metadata.PackageNotFoundError:  # run from a source tree that was never installed
        return __version__


def git_commit(*folders: Path) -> Optional[str]:
    """``HEAD`` of the first of ``folders`` inside a git repository, or None."""
    for folder in folders:
        try:
            result = subprocess.run(["git", "-C", str(folder), "rev-parse", "HEAD"], capture_output=True,
                                    text=True, timeout=10)
        except (OSError, subprocess.SubprocessError):
            return None  # no git on this machine
        if result.returncode == 0 and result.stdout.strip():
            return result.stdout.strip()
    return None


def hydra_overrides() -> Optional[list]:
    """The overrides of the command line (``hydra.overrides.task``), None outside a Hydra run."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return None
    return list(HydraConfig.get().overrides.task)


def provenance(run_dir: Path, started_at: str) -> dict:
    package = Path(__file__).resolve().parent
    return {
        "package_version": package_version(),
        "git_commit": git_commit(package, Path.cwd()),
        "overrides": hydra_overrides(),
        "started_at": started_at,
        "ended_at": now(),
        "run_dir": str(Path(run_dir).resolve()),
    }
