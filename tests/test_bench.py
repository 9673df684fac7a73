"""scripts/bench.py runs end to end and writes its JSON (a smoke test on a tiny shape, no timing claims)."""

import json
import os
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "bench.py"


def test_bench_script_writes_every_row(tmp_path):
    out = tmp_path / "bench.json"
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--shapes", "tiny", "--methods", "antlr", "reference", "snntorch",
         "--iters", "2", "--json", str(out)],
        capture_output=True, text=True, timeout=600,
    )
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
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--trials-rows", "--shapes", "tiny", "--iters", "2", "--json", str(out)],
        capture_output=True, text=True, timeout=600,
    )
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
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--trials-sweep", "1", "2", "5", "--shapes", "tiny", "--methods", "antlr", "timing",
         "--iters", "2", "--block", "2", "--json", str(out)],
        capture_output=True, text=True, timeout=600,
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
    proc = subprocess.run([sys.executable, str(SCRIPT), "--trials-sweep", "0", "4", "--shapes", "tiny"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and "--trials-sweep 0 4: every K must be >= 1" in proc.stderr
    proc = subprocess.run([sys.executable, str(SCRIPT), "--trials-sweep", "3", "3", "--shapes", "tiny"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and "at least two different K" in proc.stderr


def test_bench_spike_train_loss_rows(tmp_path):
    out = tmp_path / "loss.json"
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--spike-train-loss", "--iters", "2", "--json", str(out)],
        capture_output=True, text=True, timeout=600,
    )
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
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--compare-paths", "--shapes", "tiny", "--iters", "1", "--json", str(out)],
        capture_output=True, text=True, timeout=600, env=env,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = json.loads(out.read_text())["results"]["tiny"]
    assert rows["pytorch"]["ms_per_iter"] > 0
    assert "ms_per_iter" in rows["triton"] or "triton" in rows["triton"]["skipped"]
    assert "ms_per_iter" in rows["snntorch"] or "snntorch" in rows["snntorch"]["skipped"]
    assert "obench shape only" in rows["spikingjelly"]["skipped"]


def test_profile_step_restores_the_real_functions_after_its_variants():
    """scripts/profile_step.py patches in variants that compute wrong gradients on purpose; each
    timed row gets its own (the variants on the per-layer path, after the fused path as it is),
    and the real functions and the fused setting are back afterwards."""
    sys.path.insert(0, str(SCRIPT.parent))
    import profile_step

    from antlr_exp import layer
    from antlr_exp.network import SpikingNetwork

    names = ("_times_gradient_at_events", "cpp_kernels", "stacked_weight_t")
    before = {name: getattr(layer, name) for name in names}
    seen = []

    def step():  # records which functions each row ran with, and whether the fused node was on
        seen.append({**{name: getattr(layer, name) is before[name] for name in names},
                     "fused": SpikingNetwork.fused})

    medians = profile_step.time_variants(step, 2)
    assert list(medians) == ["fused, as is", "as is", "no_fill", "no_transposes"]
    real = dict.fromkeys(names, True)
    assert seen[0] == {**real, "fused": True}
    assert seen[1] == {**real, "fused": False}
    assert seen[2] == {"_times_gradient_at_events": False, "cpp_kernels": True, "stacked_weight_t": True,
                       "fused": False}
    assert seen[3] == {"_times_gradient_at_events": True, "cpp_kernels": False, "stacked_weight_t": False,
                       "fused": False}
    assert seen[4] == seen[0]
    assert all(getattr(layer, name) is before[name] for name in names) and SpikingNetwork.fused


def test_turns_of_several_steps_time_all_but_the_first(monkeypatch):
    """A step that is slow only right after another row's step (cold caches) is timed cold with
    ``block=1`` and warm with ``block=3``, where each turn's first step goes untimed."""
    import time

    sys.path.insert(0, str(SCRIPT.parent))
    import bench

    last = {"row": None}

    def fake_step(name):
        def step():
            time.sleep(0.03 if last["row"] != name else 0.001)
            last["row"] = name
        return step

    monkeypatch.setattr(bench, "build_step", lambda shape, method: fake_step(method))
    cold = bench.time_rows("tiny", ["a", "b"], iters=3, max_seconds=60, block=1)
    warm = bench.time_rows("tiny", ["a", "b"], iters=3, max_seconds=60, block=3)
    assert cold["a"]["iters"] == 3 and warm["a"]["iters"] == 6  # 3 turns x (3 - 1) timed steps
    assert cold["a"]["ms_per_iter"] > 25 and cold["b"]["ms_per_iter"] > 25
    assert warm["a"]["ms_per_iter"] < 15 and warm["b"]["ms_per_iter"] < 15
