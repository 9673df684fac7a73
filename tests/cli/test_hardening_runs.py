"""A run's results are never lost or overwritten: evaluate= and new runs refuse folders that hold a
run, non-finite weights are caught at the step that made them and never saved, a stacked
checkpoint is evaluated through its trials' folders, a resume repairs best.pt and says when a
lowered budget was already spent."""

from __future__ import annotations

import logging
import os
import shutil
import signal

import pytest
import torch
from helpers.runs import compose_config, run_cli, tiny_overrides

from antlr_exp.cli import preflight
from antlr_exp.errors import ConfigError, NonFiniteError
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
def finished(tmp_path_factory):
    """A finished tiny matching run (in-process), with the .hydra/config.yaml Hydra records."""
    folder = tmp_path_factory.mktemp("finished") / "R1"
    run(compose_config(*TINY), folder)
    (folder / ".hydra").mkdir()
    (folder / ".hydra" / "config.yaml").write_text("method:\n  name: antlr\n")
    return folder


def _snapshot(folder):
    return {p.relative_to(folder): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _copy_without(source, target, *left_out):
    shutil.copytree(source, target, ignore=shutil.ignore_patterns(*left_out))
    return target


# ---------------------------------------------------------------------------------------------
# evaluate= and new runs never land in a folder that holds a run


def test_evaluate_into_the_folder_of_the_run_it_evaluates_is_refused_and_leaves_it_untouched(finished, tmp_path):
    before = _snapshot(finished)
    result = run_cli(["evaluate=" + str(finished), f"hydra.run.dir={finished}"], cwd=tmp_path)
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1, result.stderr
    assert lines[0].startswith("antlr-train: error: evaluate=") and "already holds a run" in lines[0]
    assert _snapshot(finished) == before  # summary.json and .hydra/config.yaml included


@pytest.mark.parametrize("kept", ["checkpoints", "summary.json", "metrics.csv", "trials.json"])
def test_evaluate_into_another_runs_folder_is_refused(kept, finished, tmp_path):
    other = tmp_path / "R9"
    other.mkdir()
    if kept == "checkpoints":
        shutil.copytree(finished / "checkpoints", other / "checkpoints")
    else:
        (other / kept).write_text(
            (finished / "summary.json").read_text() if kept != "metrics.csv" else (finished / "metrics.csv").read_text()
        )
    with pytest.raises(ConfigError, match="already holds a run") as error:
        preflight.check_command([f"evaluate={finished}", f"hydra.run.dir={other}"])
    assert kept in str(error.value)
    fresh = tmp_path / "fresh"  # a new folder: evaluate= goes ahead
    preflight.check_command([f"evaluate={finished}", f"hydra.run.dir={fresh}"])
    assert fresh.is_dir()


@pytest.mark.parametrize("left", [("summary.json", "metrics.csv"), ("metrics.csv",), ("summary.json",)])
def test_a_new_run_refuses_a_finished_run_whose_checkpoints_were_removed(left, finished, tmp_path):
    folder = tmp_path / "R1"
    folder.mkdir()
    for name in left:
        shutil.copy(finished / name, folder / name)
    with pytest.raises(ConfigError, match="already holds another run's results") as error:
        preflight.check_command([*TINY, f"hydra.run.dir={folder}"])
    assert left[0] in str(error.value) or left[-1] in str(error.value)


def test_a_new_run_may_use_a_folder_whose_run_stopped_before_any_result(tmp_path):
    folder = tmp_path / "run"
    folder.mkdir()
    (folder / "metrics.csv").write_text("")  # what a run that stopped before its first evaluation leaves
    preflight.check_command([*TINY, f"hydra.run.dir={folder}"])


def test_a_new_run_refuses_a_stacked_runs_folder_and_the_current_folder_with_a_summary(finished, tmp_path, monkeypatch):
    stacked = tmp_path / "K3"
    stacked.mkdir()
    (stacked / "trials.json").write_text("{}")
    with pytest.raises(ConfigError, match="trials.json"):
        preflight.check_command([*TINY, f"hydra.run.dir={stacked}"])
    only_trial = tmp_path / "K3b"  # its trials.json and checkpoints removed, one trial's folder left
    (only_trial / "seed_1").mkdir(parents=True)
    shutil.copy(finished / "summary.json", only_trial / "seed_1" / "summary.json")
    with pytest.raises(ConfigError, match="seed_1"):
        preflight.check_command([*TINY, "trials=2", f"hydra.run.dir={only_trial}"])
    here = tmp_path / "here"
    here.mkdir()
    (here / "summary.json").write_text('{"test_accuracy": 0.9}\n')
    monkeypatch.chdir(here)
    with pytest.raises(ConfigError, match="summary.json"):
        preflight.check_command([*TINY, "hydra.run.dir=."])
    assert sorted(p.name for p in here.iterdir()) == ["summary.json"]


def test_a_sweep_refuses_job_folders_with_a_finished_jobs_results(finished, tmp_path):
    sweep = tmp_path / "SW1"
    (sweep / "0").mkdir(parents=True)
    for name in ("summary.json", "metrics.csv"):  # job 0 finished, its checkpoints removed
        shutil.copy(finished / name, sweep / "0" / name)
    command = ["-m", *TINY, "seed=0,1", f"hydra.sweep.dir={sweep}"]
    with pytest.raises(ConfigError, match=r"sweep job 0 \(seed=0\).*already holds another run's results"):
        preflight.check_command(command)
    with pytest.raises(ConfigError, match="sweep job 0 .*no .*last.pt to continue from"):
        preflight.check_command([*command, "resume=true"])  # it would start again and overwrite them
    assert sorted(p.name for p in (sweep / "0").iterdir()) == ["metrics.csv", "summary.json"]
    assert not (sweep / "1").exists()


# ---------------------------------------------------------------------------------------------
# Non-finite weights: caught at their step, never saved


@pytest.mark.parametrize("clip", ["1.0", "null"])
def test_weights_that_become_non_finite_are_named_at_their_step_with_a_hint_that_fits(clip, tmp_path):
    """lr=1e300: Adam's first step makes the weights inf (its step is about lr whatever the
    gradient), while the loss, made of spike times, stays finite."""
    cfg = compose_config(
        *tiny_overrides("matching", {}, steps=20),
        "trainer.val_every_n_steps=10",
        "optimizer.lr=1e300",
        f"optimizer.grad_clip_value={clip}",
    )
    with pytest.raises(NonFiniteError) as error:
        run(cfg, tmp_path)
    message = str(error.value)
    assert "at step 1;" in message and "no checkpoint was written before" in message
    if clip == "null":
        assert "set optimizer.grad_clip_value" in message
    else:  # clipping is on by default: the hint does not ask to turn it on
        assert "set optimizer.grad_clip_value" not in message and "already clipped" in message
    assert not (tmp_path / "checkpoints").exists()


def _signal_after(monkeypatch, at_step, signum=signal.SIGTERM):
    """Send ``signum`` to this process at the end of optimizer step ``at_step``."""
    original = Trainer._train_step

    def step(self, inputs, targets):
        if self.state.step + 1 == at_step:
            os.kill(os.getpid(), signum)
        original(self, inputs, targets)

    monkeypatch.setattr(Trainer, "_train_step", step)


def test_a_stop_signal_never_saves_non_finite_weights(tmp_path, monkeypatch):
    cfg = compose_config(
        *tiny_overrides("matching", {}, steps=100), "trainer.val_every_n_steps=100", "optimizer.lr=1e300"
    )
    _signal_after(monkeypatch, 2)
    with pytest.raises(NonFiniteError, match="at step 1;"), stopping.catch_stop_signals():
        run(cfg, tmp_path)
    assert not (tmp_path / "checkpoints" / "last.pt").exists()


def test_a_stop_signal_never_saves_non_finite_adam_moments(tmp_path, monkeypatch):
    """Adam's second moment overflows to inf at step 1 (the weights stay finite: the update is
    m / sqrt(inf) = 0); the signal at step 2 saves nothing."""
    cfg = compose_config(*tiny_overrides("matching", {}, steps=100), "trainer.val_every_n_steps=100")
    original = torch.optim.Adam.step

    def step(self, *args, **kwargs):
        result = original(self, *args, **kwargs)
        first = self.param_groups[0]["params"][0]
        self.state[first]["exp_avg_sq"][0, 0] = float("inf")
        return result

    monkeypatch.setattr(torch.optim.Adam, "step", step)
    _signal_after(monkeypatch, 2)
    with (
        pytest.raises(NonFiniteError, match="exp_avg_sq of the weight layers.0.weight became inf"),
        stopping.catch_stop_signals(),
    ):
        run(cfg, tmp_path)
    assert not (tmp_path / "checkpoints" / "last.pt").exists()


def test_a_resume_names_its_checkpoint_and_refuses_non_finite_weights(tmp_path, monkeypatch):
    overrides = [*tiny_overrides("matching", {}, steps=20), "trainer.val_every_n_steps=10"]
    with monkeypatch.context() as patch, pytest.raises(Exception), stopping.catch_stop_signals():
        _signal_after(patch, 3, signal.SIGUSR2)  # last.pt at step 3, before any evaluation point
        run(compose_config(*overrides), tmp_path)
    last = tmp_path / "checkpoints" / "last.pt"
    assert ckpt.load(last)["state"]["step"] == 3
    original = torch.optim.Adam.step
    steps = {"n": 0}

    def step(self, *args, **kwargs):  # the second step after the resume (step 5) makes a NaN weight
        result = original(self, *args, **kwargs)
        steps["n"] += 1
        if steps["n"] == 2:
            with torch.no_grad():
                self.param_groups[0]["params"][0][0, 0] = float("nan")
        return result

    with monkeypatch.context() as patch:
        patch.setattr(torch.optim.Adam, "step", step)
        with pytest.raises(NonFiniteError) as error:
            run(compose_config(*overrides, "resume=true"), tmp_path)
    assert "became nan at step 5;" in str(error.value)
    assert f"the last good checkpoint is {last} (step 3)" in str(error.value)
    # a last.pt with non-finite weights (an earlier version could write one) is not continued
    payload = ckpt.load(last)
    payload["model"]["layers.0.weight"][0, 0] = float("nan")
    ckpt.save_atomic(payload, last)
    for attempt in (
        lambda: run(compose_config(*overrides, "resume=true"), tmp_path),
        lambda: preflight.check_command([*overrides, "resume=true", f"hydra.run.dir={tmp_path}"]),
    ):
        with pytest.raises(ConfigError, match="non-finite weights"):
            attempt()


# ---------------------------------------------------------------------------------------------
# evaluate= on a stacked run


@pytest.fixture(scope="module")
def stacked(tmp_path_factory):
    folder = tmp_path_factory.mktemp("stacked") / "K3"
    run(compose_config(*TINY, "trials=3", "seed=4"), folder)
    return folder


@pytest.mark.parametrize("target", ["checkpoints/last.pt", "."])
def test_evaluate_on_a_stacked_run_names_its_trial_folders(target, stacked, tmp_path):
    out = tmp_path / "eval"
    with pytest.raises(ConfigError) as error:
        preflight.check_command([f"evaluate={stacked / target}", f"hydra.run.dir={out}"])
    message = str(error.value)
    assert "trials=3" in message and "\n" not in message
    for seed in (4, 5, 6):
        assert f"{stacked.resolve()}/seed_{seed}/" in message
    assert not out.exists()
    preflight.check_command([f"evaluate={stacked / 'seed_5'}", f"hydra.run.dir={out}"])  # a trial's folder works


# ---------------------------------------------------------------------------------------------
# A resume repairs best.pt


def _best_matches_last(trial_dir, last, k=None):
    best = ckpt.load(trial_dir / "checkpoints" / "best.pt")
    saved = last["best_model"] if k is None else last["best_models"][k]
    state = last["state"] if k is None else last["states"][k]
    assert best["step"] == state["best_step"]
    assert best["model"].keys() == saved.keys()
    assert all(torch.equal(best["model"][key], saved[key]) for key in saved)


@pytest.mark.parametrize("damage", ["truncated", "missing"])
def test_a_resume_rewrites_a_truncated_or_missing_best_checkpoint(damage, tmp_path):
    overrides = [*tiny_overrides("matching", {}, steps=4)]
    run(compose_config(*overrides), tmp_path)
    best = tmp_path / "checkpoints" / "best.pt"
    if damage == "truncated":
        best.write_bytes(best.read_bytes()[:100])
    else:
        best.unlink()
    run(compose_config(*overrides, "resume=true"), tmp_path)  # finished: nothing trains
    _best_matches_last(tmp_path, ckpt.load(tmp_path / "checkpoints" / "last.pt"))


def test_a_resume_rebuilds_a_deleted_trial_folder_with_its_best_checkpoint(tmp_path):
    overrides = [*tiny_overrides("matching", {}, steps=4), "trials=2"]
    run(compose_config(*overrides), tmp_path)
    shutil.rmtree(tmp_path / "seed_1")
    run(compose_config(*overrides, "resume=true"), tmp_path)
    last = ckpt.load(tmp_path / "checkpoints" / "last.pt")
    for k in (0, 1):
        _best_matches_last(tmp_path / f"seed_{k}", last, k)
    assert (tmp_path / "seed_1" / "summary.json").is_file() and (tmp_path / "seed_1" / "metrics.csv").is_file()


# ---------------------------------------------------------------------------------------------
# A resume with a budget below the step reached


def test_a_resume_below_the_step_reached_says_the_budget_was_spent_and_trains_no_further(tmp_path, monkeypatch, caplog):
    overrides = [*tiny_overrides("matching", {}, steps=6), "trainer.val_every_n_steps=4"]
    with monkeypatch.context() as patch, pytest.raises(Exception), stopping.catch_stop_signals():
        _signal_after(patch, 5, signal.SIGUSR2)  # last.pt at step 5; one evaluation point, step 4
        run(compose_config(*overrides), tmp_path)
    rows = (tmp_path / "metrics.csv").read_text().splitlines()
    assert len(rows) == 2 and rows[1].split(",")[1] == "4"

    def no_training(self):
        raise AssertionError("trained or evaluated beyond a spent budget")

    caplog.set_level(logging.INFO)
    with monkeypatch.context() as patch:
        patch.setattr(Trainer, "fit", no_training)
        summary = run(compose_config(*overrides, "resume=true", "trainer.max_steps=2"), tmp_path)
    said = [r.getMessage() for r in caplog.records if "already spent" in r.getMessage()]
    assert len(said) == 1 and "trainer.max_steps=2" in said[0] and "step 5" in said[0], said
    assert (tmp_path / "metrics.csv").read_text().splitlines() == rows  # no evaluation at step 5
    assert summary["steps"] == 5 and summary["best_step"] == 4
    assert (tmp_path / "summary.json").is_file()
