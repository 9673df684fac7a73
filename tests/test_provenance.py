"""summary.json says where its result came from, and metrics.csv's epoch column counts passes
over the training set (fractional between epoch ends)."""

from __future__ import annotations

import csv
import json
import subprocess
import tomllib
from datetime import datetime, timezone

import pytest

from antlr_exp.train import run
from conftest import REPO, compose_config, run_cli, tiny_overrides


def test_summary_records_version_commit_overrides_times_and_folder(data_roots, tmp_path):
    overrides = tiny_overrides("matching", data_roots)
    before = datetime.now(timezone.utc).replace(microsecond=0)
    result = run_cli([*overrides, "seed=3", f"hydra.run.dir={tmp_path / 'run'}"], cwd=tmp_path)
    after = datetime.now(timezone.utc)
    assert result.returncode == 0, result.stderr
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    version = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
    head = subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True)
    assert summary["package_version"] == version
    assert summary["git_commit"] == (head.stdout.strip() if head.returncode == 0 else None)
    assert summary["overrides"] == [*overrides, "seed=3"]
    started, ended = (datetime.fromisoformat(summary[k]) for k in ("started_at", "ended_at"))
    assert before <= started <= ended <= after
    assert summary["run_dir"] == str((tmp_path / "run").resolve())
    assert summary["loss_name"] == "spike_train" and "loss" not in summary


def test_in_process_run_has_no_overrides(data_roots, tmp_path):
    summary = run(compose_config(*tiny_overrides("matching", data_roots)), tmp_path)
    assert summary["overrides"] is None and summary["run_dir"] == str(tmp_path.resolve())


def test_epoch_column_counts_passes_over_the_training_set(data_roots, tmp_path):
    # 16 training images in batches of 8: two steps per epoch, an evaluation point every step
    run(compose_config(*tiny_overrides("mnist", data_roots, steps=5), "trainer.val_every_n_steps=1"), tmp_path)
    with open(tmp_path / "metrics.csv") as stream:
        rows = list(csv.DictReader(stream))
    assert [int(r["step"]) for r in rows] == [1, 2, 3, 4, 5]
    assert [float(r["epoch"]) for r in rows] == pytest.approx([step * 8 / 16 for step in range(1, 6)])
