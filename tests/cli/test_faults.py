"""Faults and bad input: refused commands leave folders alone, non-finite numbers, one process per
run folder, sweeps checked up front and resumed, full disks, signals, stale caches, empty splits."""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from helpers.runs import ANTLR_TRAIN, _fake_digits, _write_idx, cli_env, compose_config, run_cli, tiny_overrides

from antlr_exp.cli import preflight
from antlr_exp.cli.train import _resume_hint
from antlr_exp.config import validate
from antlr_exp.data import load_task
from antlr_exp.errors import CheckpointWriteError, ConfigError, NonFiniteError, StopSignal
from antlr_exp.training import checkpoint as ckpt
from antlr_exp.training import stopping
from antlr_exp.training.run import run
from antlr_exp.training.trainer import Trainer

pytestmark = pytest.mark.slow  # end to end (see pyproject's markers)

TINY = tiny_overrides("matching", {})


@pytest.fixture(autouse=True)
def one_thread_and_no_locks(one_thread):
    yield
    preflight.release_run_folders()


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    """A finished tiny matching run (trained in-process) with the .hydra/config.yaml Hydra records."""
    folder = tmp_path_factory.mktemp("finished") / "run"
    cfg = compose_config(*TINY)
    run(cfg, folder)
    (folder / ".hydra").mkdir()
    (folder / ".hydra" / "config.yaml").write_text("method:\n  name: antlr\n")
    return folder


def _snapshot(folder):
    return {p.relative_to(folder): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _one_line_exit_2(result, *words):
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2, result.stderr
    assert len(lines) == 1 and lines[0].startswith("antlr-train: error: "), result.stderr
    for word in words:
        assert word in lines[0]


# ---------------------------------------------------------------------------------------------
# 1. A refused command never touches a run folder


def test_refused_resume_and_new_run_leave_a_finished_run_untouched(finished_run, tmp_path):
    before = _snapshot(finished_run)
    refused = run_cli([*TINY, "resume=true", "method=timing", f"hydra.run.dir={finished_run}"], cwd=tmp_path)
    _one_line_exit_2(refused, "method.name='antlr'", "method.name='timing'")
    again = run_cli([*TINY, f"hydra.run.dir={finished_run}"], cwd=tmp_path)  # a new run, same folder
    _one_line_exit_2(again, "already holds another run's checkpoints", "resume=true")
    assert _snapshot(finished_run) == before  # .hydra/config.yaml included


def test_a_refused_run_leaves_no_folder(tmp_path):
    result = run_cli([*TINY, "optimizer.lr=inf", f"hydra.run.dir={tmp_path / 'run'}"], cwd=tmp_path)
    _one_line_exit_2(result, "optimizer.lr=inf", "finite")
    assert not (tmp_path / "run").exists()


# ---------------------------------------------------------------------------------------------
# 2. Non-finite numbers


@pytest.mark.parametrize(
    "override, key",
    [
        ("optimizer.lr=inf", "optimizer.lr=inf"),
        ("method.lambda_act=nan", "method.lambda_act=nan"),
        ("method.lambda_tim=-inf", "method.lambda_tim=-inf"),
        ("neuron.theta=inf", "neuron.theta=inf"),
        ("optimizer.grad_clip_value=inf", "optimizer.grad_clip_value=inf"),
    ],
)
def test_non_finite_config_numbers_are_refused(override, key):
    with pytest.raises(ConfigError, match="finite") as error:
        validate(compose_config(override))
    assert key in str(error.value)


def _all_finite(state_dict):
    return all(bool(torch.isfinite(v).all()) for v in state_dict.values())


@pytest.mark.parametrize("fault", ["loss", "weight"])
def test_non_finite_training_stops_and_keeps_the_last_good_checkpoint(fault, tmp_path, monkeypatch):
    """At step 3 the loss, or one weight after the optimizer step, becomes NaN: the run stops
    with NonFiniteError, and last.pt/best.pt still hold step 2's finite weights."""
    import antlr_exp.training.trainer as train_module

    cfg = compose_config(*tiny_overrides("matching", {}, steps=5), "trainer.val_every_n_steps=1")
    steps = {"n": 0}
    if fault == "loss":
        original = train_module.Objective.trial_losses  # what a training step descends

        def loss(self, out, targets):
            value = original(self, out, targets)
            if torch.is_grad_enabled():
                steps["n"] += 1
                if steps["n"] == 3:
                    value = value * float("nan")
            return value

        monkeypatch.setattr(train_module.Objective, "trial_losses", loss)
    else:
        original = torch.optim.Adam.step

        def step(self, *args, **kwargs):
            result = original(self, *args, **kwargs)
            steps["n"] += 1
            if steps["n"] == 3:
                with torch.no_grad():
                    self.param_groups[0]["params"][0][0, 0] = float("nan")
            return result

        monkeypatch.setattr(torch.optim.Adam, "step", step)
    with pytest.raises(NonFiniteError) as error:
        run(cfg, tmp_path)
    assert "nan" in str(error.value) and "step 3" in str(error.value) and "step 2" in str(error.value)
    last = ckpt.load(tmp_path / "checkpoints" / "last.pt")
    best = ckpt.load(tmp_path / "checkpoints" / "best.pt")
    assert last["state"]["step"] == 2 and best["step"] <= 2
    assert _all_finite(last["model"]) and _all_finite(best["model"])
    assert not (tmp_path / "summary.json").exists()


# ---------------------------------------------------------------------------------------------
# 3. One process per run folder


def test_default_folders_of_the_same_second_are_distinct(tmp_path):
    folder = tmp_path / "outputs" / "2026-01-01_00-00-00"
    made = [preflight.new_folder(folder) for _ in range(3)]
    assert [p.name for p in made] == ["2026-01-01_00-00-00", "2026-01-01_00-00-00_1", "2026-01-01_00-00-00_2"]
    assert all(p.is_dir() for p in made)


def test_a_second_process_on_a_locked_run_folder_stops_with_one_line(tmp_path):
    folder = tmp_path / "run"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from pathlib import Path; from antlr_exp.cli.preflight import "
            "lock_run_folder; lock_run_folder(Path(sys.argv[1])); print('locked', flush=True); time.sleep(60)",
            str(folder),
        ],
        stdout=subprocess.PIPE,
        text=True,
        env=cli_env(),
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        result = run_cli([*TINY, f"hydra.run.dir={folder}"], cwd=tmp_path)
        _one_line_exit_2(result, f"{folder} is in use by another antlr-train process", f"pid {holder.pid}")
        assert sorted(p.name for p in folder.iterdir()) == [".lock"]  # Hydra wrote nothing there
    finally:
        holder.kill()
        holder.wait()


# ---------------------------------------------------------------------------------------------
# 4. Sweeps


def test_a_bad_value_in_a_later_sweep_job_stops_the_sweep_before_any_job(tmp_path):
    sweep = tmp_path / "multirun"
    result = run_cli(["-m", *TINY, "optimizer.lr=0.01,0.02,-1", f"hydra.sweep.dir={sweep}"], cwd=tmp_path)
    _one_line_exit_2(result, "sweep job 2 (optimizer.lr=-1)", "optimizer.lr=-1.0")
    assert not sweep.exists()


def _without_time(summary):
    """A summary less what differs between two runs of the same training by nature: the times,
    the folder and the command's overrides (provenance)."""
    return {
        k: v for k, v in summary.items() if k not in ("train_time_s", "started_at", "ended_at", "run_dir", "overrides")
    }


@pytest.mark.parametrize("trials", [1, 2])
def test_resuming_a_finished_run_keeps_its_summaries_and_a_larger_budget_trains_on(
    trials, data_roots, tmp_path, monkeypatch
):
    folder = tmp_path / "run"
    overrides = [*tiny_overrides("mnist", data_roots, steps=2), f"trials={trials}"]
    first = run(compose_config(*overrides), folder)
    written = {p: p.read_bytes() for p in folder.rglob("summary.json")}
    assert len(written) == trials

    def tested_again(self):
        raise AssertionError("a finished run was tested again")

    with monkeypatch.context() as patch:
        patch.setattr(Trainer, "test_trials", tested_again)
        again = run(compose_config(*overrides, "resume=true"), folder)
    assert again == first
    assert {p: p.read_bytes() for p in folder.rglob("summary.json")} == written  # started_at and all
    longer = run(compose_config(*overrides, "resume=true", "trainer.max_steps=3"), folder)
    summaries = [longer] if trials == 1 else longer["summaries"]
    assert [s["steps"] for s in summaries] == [3] * trials


def test_resume_true_on_a_sweep_resumes_started_jobs_and_starts_the_others(tmp_path):
    base = [*tiny_overrides("matching", {}, steps=4), "trainer.val_every_n_steps=2"]
    sweep = tmp_path / "multirun"
    # job 0 (seed=0) ran 2 of its 4 steps; job 1 (seed=1) never started
    first = run_cli(["-m", *base, "trainer.max_steps=2", "seed=0", f"hydra.sweep.dir={sweep}"], cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    resumed = run_cli(["-m", *base, "seed=0,1", "resume=true", f"hydra.sweep.dir={sweep}"], cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    for job, seed in (("0", 0), ("1", 1)):
        uninterrupted = run(compose_config(*base, f"seed={seed}"), tmp_path / f"alone{seed}")
        summary = json.loads((sweep / job / "summary.json").read_text())
        assert _without_time(summary) == _without_time(uninterrupted)
    assert (sweep / "0" / "metrics.csv").read_text().count("\n") == 3  # header + steps 2 and 4


# ---------------------------------------------------------------------------------------------
# 5. One-line errors


@pytest.mark.parametrize(
    "arguments, words",
    [
        (["optimizer.betas=[0.9]"], ["optimizer.betas=[0.9]", "two numbers in [0, 1)"]),
        (["seed=18446744073709551616"], ["seed=18446744073709551616", "[0, 2**64 - 1]"]),
        (["logger=wandb", "logger.mode=online"], ["logger.mode=online", "credentials", "offline"]),
    ],
)
def test_config_values_torch_or_wandb_would_choke_on_are_one_line_errors(arguments, words, monkeypatch, tmp_path):
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "no-netrc"))
    with pytest.raises(ConfigError) as error:
        validate(compose_config(*arguments))
    for word in words:
        assert word in str(error.value)


def test_wandb_credentials_are_found_in_the_environment_or_netrc(monkeypatch, tmp_path):
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.delenv("WANDB_BASE_URL", raising=False)
    netrc = tmp_path / "netrc"
    monkeypatch.setenv("NETRC", str(netrc))
    online = ("logger=wandb", "logger.mode=online")
    with pytest.raises(ConfigError):
        validate(compose_config(*online))
    netrc.write_text("machine api.wandb.ai\n  login user\n  password 0123456789abcdef\n")
    netrc.chmod(0o600)
    validate(compose_config(*online))
    netrc.unlink()
    monkeypatch.setenv("WANDB_API_KEY", "0123456789abcdef")
    validate(compose_config(*online))


def test_cli_one_line_errors_for_a_folder_under_a_file_and_a_foreign_evaluate_file(tmp_path):
    a_file = tmp_path / "notes.txt"
    a_file.write_text("not a folder, not a checkpoint\n")
    tensor = tmp_path / "tensor.pt"
    torch.save(torch.zeros(3), tensor)
    under = run_cli([*TINY, f"hydra.run.dir={a_file / 'run'}"], cwd=tmp_path)
    _one_line_exit_2(under, f"{a_file} is a file, not a folder")
    for path in (a_file, tensor):
        result = run_cli([*TINY, f"evaluate={path}", f"hydra.run.dir={tmp_path / 'eval'}"], cwd=tmp_path)
        _one_line_exit_2(result, f"evaluate={path} is not a checkpoint of antlr-train")
    assert not (tmp_path / "eval").exists()


def test_interrupt_hint_says_when_there_is_no_checkpoint_yet(finished_run, tmp_path):
    assert "nothing to resume" in _resume_hint(tmp_path) and "resume=true" not in _resume_hint(tmp_path)
    assert f"resume=true hydra.run.dir={finished_run}" in _resume_hint(finished_run)


# ---------------------------------------------------------------------------------------------
# 6. A full disk while checkpointing


def test_a_full_disk_leaves_the_previous_checkpoint_and_no_temporary_file(tmp_path, monkeypatch):
    path = tmp_path / "checkpoints" / "last.pt"
    ckpt.save_atomic({"step": 1, "w": torch.ones(4)}, path)
    before = path.read_bytes()

    def disk_full(target, data):
        with open(target, "wb") as stream:
            stream.write(bytes(data)[: len(data) // 2])
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(ckpt, "_write_file", disk_full)
    with pytest.raises(CheckpointWriteError, match="the disk is full; the previous last.pt is intact"):
        ckpt.save_atomic({"step": 2, "w": torch.zeros(1000)}, path)
    assert path.read_bytes() == before and ckpt.load(path)["step"] == 1
    assert sorted(p.name for p in path.parent.iterdir()) == ["last.pt"]


def test_a_real_full_tmpfs(tmp_path):
    mount = tmp_path / "small"
    mount.mkdir()
    if (
        os.geteuid() != 0
        or subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mount)], capture_output=True
        ).returncode
        != 0
    ):
        pytest.skip("mounting a small tmpfs needs root and a mount-capable sandbox")
    try:
        path = mount / "last.pt"
        ckpt.save_atomic({"step": 1, "w": torch.ones(1000)}, path)
        before = path.read_bytes()
        with pytest.raises(CheckpointWriteError, match="the disk is full"):
            ckpt.save_atomic({"step": 2, "w": torch.ones(100_000)}, path)  # 400 kB > 256 kB
        assert path.read_bytes() == before and sorted(p.name for p in mount.iterdir()) == ["last.pt"]
    finally:
        subprocess.run(["umount", str(mount)], check=False)


# ---------------------------------------------------------------------------------------------
# 7. Signals


def test_a_stop_signal_saves_the_step_and_resuming_gives_the_uninterrupted_result(tmp_path, monkeypatch):
    """SIGUSR2 (submitit's warning before a time limit) during step 3 of 6 (evaluation every 4):
    last.pt holds step 3 with its half-interval training metrics; resuming ends like a run
    that was never stopped."""
    import antlr_exp.training.trainer as train_module

    overrides = [*tiny_overrides("matching", {}, steps=6), "trainer.val_every_n_steps=4"]
    full = run(compose_config(*overrides), tmp_path / "full")
    original = train_module.Trainer._train_step

    def step(self, inputs, targets):
        original(self, inputs, targets)
        if self.state.step == 2:  # the step under way is the third
            os.kill(os.getpid(), signal.SIGUSR2)

    stopped = tmp_path / "stopped"
    with monkeypatch.context() as patch:
        patch.setattr(train_module.Trainer, "_train_step", step)
        with pytest.raises(StopSignal) as error, stopping.catch_stop_signals():
            run(compose_config(*overrides), stopped)
    assert error.value.signum == signal.SIGUSR2 and "SIGUSR2 at step 3" in str(error.value)
    assert ckpt.load(stopped / "checkpoints" / "last.pt")["state"]["step"] == 3
    resumed = run(compose_config(*overrides, "resume=true"), stopped)
    assert _without_time(resumed) == _without_time(full)
    assert [r.split(",")[:-1] for r in (stopped / "metrics.csv").read_text().splitlines()] == [
        r.split(",")[:-1] for r in (tmp_path / "full" / "metrics.csv").read_text().splitlines()
    ]


def test_the_stop_is_handed_to_the_handler_that_was_there_before():
    seen = []
    before = signal.signal(signal.SIGUSR1, lambda signum, frame: seen.append(signum))
    try:
        with stopping.catch_stop_signals():
            os.kill(os.getpid(), signal.SIGUSR1)
            assert stopping.requested() == signal.SIGUSR1 and seen == []
        stopping.pass_on(signal.SIGUSR1)
        assert seen == [signal.SIGUSR1]
    finally:
        signal.signal(signal.SIGUSR1, before)


# steps of a run the signal must interrupt: far more than the half second the tests wait (400 steps
# of the tiny matching task took under that on quiet cores, so the signal could come after the end)
LONG = 200_000


def test_sigterm_on_the_cli_saves_a_checkpoint_and_exits_with_a_resume_hint(tmp_path):
    folder = tmp_path / "run"
    overrides = [*tiny_overrides("matching", {}, steps=LONG), f"trainer.val_every_n_steps={LONG}"]
    process = subprocess.Popen(
        [str(ANTLR_TRAIN), *overrides, f"hydra.run.dir={folder}"],
        cwd=tmp_path,
        env=cli_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 120
    while not (folder / "metrics.csv").exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)  # metrics.csv appears once training begins
    time.sleep(0.5)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 128 + signal.SIGTERM, stderr
    step = ckpt.load(folder / "checkpoints" / "last.pt")["state"]["step"]
    assert 0 < step < LONG
    assert f"stopped by SIGTERM at step {step}" in stderr and f"resume=true hydra.run.dir={folder}" in stderr


def test_sigterm_in_a_sweep_job_hints_at_the_sweep_command(tmp_path):
    sweep = tmp_path / "sweep"
    overrides = [*tiny_overrides("matching", {}, steps=LONG), f"trainer.val_every_n_steps={LONG}"]
    process = subprocess.Popen(
        [str(ANTLR_TRAIN), "-m", *overrides, "seed=0,1", f"hydra.sweep.dir={sweep}"],
        cwd=tmp_path,
        env=cli_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 120
    while not (sweep / "0" / "metrics.csv").exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.5)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 128 + signal.SIGTERM, stderr
    assert (sweep / "0" / "checkpoints" / "last.pt").is_file() and not (sweep / "1").exists()
    assert f"repeat the -m command with resume=true hydra.sweep.dir={sweep}" in stderr, stderr
    assert "hydra.run.dir" not in stderr


# ---------------------------------------------------------------------------------------------
# 8. N-MNIST cache key; empty splits


def test_a_rewritten_recording_of_the_same_size_is_not_served_from_the_cache(data_roots, tmp_path):
    from helpers.nmnist_files import expected_frames

    cache = tmp_path / "cache"
    original = load_task(
        "nmnist", root=data_roots["nmnist"], cache_dir=cache, limit_train=12, limit_test=4, num_steps=60
    )
    copy = tmp_path / "copy"
    shutil.copytree(data_roots["nmnist"], copy)  # copy2: same sizes and modification times
    same = load_task("nmnist", root=copy, cache_dir=cache, limit_train=12, limit_test=4, num_steps=60)
    assert same.test.from_cache  # an identical copy may share the cache
    index = 0
    victim = copy / "Test" / same.test.path(index).split("Test/")[-1]
    data = bytearray(victim.read_bytes())
    data[0::5] = bytes((b + 7) % 34 for b in data[0::5])  # every event's x moves: same size
    victim.write_bytes(bytes(data))
    corrupted = load_task("nmnist", root=copy, cache_dir=cache, limit_train=12, limit_test=4, num_steps=60)
    assert not corrupted.test.from_cache
    frames, _ = corrupted.test[index]
    assert torch.equal(frames, expected_frames(victim, 60))
    assert not torch.equal(frames, original.test[index][0])


def test_an_empty_validation_split_is_an_error(tmp_path):
    raw = tmp_path / "mnist" / "MNIST" / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for split, count in (("train", 5), ("t10k", 4)):  # 5 // 6 = 0 validation images
        images, labels = _fake_digits(count, rng)
        _write_idx(raw / f"{split}-images-idx3-ubyte", images)
        _write_idx(raw / f"{split}-labels-idx1-ubyte", labels)
    with pytest.raises(ConfigError, match="the val split is empty") as error:
        load_task("mnist", root=tmp_path / "mnist")
    assert "train 5, val 0, test 4" in str(error.value)
