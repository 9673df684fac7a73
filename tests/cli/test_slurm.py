"""``hydra/launcher=slurm`` (submitit) against a real SLURM cluster.

Skipped where no SLURM node is up; ``scripts/slurm_local_cluster.sh`` starts a one-node cluster
on this machine (CI does). A 2-job sweep runs through SLURM; one job gets SLURM's warning signal
before a time limit while it trains, saves a checkpoint, is requeued, resumes, and both jobs end
exactly like the same runs made locally without interruption.
"""

from __future__ import annotations

import csv
import fcntl
import json
import shutil
import subprocess
import time

import pytest
from helpers.runs import ANTLR_TRAIN, cli_env, compose_config, tiny_overrides

from antlr_exp.training.run import run

STEPS = 600  # the rest of the training after the first evaluation point outlasts the signal's way


def _no_slurm_reason():
    if shutil.which("sinfo") is None or shutil.which("sbatch") is None:
        return (
            "SLURM is not installed here (no sinfo/sbatch); scripts/slurm_local_cluster.sh sets up a one-node cluster"
        )
    try:
        states = subprocess.run(["sinfo", "-h", "-o", "%t"], capture_output=True, text=True, timeout=20)
    except subprocess.TimeoutExpired:
        return "sinfo did not answer within 20 s: no SLURM controller is running"
    if states.returncode != 0 or not any(s.startswith(("idle", "mix")) for s in states.stdout.split()):
        found = " ".join((states.stdout + states.stderr).split()) or "no nodes"
        return f"no SLURM node is up ({found}); scripts/slurm_local_cluster.sh starts one"
    return None


pytestmark = [
    pytest.mark.slow,
    pytest.mark.slurm,
    pytest.mark.skipif(_no_slurm_reason() is not None, reason=str(_no_slurm_reason())),
]


def _rows(path):
    with open(path) as stream:
        return [{k: v for k, v in row.items() if k != "time_s"} for row in csv.DictReader(stream)]


def _evaluated_steps(run_folder) -> int:
    try:
        return max(0, len((run_folder / "metrics.csv").read_text().splitlines()) - 1)
    except FileNotFoundError:
        return 0


def _release_when_requeued(job_id: str, deadline: float) -> None:
    """SLURM holds a requeued job for two minutes (its begin time); start it sooner. Not at once:
    the node refuses to start a job in the same second its previous run was killed (slurmctld logs
    "Killing non-startable batch JobId=...: Job credential revoked"), and the job is lost."""
    while time.monotonic() < deadline:
        state = subprocess.run(
            ["squeue", "-h", "-j", job_id, "-o", "%T %r"], capture_output=True, text=True, timeout=30
        ).stdout.split()
        if state[:2] == ["PENDING", "BeginTime"]:
            time.sleep(2.5)
            subprocess.run(["scontrol", "update", f"JobId={job_id}", "StartTime=now"], check=True, timeout=30)
            return
        time.sleep(0.2)


def _finish(process, timeout: float, sweep) -> str:
    """The sweep command's output once it ends; past ``timeout`` it is killed and the test fails
    with what SLURM and the job logs said, so that a hang can be told from a slow machine."""
    try:
        return process.communicate(timeout=timeout)[0]
    except subprocess.TimeoutExpired:
        process.kill()
        output = process.communicate()[0]
        report = [f"the sweep command did not end within {timeout} s; its last output:", output[-3000:]]
        for command in (["squeue", "-a"], ["sinfo", "-N", "-l"]):
            shown = subprocess.run(command, capture_output=True, text=True, timeout=30)
            report += [f"$ {' '.join(command)}", shown.stdout + shown.stderr]
        for path in sorted((sweep / ".submitit").glob("*/*_log.*")) + sorted(sweep.glob("*/antlr-train.log")):
            report += [f"--- {path.relative_to(sweep)}", path.read_text()[-3000:]]
        pytest.fail("\n".join(report), pytrace=False)


def _without_time(summary):
    """Less what differs between two runs of the same training by nature (times, folder, command)."""
    return {
        k: v for k, v in summary.items() if k not in ("train_time_s", "started_at", "ended_at", "run_dir", "overrides")
    }


def test_slurm_sweep_equals_local_runs_and_a_signalled_job_resumes(tmp_path):
    overrides = [*tiny_overrides("matching", {}, steps=STEPS), "trainer.val_every_n_steps=20"]
    sweep = tmp_path / "multirun"
    process = subprocess.Popen(
        [
            str(ANTLR_TRAIN),
            "-m",
            "hydra/launcher=slurm",
            "hydra.launcher.cpus_per_task=1",
            "hydra.launcher.mem_gb=1",
            "hydra.launcher.timeout_min=10",
            *overrides,
            "seed=0,1",
            f"hydra.sweep.dir={sweep}",
        ],
        cwd=tmp_path,
        env=cli_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 180
        while _evaluated_steps(sweep / "1") < 1 and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)  # job 1 is training: it has passed its first evaluation point
        [job_folder] = (sweep / ".submitit").glob("*_1")
        job_id = job_folder.name
        subprocess.run(["scancel", "--signal=USR2", job_id], check=True, timeout=30)
        _release_when_requeued(job_id, deadline=time.monotonic() + 60)
        output = _finish(process, 300, sweep)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0, output

    log = (sweep / "1" / "antlr-train.log").read_text()
    assert "SLURM started this job again: resuming from" in log, log  # the requeued job resumed
    job_logs = "".join(p.read_text() for p in job_folder.glob("*_log.*"))
    assert "stopped by SIGUSR2 at step" in job_logs, job_logs  # it was stopped while training
    for job, seed in (("0", 0), ("1", 1)):
        local = tmp_path / f"local{seed}"
        expected = run(compose_config(*overrides, f"seed={seed}"), local)
        summary = json.loads((sweep / job / "summary.json").read_text())
        assert _without_time(summary) == _without_time(expected)
        assert _rows(sweep / job / "metrics.csv") == _rows(local / "metrics.csv")


def test_a_job_that_fails_ends_the_slurm_sweep_with_its_error(tmp_path):
    # Job 1's folder is held by another process, so that job fails as soon as it starts. The sweep
    # command must end and say why: this cluster keeps no accounting, so the command learns of the
    # failure from the job's result alone (a job that merely exits leaves none, and it waits forever).
    sweep = tmp_path / "multirun"
    (sweep / "1").mkdir(parents=True)
    with open(sweep / "1" / ".lock", "w") as holder:
        fcntl.flock(holder.fileno(), fcntl.LOCK_EX)
        process = subprocess.Popen(
            [
                str(ANTLR_TRAIN),
                "-m",
                "hydra/launcher=slurm",
                "hydra.launcher.cpus_per_task=1",
                "hydra.launcher.mem_gb=1",
                "hydra.launcher.timeout_min=10",
                *tiny_overrides("matching", {}, steps=20),
                "seed=0,1",
                f"hydra.sweep.dir={sweep}",
            ],
            cwd=tmp_path,
            env=cli_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        output = _finish(process, 120, sweep)
    assert process.returncode != 0, output
    assert f"the run folder {sweep / '1'} is in use by another antlr-train process" in output, output
    assert "Error executing job with overrides" in output and "seed=1" in output, output  # which job
    assert "Traceback" not in output, output  # the job's line, not a traceback
    assert (sweep / "0" / "summary.json").is_file()  # the other job finished
