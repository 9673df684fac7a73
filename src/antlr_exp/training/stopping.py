"""Stopping a run cleanly on a signal: SIGTERM, and the signal SLURM sends before a time limit.

While ``catch_stop_signals()`` is active, SIGTERM, SIGUSR1 and SIGUSR2 only set a flag. The
training loop looks at it after every step (``requested()``); when set it saves ``last.pt`` at
that step and raises ``StopSignal``. The CLI then hands the signal to the handler that was there
before (submitit's, under ``hydra/launcher=slurm``: it requeues the job, which resumes from that
checkpoint), or exits with status 128 + the signal number and a resume hint.
"""

from __future__ import annotations

import signal
from contextlib import contextmanager
from typing import Optional

STOP_SIGNALS = (signal.SIGTERM, signal.SIGUSR1, signal.SIGUSR2)

_state: dict = {"signum": None, "previous": {}}


def requested() -> Optional[int]:
    """The stop signal received since ``catch_stop_signals`` began, or None."""
    return _state["signum"]


def _note(signum, frame) -> None:
    _state["signum"] = signum


@contextmanager
def catch_stop_signals():
    """Turn the stop signals into a flag for the duration (main thread only; elsewhere a no-op)."""
    previous = {}
    _state["signum"] = None
    try:
        for number in STOP_SIGNALS:
            previous[number] = signal.signal(number, _note)
    except ValueError:  # not the main thread: signals cannot be caught here
        pass
    _state["previous"] = dict(previous)
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
        _state["signum"] = None


def pass_on(signum: int) -> None:
    """Call the handler that was installed before ours (submitit's requeue), if it was Python's."""
    handler = _state["previous"].get(signum)
    if callable(handler):
        handler(signum, None)
