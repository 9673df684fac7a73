"""Hydra's own flags and search path through the installed ``antlr-train``: a user's config folder
(``-cd``, ``-cp``/``-cn``, ``hydra.searchpath``) adds presets that compose with the package's
configs and go through the same up-front checks; shell completion and the printing flags work."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from helpers.runs import ANTLR_TRAIN, cli_env, run_cli

from antlr_exp.config import CONF_DIR

pytestmark = pytest.mark.slow  # each runs the installed command (see pyproject's markers)

#: A preset of the user's: a 3-step run of the matching task on 20 steps, seed 5.
MINE = """# @package _global_
defaults:
  - override /task: matching
seed: 5
task:
  num_steps: 20
trainer:
  max_steps: 3
  val_every_n_steps: 3
  progress_bar: false
"""
#: A primary config of the user's that builds on the package's (for -cp/-cn).
PRIMARY = """defaults:
  - config
  - _self_
seed: 7
task:
  num_steps: 20
trainer:
  max_steps: 2
  val_every_n_steps: 2
  progress_bar: false
"""


def user_folder(base: Path) -> Path:
    folder = base / "myconf"
    (folder / "experiment").mkdir(parents=True)
    (folder / "experiment" / "mine.yaml").write_text(MINE)
    (folder / "experiment" / "bad_lr.yaml").write_text("# @package _global_\noptimizer:\n  lr: -1.0\n")
    (folder / "experiment" / "no_package.yaml").write_text("defaults:\n  - override /task: matching\n")
    (folder / "myrun.yaml").write_text(PRIMARY)
    return folder


def one_line_error(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("antlr-train: error: "), result.stderr
    return lines[0]


def ran(folder: Path) -> dict:
    """The run's recorded config (flattened where needed) and summary."""
    summary = json.loads((folder / "summary.json").read_text())
    config = (folder / ".hydra" / "config.yaml").read_text()
    return {"summary": summary, "config": config}


@pytest.mark.parametrize("how", ["-cd", "--config-dir", "hydra.searchpath"])
def test_a_users_folder_adds_presets_that_compose_with_ours(tmp_path, how):
    folder = user_folder(tmp_path)
    adds = [how, "myconf"] if how.startswith("-") else [f"hydra.searchpath=[file://{folder}]"]
    result = run_cli([*adds, "experiment=mine", "method=timing", f"hydra.run.dir={tmp_path / 'run'}"], cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    done = ran(tmp_path / "run")
    # the preset's values (seed 5, 3 steps, T=20) with ours (the timing rule, its paper loss)
    assert done["summary"]["seed"] == 5 and done["summary"]["steps"] == 3
    assert done["summary"]["method"] == "timing" and done["summary"]["loss_name"] == "spike_train"
    assert "num_steps: 20" in done["config"]


@pytest.mark.parametrize("how", ["-cd", "hydra.searchpath"])
def test_a_users_presets_get_the_same_one_line_errors(tmp_path, how):
    folder = user_folder(tmp_path)
    adds = ["-cd", str(folder)] if how == "-cd" else [f"hydra.searchpath=[file://{folder}]"]
    cases = [
        (["experiment=nope"], ["experiment=nope is not accepted", "mine", "fig7a_mnist"]),
        (["experiment=mine", "optimizer.lrr=1"], ["optimizer.lrr=1", "'lrr'"]),
        (["experiment=bad_lr"], ["optimizer.lr=-1.0 is out of range"]),
        (["experiment=no_package"], ["experiment/no_package", "Could not override"]),
        (["experiment=mine", "seed=1,2", "task.num_steps=20,0"], ["sweep job 1", "task.num_steps=0"]),
    ]
    for arguments, words in cases:
        sweep = ["-m"] if "seed=1,2" in arguments else []  # argparse wants the flags before the overrides
        line = one_line_error(run_cli([*sweep, *adds, *arguments, f"hydra.run.dir={tmp_path / 'run'}"], cwd=tmp_path))
        for word in words:
            assert word in line, line
    assert not (tmp_path / "run").exists() and not (tmp_path / "multirun").exists()


def test_config_path_and_name_take_the_users_primary_config_on_top_of_ours(tmp_path):
    user_folder(tmp_path)
    # -cp relative to the working directory; the package's configs stay on the search path
    result = run_cli(["-cp", "myconf", "-cn", "myrun", f"hydra.run.dir={tmp_path / 'run'}"], cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    summary = ran(tmp_path / "run")["summary"]
    assert summary["seed"] == 7 and summary["steps"] == 2 and summary["task"] == "matching"
    # -cn with -cd, and the same checks on it
    result = run_cli(
        ["-cd", "myconf", "-cn", "myrun", "method=timing", f"hydra.run.dir={tmp_path / 'b'}"], cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    assert ran(tmp_path / "b")["summary"]["seed"] == 7
    line = one_line_error(run_cli(["--config-path=myconf", "-cn", "myrun", "method=timin"], cwd=tmp_path))
    assert "method=timin is not accepted" in line
    line = one_line_error(run_cli(["-cd", "nowhere", "experiment=mine"], cwd=tmp_path))
    assert "-cd/--config-dir nowhere" in line and str(tmp_path / "nowhere") in line
    line = one_line_error(run_cli(["-cn", "nothere"], cwd=tmp_path))
    assert "'nothere'" in line
    assert not (tmp_path / "outputs").exists()


def complete(line: str, cwd: Path) -> list:
    env = dict(cli_env(), COMP_LINE=line)
    result = subprocess.run(
        [str(ANTLR_TRAIN), "-sc", "query=bash"], cwd=cwd, env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.split()


def test_shell_completion_installs_and_lists_our_groups_and_keys(tmp_path):
    for shell in ("bash", "zsh", "fish"):
        result = run_cli(["-sc", f"install={shell}"], cwd=tmp_path)
        assert result.returncode == 0, result.stderr
        assert "antlr-train" in result.stdout and "COMP_LINE" in result.stdout
    tasks = sorted(p.stem for p in (CONF_DIR / "task").glob("*.yaml"))
    assert set(complete("antlr-train task=", tmp_path)) == {f"task={t}" for t in tasks}
    assert "optimizer.lr=" in complete("antlr-train optimizer.l", tmp_path)
    assert "method=antlr" in complete("antlr-train method=", tmp_path)
    assert not (tmp_path / "outputs").exists()


def test_shell_completion_offers_the_presets_of_the_folder_on_the_line(tmp_path):
    user_folder(tmp_path)
    assert complete("antlr-train -cd myconf experiment=mi", tmp_path) == ["experiment=mine"]
    assert complete("antlr-train --config-dir=myconf experiment=mi", tmp_path) == ["experiment=mine"]
    assert complete("antlr-train experiment=mi", tmp_path) == []  # not ours: only with the folder
    assert "experiment=fig7a_mnist" in complete("antlr-train -cd myconf experiment=fig7a", tmp_path)


def test_completion_flags_are_read_from_the_line_being_completed():
    from antlr_exp.cli.configs import with_completion_flags

    query = ["-sc", "query=bash"]
    line = "antlr-train -cd my\\ conf --config-name=run -cp other method=antlr"
    assert with_completion_flags(query, line) == [*query, "-cd", "my conf", "--config-name=run", "-cp", "other"]
    assert with_completion_flags(["-sc", "install=bash"], line) == ["-sc", "install=bash"]  # not a query
    assert with_completion_flags(["method=antlr"], line) == ["method=antlr"]  # not completing
    assert with_completion_flags(query, "antlr-train -cd 'unclosed") == query  # typed half-way: left out


def test_printing_flags_keep_working_with_a_users_folder(tmp_path):
    folder = user_folder(tmp_path)
    result = run_cli(["-cd", "myconf", "--help"], cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    [experiments] = [line for line in result.stdout.splitlines() if line.startswith("experiment:")]
    assert "mine" in experiments and "fig7a_mnist" in experiments
    result = run_cli(["--hydra-help"], cwd=tmp_path)
    assert result.returncode == 0 and "Hydra" in result.stdout
    result = run_cli(["-cd", "myconf", "experiment=mine", "--cfg", "job", "--resolve"], cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "max_steps: 3" in result.stdout and "${" not in result.stdout
    result = run_cli(["--cfg", "job"], cwd=tmp_path)  # unresolved: the interpolation itself
    assert "${env_or:ANTLR_EXP_DATA,data}/${task.name}" in result.stdout
    result = run_cli(["-cp", "myconf", "-cn", "myrun", "--info", "searchpath"], cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert f"file://{folder}" in result.stdout and f"file://{CONF_DIR}" in result.stdout
    line = one_line_error(run_cli(["--resolve"], cwd=tmp_path))
    assert "--cfg" in line
    assert os.listdir(tmp_path) == ["myconf"]
