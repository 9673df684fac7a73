"""What a user reads names no path of the machine it was written on, and the data root comes
from one place: ``$ANTLR_EXP_DATA`` (default ``data``), for antlr-train, the library and the drivers."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO, cli_env, compose_config

#: Internal references that must not reach a user.
FORBIDDEN = re.compile(r"\.\./shared|/work/|\bSPEC\b|the brief|reviewer", re.IGNORECASE)


def user_files() -> list:
    files = [REPO / "README.md", *(REPO / "docs").rglob("*.md"), *(REPO / "conf").rglob("*.yaml"),
             *(REPO / "scripts").glob("*.py"), *(REPO / "examples").glob("*.py"),
             *(REPO / "benchmarks").rglob("*.py"), *(REPO / "benchmarks").rglob("*.md"),
             *(REPO / "src").rglob("*.yaml")]
    files += list((REPO / "src").rglob("*.py"))  # docstrings are read through help()
    return files


def test_no_internal_paths_in_what_users_read():
    hits = []
    for path in user_files():
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if FORBIDDEN.search(line):
                hits.append(f"{path.relative_to(REPO)}:{number}: {line.strip()}")
    assert not hits, "\n".join(hits)


def test_help_names_no_internal_path():
    result = subprocess.run([sys.executable, "-m", "antlr_exp.cli", "--help"], env=cli_env(), capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0 and "data:" in result.stdout
    assert not FORBIDDEN.search(result.stdout), result.stdout
    assert "ANTLR_EXP_DATA" in result.stdout


@pytest.mark.parametrize("task", ["mnist", "nmnist"])
def test_data_root_comes_from_ANTLR_EXP_DATA(monkeypatch, tmp_path, task):
    monkeypatch.setenv("ANTLR_EXP_DATA", str(tmp_path))
    assert compose_config(f"task={task}").data.root == f"{tmp_path}/{task}"
    monkeypatch.delenv("ANTLR_EXP_DATA")
    assert compose_config(f"task={task}").data.root == f"data/{task}"
    assert compose_config(f"task={task}", "data.root=/somewhere").data.root == "/somewhere"


def test_drivers_read_ANTLR_EXP_DATA(monkeypatch, tmp_path):
    from antlr_exp.figures import common

    monkeypatch.setenv("ANTLR_EXP_DATA", str(tmp_path))
    assert common.parse_args("d", "x", []).data == Path(tmp_path)
    monkeypatch.delenv("ANTLR_EXP_DATA")
    assert common.parse_args("d", "x", []).data == Path("data")
