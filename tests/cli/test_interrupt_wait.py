"""Ctrl-C on a sweep whose jobs run in worker processes (the joblib launcher, which kills its
workers as soon as it sees the interrupt): antlr-train's own process first waits, a bounded time,
for the jobs still training to stop with their lines. "Still training" is read from the run
folders' locks, which a job holds while it trains; here other processes hold them."""

from __future__ import annotations

import subprocess
import sys
import time

from antlr_exp.cli import run_folder

#: a process that holds ``<folder>/.lock`` as a training job does, for ``seconds``, then lets go
HOLDER = """
import fcntl, sys, time
stream = open(sys.argv[1] + "/.lock", "a+")
fcntl.flock(stream.fileno(), fcntl.LOCK_EX)
print("held", flush=True)
time.sleep(float(sys.argv[2]))
"""


def hold(folder, seconds: float) -> subprocess.Popen:
    folder.mkdir(parents=True, exist_ok=True)
    process = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(folder), str(seconds)], stdout=subprocess.PIPE, text=True
    )
    assert process.stdout.readline().strip() == "held"
    return process


def test_waits_until_the_jobs_that_other_processes_train_have_ended(tmp_path):
    sweep = tmp_path / "sweep"
    (sweep / "0").mkdir(parents=True)
    (sweep / "0" / ".lock").write_text("")  # a job that ended: its lock file stays, nobody holds it
    short, longer = hold(sweep / "1", 0.5), hold(sweep / "2", 1.5)
    started = time.monotonic()
    assert run_folder.wait_for_jobs(sweep, 60) == []
    waited = time.monotonic() - started
    assert longer.poll() is not None and short.poll() is not None  # both had ended, not just the first
    assert waited < 30


def test_the_wait_is_bounded_and_names_the_jobs_still_training(tmp_path):
    sweep = tmp_path / "sweep"
    process = hold(sweep / "3", 60)
    try:
        started = time.monotonic()
        assert run_folder.wait_for_jobs(sweep, 0.5) == [sweep / "3"]
        assert 0.5 <= time.monotonic() - started < 20
    finally:
        process.kill()
        process.wait()
    assert run_folder.wait_for_jobs(sweep, 60) == []  # the killed job's lock went with it


def test_a_job_of_this_process_is_not_waited_for(tmp_path):
    run_folder.lock_run_folder(tmp_path / "sweep" / "0")  # the basic launcher: jobs in this process
    try:
        started = time.monotonic()
        assert run_folder.wait_for_jobs(tmp_path / "sweep", 60) == []
        assert time.monotonic() - started < 5
    finally:
        run_folder.release_run_folder(tmp_path / "sweep" / "0")
    assert not run_folder.held_elsewhere(tmp_path / "sweep" / "0")
