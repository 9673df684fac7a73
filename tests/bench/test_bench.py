"""benchmarks/ (``python -m benchmarks.bench``) runs end to end and writes its JSON (a smoke test on a
tiny shape, no timing claims). The repository root is on the tests' path (pyproject.toml's
``pythonpath``), so ``benchmarks`` imports as the package it is."""

import json
import os
import subprocess
import sys

import pytest
from helpers.runs import REPO

from benchmarks import profile_step, rules

pytestmark = pytest.mark.slow  # end to end (see pyproject's markers)

BENCH = [sys.executable, "-m", "benchmarks.bench"]


def bench(*args: str, timeout: float = 600, **options) -> subprocess.CompletedProcess:
    """``python -m benchmarks.bench ARGS`` from the repository root."""
    return subprocess.run([*BENCH, *args], cwd=REPO, capture_output=True, text=True, timeout=timeout, **options)


def test_bench_script_writes_every_row(tmp_path):
    out = tmp_path / "bench.json"
    proc = bench("--shapes", "tiny", "--methods", "antlr", "reference", "snntorch", "--iters", "2", "--json", str(out))
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = json.loads(out.read_text())["results"]["tiny"]
    for method in ("antlr", "reference"):
        assert rows[method]["ms_per_iter"] > 0
        assert rows[method]["peak_rss_mb"] >= rows[method]["setup_rss_mb"] > 0
    assert "snntorch" in rows  # timed, or skipped with a message when snntorch is absent
    assert "ms_per_iter" in rows["snntorch"] or "snntorch" in rows["snntorch"]["skipped"]
    assert "antlr" in proc.stdout and "/ antlr" in proc.stdout


def test_bench_trials_rows_write_speedup_vs_single(tmp_path):
    out = tmp_path / "trials.json"
    proc = bench("--trials-rows", "--shapes", "tiny", "--iters", "2", "--json", str(out))
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = json.loads(out.read_text())["trials_rows"]["tiny"]
    assert set(rows) == {"activation", "activation_rnn", "timing", "antlr"}
    for row in rows.values():
        # the ratio is what the two timings say, per trial-iteration
        assert abs(row["speedup_vs_single"] - row["ms_single_step"] * row["trials"] / row["ms_stacked_step"]) < 1e-9
        assert row["trials"] == 4


def test_bench_trials_sweep_fits_a_line_through_its_medians(tmp_path):
    """--trials-sweep: per K the step time, per trial-iteration and speedup over K=1 as the
    timings say, and the fit is the least-squares line through the (K, step) medians (solved
    here independently, by torch.linalg.lstsq)."""
    import torch

    out = tmp_path / "sweep.json"
    proc = bench(
        "--trials-sweep",
        "1",
        "2",
        "5",
        "--shapes",
        "tiny",
        "--methods",
        "antlr",
        "timing",
        "--iters",
        "2",
        "--block",
        "2",
        "--json",
        str(out),
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = json.loads(out.read_text())["trials_sweep"]["tiny"]
    assert set(rows) == {"antlr", "timing"}
    for row in rows.values():
        steps = row["steps"]
        assert set(steps) == {"1", "2", "5"}
        single = steps["1"]["ms_step"]
        for k, r in steps.items():
            assert r["ms_step"] > 0
            assert abs(r["ms_per_trial_iteration"] - r["ms_step"] / int(k)) < 1e-12
            assert abs(r["speedup_vs_single"] - single * int(k) / r["ms_step"]) < 1e-9
        design = torch.tensor([[1.0, float(k)] for k in steps], dtype=torch.float64)
        target = torch.tensor([[r["ms_step"]] for r in steps.values()], dtype=torch.float64)
        fixed, per_trial = torch.linalg.lstsq(design, target).solution.flatten().tolist()
        assert abs(row["fit"]["fixed_ms"] - fixed) < 1e-9 * max(1.0, abs(fixed))
        assert abs(row["fit"]["per_trial_ms"] - per_trial) < 1e-9 * max(1.0, abs(per_trial))
        if per_trial > 0:
            assert abs(row["fit"]["limit_speedup"] - single / per_trial) < 1e-9 * single / per_trial
    assert "fit: step =" in proc.stdout


def test_bench_trials_sweep_rejects_bad_k():
    proc = bench("--trials-sweep", "0", "4", "--shapes", "tiny", timeout=300)
    assert proc.returncode == 2 and "--trials-sweep 0 4: every K must be >= 1" in proc.stderr
    proc = bench("--trials-sweep", "3", "3", "--shapes", "tiny", timeout=300)
    assert proc.returncode == 2 and "at least two different K" in proc.stderr


def test_bench_spike_train_loss_rows(tmp_path):
    out = tmp_path / "loss.json"
    proc = bench("--spike-train-loss", "--iters", "2", "--json", str(out))
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = json.loads(out.read_text())["results"]["spike_train_loss"]
    for part in ("loss", "train_step"):
        assert rows[part]["conv_ms"] > 0 and rows[part]["recursion_ms"] > 0
        assert rows[part]["speedup"] == rows[part]["conv_ms"] / rows[part]["recursion_ms"]
    assert "speedup" in proc.stdout


def test_bench_compare_paths_rows(tmp_path):
    """The --compare-paths rows (what --device cuda runs) on CPU, the triton row in Triton's interpreter."""
    out = tmp_path / "paths.json"
    env = dict(os.environ, TRITON_INTERPRET="1")
    proc = bench("--compare-paths", "--shapes", "tiny", "--iters", "1", "--json", str(out), env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = json.loads(out.read_text())["results"]["tiny"]
    assert rows["pytorch"]["ms_per_iter"] > 0
    assert "ms_per_iter" in rows["triton"] or "triton" in rows["triton"]["skipped"]
    assert "ms_per_iter" in rows["triton_per_layer"] or "triton" in rows["triton_per_layer"]["skipped"]
    assert "ms_per_iter" in rows["snntorch"] or "snntorch" in rows["snntorch"]["skipped"]
    assert "obench shape only" in rows["spikingjelly"]["skipped"]


def test_profile_step_restores_the_real_functions_after_its_variants():
    """benchmarks/profile_step.py patches in variants that compute wrong gradients on purpose; each
    timed row gets its own (the variants on the per-layer path, after the fused path as it is),
    and the real functions and the fused setting are back afterwards."""
    from antlr_exp.engine import layer, synapses
    from antlr_exp.engine.backends import select
    from antlr_exp.engine.network import SpikingNetwork

    targets = {
        "times_gradient_at_events": (layer, "times_gradient_at_events"),
        "stacked_weight_t": (synapses, "stacked_weight_t"),
        "ops": (select("cpu"), "ops"),
    }
    before = {name: getattr(*where) for name, where in targets.items()}
    seen = []

    def step():  # records which functions each row ran with, and whether the fused node was on
        seen.append(
            {
                **{name: getattr(*where) is before[name] for name, where in targets.items()},
                "fused": SpikingNetwork.fused,
            }
        )

    medians = profile_step.time_variants(step, 2)
    assert list(medians) == ["fused, as is", "as is", "no_fill", "no_transposes"]
    real = dict.fromkeys(targets, True)
    assert seen[0] == {**real, "fused": True}
    assert seen[1] == {**real, "fused": False}
    assert seen[2] == {"times_gradient_at_events": False, "ops": True, "stacked_weight_t": True, "fused": False}
    assert seen[3] == {"times_gradient_at_events": True, "ops": False, "stacked_weight_t": False, "fused": False}
    assert seen[4] == seen[0]
    assert all(getattr(*where) is before[name] for name, where in targets.items()) and SpikingNetwork.fused


def test_turns_of_several_steps_time_all_but_the_first(monkeypatch):
    """A step that is slow only right after another row's step (cold caches) is timed cold with
    ``block=1`` and warm with ``block=3``, where each turn's first step goes untimed."""
    import time

    last = {"row": None}

    def fake_step(name):
        def step():
            time.sleep(0.03 if last["row"] != name else 0.001)
            last["row"] = name

        return step

    monkeypatch.setattr(rules, "build_step", lambda shape, method: fake_step(method))
    cold = rules.time_rows("tiny", ["a", "b"], iters=3, max_seconds=60, block=1)
    warm = rules.time_rows("tiny", ["a", "b"], iters=3, max_seconds=60, block=3)
    assert cold["a"]["iters"] == 3 and warm["a"]["iters"] == 6  # 3 turns x (3 - 1) timed steps
    assert cold["a"]["ms_per_iter"] > 25 and cold["b"]["ms_per_iter"] > 25
    assert warm["a"]["ms_per_iter"] < 15 and warm["b"]["ms_per_iter"] < 15


@pytest.mark.parametrize("script", ["bench", "bench_epoch", "profile_step"])
def test_old_benchmark_scripts_still_run(script, tmp_path):
    """``python scripts/<name>.py --help`` (from any folder) reaches the moved benchmark's options."""
    result = subprocess.run(
        [sys.executable, str(REPO / "scripts" / f"{script}.py"), "--help"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    expected = {"bench": "--trials-sweep", "bench_epoch": "--against", "profile_step": "--shape"}[script]
    assert result.stdout.startswith("usage:") and expected in result.stdout


def test_old_bench_script_times_rows(tmp_path):
    """The old command still times: ``python scripts/bench.py`` run from another folder writes its JSON there."""
    proc = subprocess.run(
        [
            sys.executable,
            str(REPO / "scripts" / "bench.py"),
            "--shapes",
            "tiny",
            "--methods",
            "antlr",
            "--iters",
            "2",
            "--json",
            "out.json",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    row = json.loads((tmp_path / "out.json").read_text())["results"]["tiny"]["antlr"]
    assert row["ms_per_iter"] > 0 and row["peak_rss_mb"] >= row["setup_rss_mb"] > 0  # memory subprocess ran too
