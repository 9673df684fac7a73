"""What ``antlr-train`` refuses before Hydra makes any folder, and how it ends: memory, later sweep
values, task options, launchers and sweepers, the kernel switch, unreadable overrides, Ctrl-C on
a parallel sweep, and the lines it prints about a preset and a run's best epoch."""

from __future__ import annotations

import csv
import os
import shlex
import signal
import subprocess
import time

import pytest
from helpers.runs import ANTLR_TRAIN, cli_env, compose_config, run_cli, tiny_overrides
from hydra.core.override_parser.overrides_parser import OverridesParser

from antlr_exp.cli import preflight
from antlr_exp.cli.console import result_block
from antlr_exp.config import validate
from antlr_exp.engine.rules import check_rule_loss
from antlr_exp.errors import ConfigError
from antlr_exp.training.run import run

pytestmark = pytest.mark.slow  # end to end (see pyproject's markers)

TINY = tiny_overrides("matching", {})


def _one_line_exit_2(result, *words):
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2, result.stderr
    assert len(lines) == 1 and lines[0].startswith("antlr-train: error: "), result.stderr
    for word in words:
        assert word in lines[0], lines[0]
    return lines[0]


# ---------------------------------------------------------------------------------------------
# Memory: arithmetic on the config, before any folder


@pytest.mark.parametrize(
    "argument, words",
    [
        ("trials=100000000", ["trials=100000000: needs about", "or fewer"]),
        ("task.hidden_sizes=[3000000000]", ["task.hidden_sizes=[3000000000]: one network needs about", "GiB is free"]),
    ],
)
def test_a_run_too_large_for_memory_is_refused_at_once_with_no_folder(argument, words, tmp_path):
    """No machine has the ~40 TB these need: one line at once (no seed list of 10**8 lookups, no
    allocator traceback), and no folder."""
    result = run_cli([argument, f"hydra.run.dir={tmp_path / 'run'}"], cwd=tmp_path, timeout=90)
    _one_line_exit_2(result, *words)
    assert not (tmp_path / "run").exists()


def test_the_memory_refusal_names_the_largest_trials_that_fit(monkeypatch, tmp_path):
    from antlr_exp.training import build as train_module

    monkeypatch.setattr(train_module, "available_memory", lambda device: 2**30)  # 1 GiB free
    # by hand, the default matching run (10-50-50-5, T=100, batch 1, float32: 4 bytes) per trial:
    # 8 recorded [T, N] tensors per layer, 3 copies of the input, 5 copies of the parameters
    activations = 8 * 100 * 1 * (50 + 50 + 5) * 4
    inputs = 3 * 100 * 1 * 10 * 4
    parameters = 5 * ((10 + 1) * 50 + (50 + 1) * 50 + (50 + 1) * 5) * 4
    largest = int(0.9 * 2**30 // (activations + inputs + parameters))
    assert largest == 2328
    with pytest.raises(ConfigError, match=rf"trials=5000: .* use trials={largest} or fewer"):
        preflight.check_command(["device=cpu", "trials=5000", f"hydra.run.dir={tmp_path / 'run'}"])
    assert not (tmp_path / "run").exists()
    preflight.check_command(["device=cpu", f"trials={largest}", f"hydra.run.dir={tmp_path / 'fits'}"])


# ---------------------------------------------------------------------------------------------
# A later sweep value of the wrong type


@pytest.mark.parametrize(
    "sweep, words",
    [
        ("optimizer.lr=0.001,abc", ["sweep job 1 (optimizer.lr=abc)", "optimizer.lr", "'abc'"]),
        ("task.hidden_sizes=[10],[x]", ["sweep job 1 (task.hidden_sizes=[x])", "task.hidden_sizes[0]", "'x'"]),
        ("trainer.max_steps=3,2.5", ["sweep job 1 (trainer.max_steps=2.5)", "trainer.max_steps", "'2.5'"]),
    ],
)
def test_a_later_sweep_value_of_the_wrong_type_is_one_line_naming_its_job(sweep, words, tmp_path):
    fixed = [a for a in TINY if not a.startswith("trainer.max_steps=")]
    result = run_cli(["-m", *fixed, sweep, f"hydra.sweep.dir={tmp_path / 'sweep'}"], cwd=tmp_path)
    _one_line_exit_2(result, *words)
    assert not (tmp_path / "sweep").exists()


# ---------------------------------------------------------------------------------------------
# Task options: checked with the config, named in full


@pytest.mark.parametrize(
    "overrides, words",
    [
        (["task.num_steps=1"], ["task.options.input_spikes=3", "task.num_steps=1", "0..1"]),
        (["task=mnist", "task.num_steps=10"], ["task.options.t_max=24", "task.num_steps=10", "1..10"]),
        (["task=mnist", "task.options.t_max=0"], ["task.options.t_max=0", "1..100"]),
        (["task=nmnist", "task.options.bin_us=0"], ["task.options.bin_us=0", ">= 1"]),
        (["task.options.target_spikes=101"], ["task.options.target_spikes=101", "0..100"]),
    ],
)
def test_task_options_are_checked_with_the_config_under_their_full_names(overrides, words):
    with pytest.raises(ConfigError) as error:
        validate(compose_config(*overrides))
    for word in words:
        assert word in str(error.value)


def test_a_bad_task_option_leaves_no_folder(tmp_path):
    result = run_cli([*TINY, "task.num_steps=1", f"hydra.run.dir={tmp_path / 'run'}"], cwd=tmp_path)
    _one_line_exit_2(result, "task.options.input_spikes=3")
    assert not (tmp_path / "run").exists()


def test_antlr_with_both_lambdas_zero_is_refused():
    with pytest.raises(ConfigError, match="lambda_act=0 and method.lambda_tim=0"):
        check_rule_loss("antlr", "spike_train", lambda_act=0.0, lambda_tim=0.0)
    with pytest.raises(ConfigError, match="lambda_act=0 and method.lambda_tim=0"):
        validate(compose_config("method=antlr", "method.lambda_act=0", "method.lambda_tim=0"))
    validate(compose_config("method=antlr", "method.lambda_act=0"))  # one of them is enough


# ---------------------------------------------------------------------------------------------
# Launchers, sweepers, the kernel switch


def test_optuna_with_no_trials_is_one_line(tmp_path):
    result = run_cli(
        [
            "hparams_search=optuna",
            *TINY,
            "optimized_metric=val_loss",
            "hydra.sweeper.direction=minimize",
            "hydra.sweeper.n_trials=0",
            f"hydra.sweep.dir={tmp_path / 'sweep'}",
        ],
        cwd=tmp_path,
    )
    _one_line_exit_2(result, "hydra.sweeper.n_trials=0", ">= 1")
    assert not (tmp_path / "sweep").exists()


def test_the_slurm_launcher_without_slurm_is_one_line_and_no_folder(tmp_path):
    empty = tmp_path / "bin"
    empty.mkdir()
    env = dict(cli_env(), PATH=str(empty))  # no srun, no sbatch
    result = subprocess.run(
        [str(ANTLR_TRAIN), "-m", "hydra/launcher=slurm", *TINY, f"hydra.sweep.dir={tmp_path / 'sweep'}"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    _one_line_exit_2(result, "hydra/launcher=slurm", "srun", "hydra/launcher=local")
    assert not (tmp_path / "sweep").exists()


def test_the_slurm_launcher_passes_where_srun_and_sbatch_exist(tmp_path, monkeypatch):
    fake = tmp_path / "bin"
    fake.mkdir()
    for command in ("srun", "sbatch"):
        (fake / command).write_text("#!/bin/sh\nexit 0\n")
        (fake / command).chmod(0o755)
    hydra_node = preflight._compose(["hydra/launcher=slurm"], "config").hydra
    monkeypatch.setenv("PATH", str(tmp_path / "nothing"))
    with pytest.raises(ConfigError, match="sbatch and srun are not on PATH"):
        preflight.check_launcher_and_sweeper(hydra_node)
    monkeypatch.setenv("PATH", str(fake))
    preflight.check_launcher_and_sweeper(hydra_node)


@pytest.mark.parametrize("mode", ["bogus", "PYTHON"])
def test_a_misspelt_kernel_switch_is_refused_before_any_folder(mode, tmp_path, monkeypatch):
    monkeypatch.setenv("ANTLR_EXP_KERNELS", mode)
    with pytest.raises(ConfigError, match=rf"ANTLR_EXP_KERNELS='{mode}': accepted are") as error:
        preflight.check_command([*TINY, f"hydra.run.dir={tmp_path / 'run'}"])
    assert all(name in str(error.value) for name in ("auto", "python", "cpp", "triton"))
    assert not (tmp_path / "run").exists()
    if mode == "bogus":  # the command itself
        env = dict(cli_env(), ANTLR_EXP_KERNELS=mode)
        result = subprocess.run(
            [str(ANTLR_TRAIN), *TINY, f"hydra.run.dir={tmp_path / 'run'}"],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=180,
        )
        _one_line_exit_2(result, "ANTLR_EXP_KERNELS='bogus'")
        assert not (tmp_path / "run").exists()


# ---------------------------------------------------------------------------------------------
# An override Hydra cannot read


@pytest.mark.parametrize("value", ["a'b", "~/x"])
def test_an_unreadable_override_is_one_line_with_quoting_that_works(value, tmp_path):
    result = run_cli([*TINY, f"hydra.run.dir={value}"], cwd=tmp_path)
    line = _one_line_exit_2(result, f"hydra.run.dir={value}", "quote")
    # the quoting it suggests is one shell word that Hydra's own parser reads back as the value
    suggested = line.split("the shell's quotes: ", 1)[1].split(" (~", 1)[0]
    [argument] = shlex.split(suggested)
    assert OverridesParser.create().parse_override(argument).value() == value
    assert not any(tmp_path.iterdir())


# ---------------------------------------------------------------------------------------------
# Ctrl-C on a parallel sweep


def test_ctrl_c_on_a_joblib_sweep_ends_with_one_line_and_status_130(tmp_path):
    sweep = tmp_path / "sweep"
    process = subprocess.Popen(
        [
            str(ANTLR_TRAIN),
            "-m",
            "hydra/launcher=local",
            "seed=0,1",
            "task.num_steps=30",
            "task.hidden_sizes=[8]",
            "trainer.max_steps=1000000",
            "trainer.val_every_n_steps=20",
            "trainer.progress_bar=false",
            f"hydra.sweep.dir={sweep}",
        ],
        cwd=tmp_path,
        env=cli_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        deadline = time.monotonic() + 240
        while not all((sweep / job / "metrics.csv").is_file() for job in ("0", "1")):  # both jobs train
            assert process.poll() is None and time.monotonic() < deadline, "the sweep did not start"
            time.sleep(0.5)
        os.killpg(process.pid, signal.SIGINT)  # what Ctrl-C in a terminal does: the whole group
        _, stderr = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    lines = stderr.strip().splitlines()
    assert process.returncode == 130, stderr
    assert "Traceback" not in stderr and "leaked" not in stderr, stderr
    assert all(line.startswith("antlr-train: interrupted") for line in lines), stderr
    assert len(lines) == 3 and "the sweep stopped" in lines[-1]  # each job's line, then the command's


# ---------------------------------------------------------------------------------------------
# What a run prints: a preset's sweep, the best epoch


def test_a_sweep_preset_without_m_says_it_runs_one_job_of_the_sweep(tmp_path, capsys):
    argv = ["experiment=fig6a_matching", "trials=1", f"hydra.run.dir={tmp_path / 'run'}"]
    preflight.check_command(argv)
    note = capsys.readouterr().err
    assert "experiment=fig6a_matching is a sweep (method=activation,timing,antlr)" in note
    assert "one job of it (method=antlr)" in note
    assert "antlr-train -m experiment=fig6a_matching trials=1" in note
    preflight.release_run_folders()
    preflight.check_command(TINY + [f"hydra.run.dir={tmp_path / 'plain'}"])  # no preset: nothing said
    assert capsys.readouterr().err == ""


def test_the_best_epoch_is_reported_as_metrics_csv_gives_it(data_roots, tmp_path):
    # 24 training images in batches of 8: 3 steps per epoch; the only evaluation is at step 2,
    # two thirds into the first epoch
    cfg = compose_config(
        *tiny_overrides("mnist", data_roots),
        "data.limit_train=24",
        "trainer.max_epochs=null",
        "trainer.max_steps=2",
        "trainer.val_every_n_steps=2",
    )
    summary = run(cfg, tmp_path)
    with open(tmp_path / "metrics.csv") as stream:
        [row] = list(csv.DictReader(stream))
    assert float(row["epoch"]) == round(2 / 3, 6) and summary["best_step"] == 2
    assert summary["best_epoch"] == float(row["epoch"])
    assert "best step 2 (epoch 0.666667)" in result_block(summary, tmp_path / "summary.json")
