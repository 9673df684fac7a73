"""What a user reads names no path of the machine it was written on, and the data root comes
from one place: ``$ANTLR_EXP_DATA`` (default ``data``), for antlr-train, the library and the drivers."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from helpers.runs import REPO, cli_env, compose_config

#: Internal references that must not reach a user.
FORBIDDEN = re.compile(r"\.\./shared|/work/|\bSPEC\b|the brief|reviewer", re.IGNORECASE)


#: Work-log wording: what a user reads speaks to a user anywhere, now; how the work went belongs
#: in git history and, where users care, a dated line of CHANGELOG.md.
DIARY = re.compile(
    r"\bissues? ?#?\d+|\bthe issue's|another engineer|\bthis (morning|afternoon)\b|"
    r"\b(morning|afternoon|evening) of\b|\bsessions?\b|\byesterday\b|\btoday's",
    re.IGNORECASE,
)


def docs_files() -> list:
    """README.md, docs/ and the configs: the prose and comments a user reads (not CHANGELOG.md)."""
    return [REPO / "README.md", *(REPO / "docs").rglob("*.md"), *(REPO / "conf").rglob("*.yaml")]


def user_files() -> list:
    files = [
        REPO / "README.md",
        *(REPO / "docs").rglob("*.md"),
        *(REPO / "conf").rglob("*.yaml"),
        *(REPO / "scripts").glob("*.py"),
        *(REPO / "examples").glob("*.py"),
        *(REPO / "benchmarks").rglob("*.py"),
        *(REPO / "benchmarks").rglob("*.md"),
        *(REPO / "src").rglob("*.yaml"),
    ]
    files += list((REPO / "src").rglob("*.py"))  # docstrings are read through help()
    return files


def test_no_internal_paths_in_what_users_read():
    hits = []
    for path in user_files():
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if FORBIDDEN.search(line):
                hits.append(f"{path.relative_to(REPO)}:{number}: {line.strip()}")
    assert not hits, "\n".join(hits)


@pytest.mark.parametrize(
    "phrase",
    [
        "issue 10",
        "Issue #7",
        "issues 3",
        "the issue's guide",
        "another engineer's runs",
        "this morning",
        "This afternoon",
        "Afternoon of 2026-12-03",
        "morning of",
        "a session",
        "two sessions",
        "yesterday",
        "today's tables",
    ],
)
def test_diary_wording_is_caught(phrase):
    assert DIARY.search(f"The numbers of {phrase} hold.")


@pytest.mark.parametrize(
    "text", ["an issue with the data", "sessional", "today", "measured on 2026-12-03", "morning", "an afternoon run"]
)
def test_plain_wording_is_not_diary(text):
    assert not DIARY.search(text)


def test_no_work_log_in_what_users_read():
    hits = []
    for path in docs_files():
        assert path.name != "CHANGELOG.md"
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if DIARY.search(line):
                hits.append(f"{path.relative_to(REPO)}:{number}: {line.strip()}")
    assert not hits, "\n".join(hits)


def test_help_names_no_internal_path():
    result = subprocess.run(
        [sys.executable, "-m", "antlr_exp.cli", "--help"], env=cli_env(), capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0 and "data:" in result.stdout
    assert not FORBIDDEN.search(result.stdout), result.stdout
    assert not DIARY.search(result.stdout), result.stdout
    assert "ANTLR_EXP_DATA" in result.stdout


@pytest.mark.parametrize("task", ["mnist", "nmnist"])
def test_data_root_comes_from_ANTLR_EXP_DATA(monkeypatch, tmp_path, task):
    monkeypatch.setenv("ANTLR_EXP_DATA", str(tmp_path))
    assert compose_config(f"task={task}").data.root == f"{tmp_path}/{task}"
    monkeypatch.delenv("ANTLR_EXP_DATA")
    assert compose_config(f"task={task}").data.root == f"data/{task}"
    assert compose_config(f"task={task}", "data.root=/somewhere").data.root == "/somewhere"


@pytest.mark.parametrize("task", ["mnist", "nmnist"])
def test_an_empty_ANTLR_EXP_DATA_counts_as_unset(monkeypatch, task):
    from antlr_exp.data import default_root

    monkeypatch.setenv("ANTLR_EXP_DATA", "")  # set but empty: the default, never the root folder
    assert compose_config(f"task={task}").data.root == f"data/{task}"
    assert default_root(task) == Path("data") / task


def test_drivers_read_ANTLR_EXP_DATA(monkeypatch, tmp_path):
    from antlr_exp.figures import common

    monkeypatch.setenv("ANTLR_EXP_DATA", str(tmp_path))
    assert common.parse_args("d", "x", []).data == Path(tmp_path)
    monkeypatch.delenv("ANTLR_EXP_DATA")
    assert common.parse_args("d", "x", []).data == Path("data")
