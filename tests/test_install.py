"""A non-editable install works: the wheel carries conf/ and the figures' scales, and antlr-train
and antlr-figure run from any folder.

The wheel is built from a copy of the source tree (so no build/ is left in the repository),
installed into a temporary target folder and run from an unrelated folder with only that
target on the path. About 10-20 s (no download: no dependencies are installed, the venv's are used).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import zipfile
from importlib import metadata
from pathlib import Path

import pytest
from helpers.runs import REPO, cli_env, tiny_overrides

pytestmark = pytest.mark.slow  # end to end (see pyproject's markers)


def _setuptools_version() -> tuple:
    try:
        return tuple(int(p) for p in metadata.version("setuptools").split(".")[:2])
    except (metadata.PackageNotFoundError, ValueError):
        return ()


def test_wheel_installs_and_runs_from_any_folder(tmp_path, data_roots):
    source = tmp_path / "source"
    source.mkdir()
    for name in ("src", "conf"):
        shutil.copytree(REPO / name, source / name, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(REPO / name, source / name)
    wheels = tmp_path / "wheels"
    # build with this environment's setuptools where it is recent enough (no network), else let pip
    # fetch the build requirements as it does for any install
    isolation = ["--no-build-isolation"] if _setuptools_version() >= (77,) else []
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", *isolation, "-q", "-w", str(wheels), str(source)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    wheel = next(wheels.glob("antlr_exp-*.whl"))
    shipped = {
        n[len("antlr_exp/conf/") :] for n in zipfile.ZipFile(wheel).namelist() if n.startswith("antlr_exp/conf/")
    }
    assert shipped == {str(p.relative_to(REPO / "conf")) for p in (REPO / "conf").rglob("*.yaml")}
    # every package of src/ ships (a folder missing from pyproject's list would be left out)
    packaged = {n.rsplit("/", 1)[0] for n in zipfile.ZipFile(wheel).namelist() if n.endswith("/__init__.py")}
    assert packaged >= {str(p.parent.relative_to(REPO / "src")) for p in (REPO / "src").rglob("__init__.py")}
    # the MIT licence text ships in the wheel's metadata, and the metadata names it
    with zipfile.ZipFile(wheel) as archive:
        licences = [n for n in archive.namelist() if n.endswith(".dist-info/licenses/LICENSE")]
        assert len(licences) == 1 and archive.read(licences[0]) == (REPO / "LICENSE").read_bytes()
        meta = archive.read(next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))).decode()
    assert "License-Expression: MIT" in meta and "License-File: LICENSE" in meta
    assert "MIT License" in (REPO / "LICENSE").read_text()
    scales = REPO / "src" / "antlr_exp" / "figures" / "scales"
    assert {n for n in zipfile.ZipFile(wheel).namelist() if n.startswith("antlr_exp/figures/scales/")} == {
        f"antlr_exp/figures/scales/{p.name}" for p in scales.glob("*.yaml")
    }
    # the C++ kernels compile from the installed package: every source and header of csrc/ is in it
    csrc = REPO / "src" / "antlr_exp" / "engine" / "backends" / "csrc"
    kernel_files = {
        f"antlr_exp/{p.relative_to(REPO / 'src' / 'antlr_exp')}" for p in csrc.iterdir() if p.suffix in (".cpp", ".h")
    }
    assert kernel_files and kernel_files <= set(zipfile.ZipFile(wheel).namelist())

    target = tmp_path / "target"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target), str(wheel)],
        check=True,
        capture_output=True,
        timeout=120,
    )
    env = dict(cli_env(), PYTHONPATH=str(target), ANTLR_EXP_KERNELS="python")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    where = subprocess.run(
        [sys.executable, "-c", "import antlr_exp.config as c; print(c.__file__); print(c.CONF_DIR)"],
        cwd=elsewhere,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    module, conf = where.stdout.split()
    assert Path(module).is_relative_to(target) and Path(conf) == target / "antlr_exp" / "conf"

    result = subprocess.run(
        [sys.executable, "-m", "antlr_exp.cli", *tiny_overrides("matching", data_roots), "hydra.run.dir=run"],
        cwd=elsewhere,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    summary = json.loads((elsewhere / "run" / "summary.json").read_text())
    assert summary["steps"] == 2 and summary["task"] == "matching"
    assert (
        summary["git_commit"] is None and summary["git_dirty"] is None
    )  # neither the package nor this folder is in git
    assert (target / "bin" / "antlr-plot").is_file() and (target / "bin" / "antlr-report").is_file()
    assert not (target / "antlr_exp" / "run").exists() and not list(elsewhere.glob("outputs"))

    # antlr-figure, installed: names every figure, and runs one (Fig. 6, panel a, tiny) from any folder
    figure = target / "bin" / "antlr-figure"
    listed = subprocess.run(
        [str(figure), "--list"], cwd=elsewhere, env=env, capture_output=True, text=True, timeout=120
    )
    assert listed.returncode == 0, listed.stderr[-2000:]
    assert [line.split()[0] for line in listed.stdout.splitlines()] == [
        "fig5",
        "fig6",
        "fig7",
        "fig8",
        "same_loss",
        "lambda_sweep",
    ]
    result = subprocess.run(
        [str(figure), "fig6", "--scale", "tiny", "--only", "a", "--out", "figs"],
        cwd=elsewhere,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert (elsewhere / "figs" / "fig6_matching.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    table = (elsewhere / "figs" / "fig6_matching.md").read_text()
    assert [line.split("|")[2].strip() for line in table.splitlines() if line.startswith("| 1 ")] == [
        "activation",
        "timing",
        "antlr",
    ]
    assert len(list((elsewhere / "multirun" / "fig6_matching_tiny_figs" / "fig6a_matching").rglob("summary.json"))) == 3
