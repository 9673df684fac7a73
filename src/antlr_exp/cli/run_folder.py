"""The run folder: its lock, and what a job may do with the folder it is given.

Each run folder holds a lock (``.lock``, taken with ``fcntl.flock``) while a process trains in it:
a second process aimed at the same folder stops with one line instead of mixing its files in, and
Ctrl-C on a sweep whose jobs run in other processes waits for the locks its jobs hold.
``resume=true`` needs the same run in the folder; a new run or an ``evaluate=`` must not land in a
folder holding another run's checkpoints or results; no part of the path may be a file.
"""

from __future__ import annotations

import fcntl
import os
import time
from pathlib import Path

from omegaconf import DictConfig

from ..errors import ConfigError
from ..results import layout
from ..training import checkpoint as ckpt

LOCK_FILE = ".lock"

_held_locks: dict = {}  # resolved folder -> open lock file, held until the job in it ends


def check_folder_path(folder: Path, key: str) -> None:
    """Every existing part of ``folder`` must be a folder (Hydra would fail with a traceback)."""
    for part in (folder, *folder.parents):
        if part.exists():
            if not part.is_dir():
                raise ConfigError(
                    f"{key}={folder}: {part} is a file, not a folder; accepted: a path whose existing parts are folders"
                )
            return


def lock_run_folder(folder: Path) -> None:
    """Hold ``folder/.lock`` for the rest of this process; ConfigError when another process holds it."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    key = folder.resolve()
    if key in _held_locks:
        return
    stream = open(folder / LOCK_FILE, "a+")
    try:
        fcntl.flock(stream.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        stream.seek(0)
        holder = stream.read().strip()
        stream.close()
        raise ConfigError(
            f"the run folder {folder} is in use by another antlr-train process"
            f"{f' (pid {holder})' if holder else ''}; wait for it to end or choose another "
            f"hydra.run.dir"
        ) from None
    stream.seek(0)
    stream.truncate()
    stream.write(f"{os.getpid()}\n")
    stream.flush()
    _held_locks[key] = stream


def release_run_folders() -> None:
    """Let go of every lock this process holds (tests; a process's locks end with it anyway)."""
    while _held_locks:
        _, stream = _held_locks.popitem()
        stream.close()


def release_run_folder(folder: Path) -> None:
    """Let go of ``folder``'s lock, if this process holds it (its job has ended)."""
    stream = _held_locks.pop(Path(folder).resolve(), None)
    if stream is not None:
        stream.close()


def held_elsewhere(folder: Path) -> bool:
    """Whether another process holds ``folder``'s lock: a job still training there."""
    if Path(folder).resolve() in _held_locks:
        return False
    try:
        with open(Path(folder) / LOCK_FILE) as stream:
            fcntl.flock(stream.fileno(), fcntl.LOCK_SH | fcntl.LOCK_NB)
    except FileNotFoundError:
        return False
    except OSError:
        return True
    return False


def wait_for_jobs(sweep_dir: Path, seconds: float) -> list:
    """Wait up to ``seconds`` for the jobs of ``sweep_dir`` that other processes are training to
    end; returns the folders of those still training then (none when all ended in time)."""
    deadline = time.monotonic() + seconds
    while True:
        busy = [lock.parent for lock in Path(sweep_dir).glob(f"**/{LOCK_FILE}") if held_elsewhere(lock.parent)]
        if not busy or time.monotonic() >= deadline:
            return busy
        time.sleep(0.05)


def new_folder(folder: Path) -> Path:
    """Create ``folder``, or ``folder_1``, ``folder_2``, ... when it exists (atomic: ``mkdir``)."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    candidate, number = folder, 0
    while True:
        try:
            candidate.mkdir()
            return candidate
        except FileExistsError:
            number += 1
            candidate = folder.with_name(f"{folder.name}_{number}")


#: What a finished (or started) run leaves in its folder besides checkpoints/: a new run or an
#: ``evaluate=`` would overwrite them (a stacked run's trials hold theirs in ``seed_<s>/``).
RUN_RESULTS = layout.RUN_RESULTS


def run_results(folder: Path) -> list:
    """The results of a run that ``folder`` holds: its summaries and metrics (an empty
    ``metrics.csv``, of a run that stopped before its first evaluation, holds none), in its own
    files and in those of a stacked run's ``seed_<s>/`` folders."""
    folders = [folder, *sorted(p for p in folder.glob("seed_*") if p.is_dir())] if folder.is_dir() else []
    found = []
    for place in folders:
        for name in RUN_RESULTS:
            path = place / name
            if path.is_file() and (name != layout.METRICS_FILE or path.stat().st_size > 0):
                found.append(path)
        best = ckpt.checkpoint_dir(place) / ckpt.BEST
        if place != folder and best.is_file():
            found.append(best)
    return found


def check_job_folder(cfg: DictConfig, folder: Path, key: str, in_sweep: bool) -> None:
    """What a job may do with its folder: ``resume=true`` continues the same run (in a sweep, a job
    that never wrote a checkpoint starts from the beginning); a new run or an ``evaluate=`` never
    overwrites another run's checkpoints or results."""
    from ..training.state import check_finite_checkpoint, check_same_run  # training imports torch's heavy parts

    check_folder_path(folder, key)
    checkpoints = ckpt.checkpoint_dir(folder)
    last = checkpoints / ckpt.LAST
    existing = [p for p in (last, checkpoints / ckpt.BEST) if p.is_file()]
    if cfg.evaluate:
        ckpt.load_for_evaluation(ckpt.resolve_for_evaluation(cfg.evaluate))
        held = existing + run_results(folder)
        if held:
            raise ConfigError(
                f"evaluate={cfg.evaluate}: the run folder {folder} already holds a run ({held[0]}), "
                f"which evaluate= would overwrite; accepted: another {key} (a new or empty folder)"
            )
        return
    if cfg.resume:
        if last.is_file():
            payload = ckpt.load(last)
            check_same_run(payload["config"], cfg, folder)
            check_finite_checkpoint(payload, last)
        elif not in_sweep:
            raise ConfigError(
                f"resume=true but {last} does not exist; point hydra.run.dir at the folder of the run to continue"
            )
        else:
            finished = [p for p in run_results(folder) if p.name != layout.METRICS_FILE]
            if finished:  # the job would start again and overwrite them
                raise ConfigError(
                    f"resume=true: {folder} holds a finished run's results ({finished[0]}) but "
                    f"no {last} to continue from; accepted: another {key}"
                )
        return
    if requeued():  # a job SLURM started again resumes (prepare_job)
        return
    if existing:
        raise ConfigError(
            f"{folder} already holds another run's checkpoints ({existing[0]}); accepted: "
            f"resume=true to continue that run, or another {key}"
        )
    results = run_results(folder)
    if results:
        raise ConfigError(
            f"{folder} already holds another run's results ({results[0]}), which a new run would "
            f"overwrite; accepted: another {key}"
        )


def requeued() -> bool:
    """Whether SLURM started this job again (after ``scontrol requeue``, a preemption, a time limit)."""
    try:
        return int(os.environ.get("SLURM_RESTART_COUNT") or 0) > 0
    except ValueError:
        return False
