"""Where a result came from: what ``summary.json`` records besides the metrics.

``package_version``, ``git_commit`` (of the checkout the package runs from, else of the working
directory's repository; None outside git) and ``git_dirty`` (its tracked files differed from that
commit), both as they were when the run started, ``overrides`` (the command line's overrides when run
through antlr-train, None in-process), ``started_at`` / ``ended_at`` (UTC, ISO 8601) and
``run_dir`` (absolute).
"""

from __future__ import annotations

import subprocess
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Optional

from .. import __version__


def now() -> str:
    """The current UTC time, ISO 8601 to the second."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def package_version() -> str:
    try:
        return metadata.version("antlr-exp")
    except metadata.PackageNotFoundError:  # run from a source tree that was never installed
        return __version__


def git_state(*folders: Path) -> tuple:
    """``(HEAD, dirty)`` of the first of ``folders`` inside a git repository, else ``(None, None)``.
    ``dirty``: tracked files differ from HEAD (``git status --porcelain --untracked-files=no``)."""
    for folder in folders:
        try:
            head = subprocess.run(
                ["git", "-C", str(folder), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10
            )
            if head.returncode != 0 or not head.stdout.strip():
                continue
            status = subprocess.run(
                ["git", "-C", str(folder), "status", "--porcelain", "--untracked-files=no"],
                capture_output=True,
                text=True,
                timeout=30,
            )
        except (OSError, subprocess.SubprocessError):
            return None, None  # no git on this machine
        return head.stdout.strip(), bool(status.stdout.strip()) if status.returncode == 0 else None
    return None, None


def hydra_overrides() -> Optional[list]:
    """The overrides of the command line (``hydra.overrides.task``), None outside a Hydra run."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return None
    return list(HydraConfig.get().overrides.task)


def at_start() -> dict:
    """What a run records when it starts: the code it runs (the checkout may move on while it
    trains) and the time."""
    commit, dirty = git_state(Path(__file__).resolve().parent, Path.cwd())
    return {"package_version": package_version(), "git_commit": commit, "git_dirty": dirty, "started_at": now()}


def provenance(run_dir: Path, start: dict) -> dict:
    """The summary's provenance fields: ``start`` from :func:`at_start`, then the overrides, the
    end time and the folder."""
    return {
        "package_version": start["package_version"],
        "git_commit": start["git_commit"],
        "git_dirty": start["git_dirty"],
        "overrides": hydra_overrides(),
        "started_at": start["started_at"],
        "ended_at": now(),
        "run_dir": str(Path(run_dir).resolve()),
    }
