"""Sweeps: multirun with the basic and the joblib launcher, Optuna, SLURM config, the report."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from helpers.runs import run_cli, tiny_overrides
from hydra import compose, initialize_config_dir

from antlr_exp.config import CONF_DIR
from antlr_exp.report import aggregate, load_jobs
from antlr_exp.report import main as report_main

pytestmark = pytest.mark.slow  # end to end (see pyproject's markers)

METRICS = ("test_loss", "test_hidden_spikes_per_sample", "test_output_spikes_per_sample")


def method_sweep_args(folder: Path) -> list:
    return [
        "-m",
        "method=activation,timing,antlr",
        "seed=0,1",
        *tiny_overrides("matching", {}, steps=4),
        f"hydra.sweep.dir={folder}",
    ]


@pytest.fixture(scope="module")
def method_sweep(tmp_path_factory):
    """``antlr-train -m method=activation,timing,antlr seed=0,1`` on a tiny matching task."""
    base = tmp_path_factory.mktemp("sweep")
    result = run_cli(method_sweep_args(base / "multirun"), cwd=base)
    assert result.returncode == 0, result.stderr
    return base / "multirun"


def test_multirun_writes_one_summary_per_job(method_sweep):
    summaries = [json.loads(p.read_text()) for p in sorted(method_sweep.glob("*/summary.json"))]
    assert len(summaries) == 6
    assert sorted((s["method"], s["seed"]) for s in summaries) == sorted(
        (m, seed) for m in ("activation", "timing", "antlr") for seed in (0, 1)
    )


def test_report_gives_mean_and_std_per_method(method_sweep, capsys):
    rows = aggregate([method_sweep], metrics=list(METRICS))
    assert sorted(row["method.name"] for row in rows) == ["activation", "antlr", "timing"]
    # seed is not a setting; the seeds of a method are its trials
    assert all(
        set(row) == {"method.name", "loss.name", "n", *(f"{m}_{s}" for m in METRICS for s in ("mean", "std"))}
        for row in rows
    )
    assert all(row["loss.name"] == "spike_train" for row in rows)
    for row in rows:
        summaries = [json.loads(p.read_text()) for p in method_sweep.glob("*/summary.json")]
        values = {m: np.array([s[m] for s in summaries if s["method"] == row["method.name"]]) for m in METRICS}
        assert row["n"] == 2
        for metric, array in values.items():
            assert row[f"{metric}_mean"] == pytest.approx(array.mean())
            assert row[f"{metric}_std"] == pytest.approx(array.std(ddof=1))
    report_main([str(method_sweep), "--metrics", *METRICS, "--csv", str(method_sweep / "table.csv")])
    table = capsys.readouterr().out.splitlines()
    assert table[0].startswith("| method.name | loss.name | n | test_loss")
    assert len(table) == 5 and (method_sweep / "table.csv").is_file()


def test_report_groups_by_what_varies_besides_the_seed(tmp_path):
    # jobs that differ in method and in optimizer.lr: one row per (method, lr)
    for index, (method, lr, seed, accuracy) in enumerate(
        [("antlr", 0.1, 0, 0.5), ("antlr", 0.1, 1, 0.7), ("antlr", 0.2, 0, 0.9), ("timing", 0.1, 0, 0.3)]
    ):
        job = tmp_path / str(index)
        (job / ".hydra").mkdir(parents=True)
        (job / ".hydra" / "config.yaml").write_text(
            yaml.safe_dump(
                {"method": {"name": method}, "optimizer": {"lr": lr}, "seed": seed, "data": {"root": f"/x/{index}"}}
            )
        )
        (job / "summary.json").write_text(json.dumps({"test_accuracy": accuracy}))
    assert len(load_jobs([tmp_path])) == 4
    rows = {(r["method.name"], r["optimizer.lr"]): r for r in aggregate([tmp_path])}
    assert all(r["loss.name"] is None for r in rows.values())  # these configs name no loss
    assert set(rows) == {("antlr", 0.1), ("antlr", 0.2), ("timing", 0.1)}
    assert rows[("antlr", 0.1)]["test_accuracy_mean"] == pytest.approx(0.6)
    assert rows[("antlr", 0.1)]["test_accuracy_std"] == pytest.approx(np.std([0.5, 0.7], ddof=1))
    assert rows[("antlr", 0.2)]["n"] == 1 and rows[("antlr", 0.2)]["test_accuracy_std"] is None


def test_joblib_launcher_runs_jobs_in_parallel_processes(tmp_path):
    result = run_cli(
        [
            "-m",
            "hydra/launcher=local",
            "method=activation,antlr",
            *tiny_overrides("matching", {}),
            f"hydra.sweep.dir={tmp_path / 'multirun'}",
        ],
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert "Joblib.Parallel(n_jobs=2" in result.stdout + result.stderr
    assert len(list((tmp_path / "multirun").glob("*/summary.json"))) == 2


def test_optuna_search_over_lr_and_lambdas(data_roots, tmp_path):
    result = run_cli(
        [
            "hparams_search=optuna",
            *tiny_overrides("mnist", data_roots),
            "hydra.sweeper.n_trials=2",
            f"hydra.sweep.dir={tmp_path / 'multirun'}",
        ],
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    best = yaml.safe_load((tmp_path / "multirun" / "optimization_results.yaml").read_text())
    assert set(best["best_params"]) == {"optimizer.lr", "method.lambda_act", "method.lambda_tim"}
    summaries = [json.loads(p.read_text()) for p in (tmp_path / "multirun").glob("*/summary.json")]
    assert len(summaries) == 2 and best["best_value"] == max(s["val_accuracy"] for s in summaries)


def test_slurm_launcher_config_targets_submitit():
    with initialize_config_dir(version_base="1.3", config_dir=str(CONF_DIR)):
        cfg = compose(
            "config", overrides=["hydra/launcher=slurm", "hydra.launcher.partition=gpu"], return_hydra_config=True
        )
    launcher = cfg.hydra.launcher
    assert launcher._target_ == "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher"
    assert (launcher.partition, launcher.gpus_per_node, launcher.tasks_per_node) == ("gpu", None, 1)
    assert launcher.max_num_timeout > 0  # a job stopped by its time limit is requeued (and resumes)


def folder_digest(folder: Path) -> dict:
    """Every file under ``folder`` (its path) -> sha256 of its bytes; every folder -> None."""
    return {
        p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else None
        for p in sorted(folder.rglob("*"))
    }


@pytest.mark.parametrize("again", [[], ["resume=true", "optimizer.lr=0.002"]], ids=["new_run", "resume_changed_key"])
def test_a_finished_sweep_folder_run_again_is_refused_untouched(method_sweep, again):
    """The same sweep into a finished sweep folder: without resume it would train over the jobs'
    checkpoints; with resume=true and a changed key it would continue other runs under another
    config. Both stop before anything is written: one line naming the first job (number, its
    overrides and its folder), exit status 2, every file of the folder byte for byte as it was."""
    before = folder_digest(method_sweep)
    assert "0/checkpoints/last.pt" in before and "0/summary.json" in before
    result = run_cli([*method_sweep_args(method_sweep), *again], cwd=method_sweep.parent)
    lines = (result.stdout + result.stderr).strip().splitlines()
    assert result.returncode == 2, result.stdout + result.stderr
    assert len(lines) == 1, lines
    assert lines[0].startswith("antlr-train: error: sweep job 0 (method=activation seed=0): "), lines[0]
    assert str(method_sweep / "0") in lines[0]
    if again:
        assert "optimizer.lr" in lines[0]
    assert folder_digest(method_sweep) == before
