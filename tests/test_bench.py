"""scripts/bench.py runs end to end and writes its JSON (a smoke test on a tiny shape, no timing claims)."""

import json
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
