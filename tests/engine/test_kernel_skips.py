"""A failed build of the C++ kernels must not pass unnoticed: in CI the C++-path tests fail,
elsewhere they are skipped and the run ends with a line saying so. A failed build is simulated by
setting the kernel loader's state as a failed build leaves it."""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from helpers import kernel_paths

from antlr_exp.engine.backends import cpp

pytestmark = pytest.mark.slow  # end to end (see pyproject's markers)

TESTS = Path(__file__).resolve().parents[1]  # the folder holding helpers/
FAILED_BUILD = {"tried": True, "module": None, "error": "RuntimeError: simulated build failure"}


@pytest.fixture
def failed_build(monkeypatch):
    for key, value in FAILED_BUILD.items():
        monkeypatch.setitem(cpp._build_state, key, value)
    monkeypatch.setenv("ANTLR_EXP_KERNELS", "auto")


@pytest.mark.parametrize(
    "ci, outcome",
    [
        ("true", pytest.fail.Exception),
        ("1", pytest.fail.Exception),
        ("", pytest.skip.Exception),
        ("false", pytest.skip.Exception),
    ],
)
def test_failed_build_fails_in_ci_and_skips_elsewhere(ci, outcome, failed_build, monkeypatch):
    monkeypatch.setenv("CI", ci)
    raised = None
    try:
        kernel_paths.require_cpp_kernels()
    except BaseException as error:  # skip and fail are BaseExceptions; caught here so neither ends this test
        raised = error
    assert type(raised) is outcome, raised
    assert "C++ kernels unavailable: RuntimeError: simulated build failure" in str(raised)


def run_suite_with_failed_build(tmp_path, ci):
    """A two-test suite on both kernel paths, in a subprocess whose kernel build 'failed'."""
    (tmp_path / "conftest.py").write_text(
        textwrap.dedent(f"""
        from antlr_exp.engine.backends import cpp
        cpp._build_state.update({FAILED_BUILD!r})
        from helpers.kernel_paths import pytest_terminal_summary  # noqa: F401
    """)
    )
    (tmp_path / "test_paths.py").write_text(
        textwrap.dedent("""
        from helpers.kernel_paths import kernel_path  # noqa: F401

        def test_either_path(kernel_path):
            assert kernel_path in ("python", "cpp")
    """)
    )
    env = dict(os.environ, OMP_NUM_THREADS="1", CI=ci, PYTHONPATH=os.pathsep.join([str(TESTS), *sys.path]))
    env.pop("ANTLR_EXP_KERNELS", None)
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-rs", str(tmp_path)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_suite_outside_ci_skips_the_cpp_path_and_says_so(tmp_path):
    result = run_suite_with_failed_build(tmp_path, ci="")
    assert result.returncode == 0, result.stdout
    assert "1 passed, 1 skipped" in result.stdout
    assert "1 C++-path tests SKIPPED: C++ kernels unavailable (RuntimeError: simulated build failure)" in result.stdout


def test_suite_in_ci_fails_on_the_cpp_path(tmp_path):
    result = run_suite_with_failed_build(tmp_path, ci="true")
    assert result.returncode == 1, result.stdout
    assert "1 passed, 1 error" in result.stdout  # the fixture fails the cpp half
    assert "CI must test the C++ path" in result.stdout
