"""Run folders written by an earlier version still resume, evaluate and report.

``tests/training/fixtures/old_runs/`` holds two finished runs made by the version before the training code
moved into ``antlr_exp.training`` (``antlr-train task=matching task.num_steps=30 task.hidden_sizes=[8]
trainer.max_steps=4 trainer.val_every_n_steps=2``, and the same with ``trials=2``): their
``last.pt``/``best.pt`` payloads, metrics.csv, summaries and Hydra configs. Each test works on a
copy of them.

The oracle of a resume is today's code run uninterrupted: a run that resumes the old folder at
step 4 and trains to step 6 must end where a fresh run of 6 steps ends. The oracle of an
evaluation is the old version's own test of the same checkpoint (its summary.json).
"""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from helpers.runs import cli_env, compose_config

from antlr_exp.training import checkpoint as ckpt
from antlr_exp.training.run import run

pytestmark = pytest.mark.slow  # end to end (see pyproject's markers)

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "old_runs"
#: the old runs' command, less trainer.max_steps
OVERRIDES = [
    "task=matching",
    "task.num_steps=30",
    "task.hidden_sizes=[8]",
    "trainer.val_every_n_steps=2",
    "trainer.progress_bar=false",
]
#: metrics.csv columns that differ between two runs of the same steps
TIMING = ("time_s",)


def old_run(name: str, tmp_path: Path) -> Path:
    folder = tmp_path / name
    shutil.copytree(FIXTURES / name, folder)
    return folder


def trial_dirs(folder: Path, trials: int) -> list:
    return [folder] if trials == 1 else [folder / f"seed_{seed}" for seed in range(trials)]


def metrics(folder: Path) -> list:
    with open(folder / "metrics.csv", newline="") as handle:
        return [{key: value for key, value in row.items() if key not in TIMING} for row in csv.DictReader(handle)]


def as_numbers(row: dict) -> dict:
    return {key: float(value) if value not in ("", None) else None for key, value in row.items()}


@pytest.mark.parametrize("name, trials", [("single", 1), ("stacked", 2)])
def test_an_old_run_resumes_to_a_larger_budget_as_if_never_stopped(name, trials, tmp_path, one_thread):
    folder = old_run(name, tmp_path)
    stacked = [f"trials={trials}"] if trials > 1 else []
    before = [metrics(d) for d in trial_dirs(folder, trials)]
    assert [[int(row["step"]) for row in rows] for rows in before] == [[2, 4]] * trials

    resumed = run(compose_config(*OVERRIDES, *stacked, "trainer.max_steps=6", "resume=true"), folder)
    fresh_dir = tmp_path / "fresh"
    fresh = run(compose_config(*OVERRIDES, *stacked, "trainer.max_steps=6"), fresh_dir)

    assert resumed["steps"] == fresh["steps"] == 6
    for k, (old_rows, resumed_dir, fresh_trial) in enumerate(
        zip(before, trial_dirs(folder, trials), trial_dirs(fresh_dir, trials))
    ):
        after = metrics(resumed_dir)
        assert [int(row["step"]) for row in after] == [2, 4, 6]
        # the old rows are kept as they were; the columns measured since (the per-layer counts of
        # validation) are added, blank in the old rows
        assert [{key: row[key] for key in old_rows[0]} for row in after[:2]] == old_rows, "the old rows are kept"
        added = set(after[0]) - set(old_rows[0])
        assert "val_synops_per_sample" in added and all(row[key] == "" for row in after[:2] for key in added)
        for index, (resumed_row, fresh_row) in enumerate(zip(after, metrics(fresh_trial))):
            if index < 2:  # the old version's rows: their own columns
                fresh_row = {key: fresh_row[key] for key in old_rows[0]}
                resumed_row = {key: resumed_row[key] for key in old_rows[0]}
            assert as_numbers(resumed_row) == pytest.approx(as_numbers(fresh_row), rel=1e-6, abs=1e-9), k
        summary = json.loads((resumed_dir / "summary.json").read_text())
        expected = json.loads((fresh_trial / "summary.json").read_text())
        for key in ("steps", "best_step", "test_loss", "val_loss", "test_output_spikes_per_sample"):
            assert summary[key] == pytest.approx(expected[key], rel=1e-6), key
    last = ckpt.load(ckpt.checkpoint_dir(folder) / ckpt.LAST)["model"]
    fresh_last = ckpt.load(ckpt.checkpoint_dir(fresh_dir) / ckpt.LAST)["model"]
    for key, value in fresh_last.items():
        torch.testing.assert_close(last[key], value, rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("name, trial", [("single", None), ("stacked", 1)])
def test_an_old_best_checkpoint_evaluates_as_the_old_version_tested_it(name, trial, tmp_path, one_thread):
    folder = old_run(name, tmp_path)
    trial_dir = folder if trial is None else folder / f"seed_{trial}"
    old = json.loads((trial_dir / "summary.json").read_text())
    # the command names only the checkpoint: task, network, method and loss are the checkpoint's own
    summary = run(compose_config(f"evaluate={trial_dir / 'checkpoints' / 'best.pt'}"), tmp_path / "eval")
    for key in ("task", "method", "loss_name", "seed"):
        assert summary[key] == old[key], key
    for key in ("val_loss", "test_loss", "test_hidden_spikes_per_sample", "test_output_spikes_per_sample"):
        assert summary[key] == pytest.approx(old[key], rel=1e-6), key


def test_antlr_report_reads_the_old_runs(tmp_path):
    folders = [old_run("single", tmp_path), old_run("stacked", tmp_path)]
    losses = [
        json.loads((d / "summary.json").read_text())["test_loss"] for d in [folders[0], *trial_dirs(folders[1], 2)]
    ]
    report = Path(sys.executable).parent / "antlr-report"
    done = subprocess.run(
        [str(report), *map(str, folders), "--metrics", "test_loss", "--format", "csv"],
        env=cli_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    rows = list(csv.DictReader(done.stdout.splitlines()))
    # one group (same method and loss) of the plain run and both trials, with their mean test loss
    assert [int(row["n"]) for row in rows] == [3], done.stdout
    assert float(rows[0]["test_loss_mean"]) == pytest.approx(sum(losses) / len(losses), rel=1e-9)
