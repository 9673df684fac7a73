"""scripts/gpu_check.sh (benchmarks/gpu_check.py): the device check's dry run on a machine without
a GPU, and its exit status when a test or a run fails."""

import json
import os
import subprocess
import sys
import xml.etree.ElementTree as ET

import pytest
import torch
from helpers.runs import REPO

from benchmarks import gpu_check


@pytest.mark.slow
@pytest.mark.skipif(torch.cuda.is_available(), reason="with a GPU the script runs the whole check (minutes)")
def test_the_dry_run_runs_its_cpu_parts_and_says_what_it_skipped(tmp_path):
    env = dict(os.environ, PYTHON=sys.executable, OMP_NUM_THREADS="1")
    proc = subprocess.run(
        [str(REPO / "scripts" / "gpu_check.sh"), str(tmp_path / "out")],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "no CUDA device here: a dry run" in proc.stdout
    report = json.loads((tmp_path / "out" / "gpu_check.json").read_text())
    tests = report["tests"]
    assert tests["status"] == "skipped" and tests["tests"] == tests["skipped"] > 0  # collected, every one skipped
    matching = report["training"]["matching"]
    assert matching["status"] == "passed" and matching["steps"] == 2
    assert (tmp_path / "out" / "train" / "matching" / "summary.json").is_file()
    for task in ("mnist", "nmnist"):
        assert report["training"][task]["status"] == "skipped" and "needs CUDA" in report["training"][task]["detail"]
    rows = report["bench"]["rows"]["tiny"]
    assert report["bench"]["status"] == "passed" and rows["pytorch"]["ms_per_iter"] > 0
    assert set(rows) == set(gpu_check.BENCH_ROWS)
    page = (tmp_path / "out" / "gpu_check.md").read_text()
    assert "## Skipped" in page and "training mnist: needs CUDA" in page and "every timing" in page
    for line in report["skipped"]:
        assert f"gpu_check: skipped {line}" in proc.stdout


def _fake_part(result):
    return lambda out, cuda: result


def test_a_failed_test_or_run_makes_the_check_fail(tmp_path, monkeypatch):
    """A JUnit report with a failure marks the tests failed; any failed part exits 1 and is named."""

    def fake_pytest(command, log, timeout, env=None):
        xml = next(c.split("=", 1)[1] for c in command if c.startswith("--junitxml="))
        suite = ET.Element("testsuite", tests="3", failures="1", errors="0", skipped="0")
        root = ET.Element("testsuites")
        root.append(suite)
        ET.ElementTree(root).write(xml)
        return {"status": "passed", "exit_code": 0, "seconds": 1.0}  # even where pytest's status said nothing

    monkeypatch.setattr(gpu_check, "_run", fake_pytest)
    tests = gpu_check.run_tests(tmp_path, cuda=True)
    assert tests["status"] == "failed" and tests["failures"] == 1

    passed = {"status": "passed", "seconds": 1.0}
    monkeypatch.setattr(gpu_check, "run_tests", _fake_part(passed))
    monkeypatch.setattr(gpu_check, "run_bench", _fake_part({"status": "failed", "detail": "timed out", "rows": {}}))
    monkeypatch.setattr(gpu_check, "run_training", _fake_part({"matching": passed}))
    assert gpu_check.main([str(tmp_path / "a")]) == 1
    report = json.loads((tmp_path / "a" / "gpu_check.json").read_text())
    assert report["failed"] == ["bench"]
    monkeypatch.setattr(gpu_check, "run_bench", _fake_part({**passed, "rows": {}}))
    assert gpu_check.main([str(tmp_path / "b")]) == 0
