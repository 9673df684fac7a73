"""Every Triton kernel compiles for sm_80 and sm_90 ahead of time, without spilling registers
(antlr_exp.engine.backends.aot; no GPU needed: Triton's compiler and the ptxas of its wheel).

The specializations come from the wrappers' own launches (aot.launches); the tests here check
that they are complete (every kernel, every value of every constexpr flag, both dtypes, counted
by hand below), that a gap is reported, and that each compiles without spills. The compiles run
in a subprocess without TRITON_INTERPRET (which conftest.py sets for the interpreter tests).
"""

import json
import os
import subprocess
import sys

import pytest

triton = pytest.importorskip("triton", reason="triton is not installed (torch's Linux wheels bring it)")

from antlr_exp.engine.backends import aot  # noqa: E402

#: distinct specializations per dtype, worked out from the kernels' flags and the wrappers' rules:
#: lif: SINGLE x STORE_I; srm: with the activation part 2 (HAS_T) x 2 (SINGLE) x 2 (WANT_H) x
#: 4 (KIND), without it SINGLE and KIND do not apply: 2 x 2; rnn: HAS_S x SINGLE; fused: with the
#: activation part 2 (HAS_T) x 2 (SINGLE) x 4 (KIND), without it 2 (HAS_T)
EXPECTED_PER_DTYPE = {
    "_lif_forward_kernel": 4,
    "_srm_adjoint_kernel": 2 * 2 * 2 * 4 + 2 * 2,
    "_rnn_adjoint_kernel": 4,
    "_fused_adjoint_kernel": 2 * 2 * 4 + 2,
}


def test_the_launches_cover_every_kernel_flag_and_dtype():
    recorded = aot.launches()
    assert aot.coverage_problems(recorded) == []
    for kernel, count in EXPECTED_PER_DTYPE.items():
        for dtype in ("float32", "float64"):
            assert sum(1 for x in recorded if x.kernel == kernel and x.dtype == dtype) == count, (kernel, dtype)
    assert set(aot.kernels()) == set(EXPECTED_PER_DTYPE)
    for launch in recorded:  # every flag at every launch, BLOCK apart
        assert {name for name, _ in launch.flags} == set(aot.constexpr_flags(aot.kernels()[launch.kernel]))


def test_a_kernel_or_a_flag_value_that_is_never_launched_is_reported(monkeypatch):
    recorded = aot.launches()
    without_single = {
        x: v for x, v in recorded.items() if not (x.kernel == "_lif_forward_kernel" and dict(x.flags)["SINGLE"])
    }
    problems = aot.coverage_problems(without_single)
    assert len(problems) == 1 and "_lif_forward_kernel: the constexpr SINGLE never takes [True]" in problems[0]

    from antlr_exp.engine.backends import triton_fused

    def _new_kernel(X, FLAG: triton.language.constexpr, BLOCK: triton.language.constexpr):
        pass

    monkeypatch.setattr(triton_fused, "_new_kernel", triton.jit(_new_kernel), raising=False)
    assert aot.coverage_problems(recorded) == ["_new_kernel: never launched by the calls of aot._calls"]


def compile_kernels(tmp_path, *options):
    """``python -m antlr_exp.engine.backends.aot --check OPTIONS`` in a process without the
    interpreter; returns the compiled specializations (its JSON)."""
    from pathlib import Path

    if not (Path(triton.__file__).parent / "backends" / "nvidia" / "bin" / "ptxas").exists():
        pytest.skip("no ptxas in triton's wheel (its NVIDIA backend) to compile with")
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["TRITON_CACHE_DIR"] = str(tmp_path / "cache")  # a fresh cache: every kernel is compiled
    out = tmp_path / "aot.json"
    command = [sys.executable, "-m", "antlr_exp.engine.backends.aot", "--check", "--json", str(out), *options]
    proc = subprocess.run(command, capture_output=True, text=True, env=env, timeout=900)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads(out.read_text())


def _check_compiled(results, expected_launches):
    assert {(r["capability"]) for r in results} == {80, 90}
    done = {
        (r["launch"]["kernel"], r["launch"]["dtype"], tuple(map(tuple, r["launch"]["flags"])), r["capability"])
        for r in results
    }
    assert done == {(x.kernel, x.dtype, x.flags, c) for x in expected_launches for c in (80, 90)}
    for r in results:
        assert r["registers"] > 0
        assert r["spill_stores"] == 0 and r["spill_loads"] == 0, r
        launch = aot.Launch(r["launch"]["kernel"], r["launch"]["dtype"], tuple(map(tuple, r["launch"]["flags"])))
        if not aot.uses_libdevice_exp(launch):  # no contraction into fma in our own arithmetic
            assert r["fused_multiply_adds"] == 0, r


def test_the_representative_subset_gives_every_flag_every_value():
    """``--subset`` (a quick check by hand): a few launches per kernel and dtype, between them every
    value of every flag that kernel and dtype are launched with."""
    recorded = aot.launches()
    chosen = aot.representative(recorded)
    assert set(chosen) <= set(recorded) and len(chosen) < len(recorded) / 3
    for kernel in EXPECTED_PER_DTYPE:
        for dtype in ("float32", "float64"):
            values = {flag for x in recorded if (x.kernel, x.dtype) == (kernel, dtype) for flag in x.flags}
            kept = {flag for x in chosen if (x.kernel, x.dtype) == (kernel, dtype) for flag in x.flags}
            assert kept == values, (kernel, dtype, values - kept)


@pytest.mark.slow  # the GPU compiler: 40-80 s on 2 cores
def test_every_specialization_compiles_for_sm80_and_sm90_without_spills(tmp_path):
    _check_compiled(compile_kernels(tmp_path, "--jobs", "2"), list(aot.launches()))
