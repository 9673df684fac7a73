"""summary.json says where its result came from, and metrics.csv's epoch column counts passes
over the training set (fractional between epoch ends)."""

from __future__ import annotations

import csv
import json
import subprocess
from datetime import datetime, timezone

import pytest
import tomllib
from helpers.runs import REPO, compose_config, run_cli, tiny_overrides

from antlr_exp.training.run import run

pytestmark = pytest.mark.slow  # end to end (see pyproject's markers)


def test_summary_records_version_commit_overrides_times_and_folder(data_roots, tmp_path):
    overrides = tiny_overrides("matching", data_roots)
    before = datetime.now(timezone.utc).replace(microsecond=0)
    result = run_cli([*overrides, "seed=3", f"hydra.run.dir={tmp_path / 'run'}"], cwd=tmp_path)
    after = datetime.now(timezone.utc)
    assert result.returncode == 0, result.stderr
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    version = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
    head = subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True)
    status = subprocess.run(
        ["git", "-C", str(REPO), "status", "--porcelain", "--untracked-files=no"], capture_output=True, text=True
    )
    assert summary["package_version"] == version
    assert summary["git_commit"] == (head.stdout.strip() if head.returncode == 0 else None)
    assert summary["git_dirty"] == (bool(status.stdout.strip()) if head.returncode == 0 else None)
    assert summary["overrides"] == [*overrides, "seed=3"]
    started, ended = (datetime.fromisoformat(summary[k]) for k in ("started_at", "ended_at"))
    assert before <= started <= ended <= after
    assert summary["run_dir"] == str((tmp_path / "run").resolve())
    assert summary["loss_name"] == "spike_train" and "loss" not in summary


def test_commit_is_the_one_the_run_started_from(data_roots, tmp_path, monkeypatch):
    """The checkout may move on while a run trains (a commit in between): the summary names the
    code the run started with, not the code at its end."""
    from antlr_exp.training import provenance
    from antlr_exp.training.trainer import Trainer

    moved = {"yet": False}
    monkeypatch.setattr(
        provenance, "git_state", lambda *folders: ("f" * 40, True) if moved["yet"] else ("a" * 40, False)
    )
    fit = Trainer.fit

    def fit_then_commit(self):
        fit(self)
        moved["yet"] = True  # HEAD moves (and the tree is changed) after training, before the summary

    monkeypatch.setattr(Trainer, "fit", fit_then_commit)
    summary = run(compose_config(*tiny_overrides("matching", data_roots)), tmp_path)
    assert moved["yet"]
    assert summary["git_commit"] == "a" * 40 and summary["git_dirty"] is False


def test_git_state_of_a_repository_clean_and_changed(tmp_path):
    """A hand-made repository: its HEAD, clean; changed after a tracked file is edited (an
    untracked file alone does not count); nothing outside git."""
    from antlr_exp.training.provenance import git_state

    def git(*args):
        return subprocess.run(["git", "-C", str(tmp_path / "repo"), *args], capture_output=True, text=True, check=True)

    (tmp_path / "repo").mkdir()
    git("init", "-q")
    (tmp_path / "repo" / "a.txt").write_text("one\n")
    git("add", "a.txt")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "one")
    head = git("rev-parse", "HEAD").stdout.strip()
    assert git_state(tmp_path / "repo") == (head, False)
    (tmp_path / "repo" / "new.txt").write_text("untracked\n")
    assert git_state(tmp_path / "repo") == (head, False)
    (tmp_path / "repo" / "a.txt").write_text("two\n")
    assert git_state(tmp_path / "repo") == (head, True)
    (tmp_path / "elsewhere").mkdir()
    assert git_state(tmp_path / "elsewhere") == (None, None)
    assert git_state(tmp_path / "elsewhere", tmp_path / "repo") == (head, True)  # the first folder in git


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
