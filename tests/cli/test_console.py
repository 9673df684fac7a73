"""Every run ends by saying what happened, and a run whose output is not a terminal logs one
line per evaluation point instead of progress bars."""

from __future__ import annotations

import csv
import json
import re
import statistics

import pytest
from helpers.runs import run_cli, tiny_overrides

pytestmark = pytest.mark.slow  # end to end (see pyproject's markers)

NUMBER = r"([-+0-9.e]+)"


def read_rows(run_dir):
    with open(run_dir / "metrics.csv") as stream:
        return list(csv.DictReader(stream))


def test_run_ends_with_its_result_and_logs_each_evaluation_point(data_roots, tmp_path):
    # progress_bar left at true: the output is a pipe, so the bar must give way to log lines
    overrides = [o for o in tiny_overrides("mnist", data_roots, steps=4) if not o.startswith("trainer.progress_bar")]
    result = run_cli([*overrides, "trainer.val_every_n_steps=2", f"hydra.run.dir={tmp_path / 'run'}"], cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    output = result.stdout + result.stderr
    assert "\r" not in output
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    rows = read_rows(tmp_path / "run")
    lines = re.findall(rf"step (\d+)/4 \(epoch {NUMBER}\): .*val_loss {NUMBER}, .*val_accuracy {NUMBER}", output)
    assert [int(step) for step, *_ in lines] == [int(row["step"]) for row in rows] == [2, 4]
    for (_, epoch, val_loss, val_accuracy), row in zip(lines, rows):
        assert float(epoch) == pytest.approx(float(row["epoch"]))
        assert float(val_loss) == pytest.approx(float(row["val_loss"]), rel=1e-3)
        assert float(val_accuracy) == pytest.approx(float(row["val_accuracy"]), rel=1e-3)
    accuracy = re.search(rf"test accuracy {NUMBER},\s+test loss {NUMBER}", output)
    assert accuracy, output
    assert float(accuracy[1]) == pytest.approx(summary["test_accuracy"], rel=1e-3)
    assert float(accuracy[2]) == pytest.approx(summary["test_loss"], rel=1e-3)
    spikes = re.search(rf"spikes per test sample: hidden {NUMBER}, output {NUMBER}", output)
    assert float(spikes[1]) == pytest.approx(summary["test_hidden_spikes_per_sample"], rel=1e-3)
    assert float(spikes[2]) == pytest.approx(summary["test_output_spikes_per_sample"], rel=1e-3)
    assert f"best step {summary['best_step']} " in output
    assert f"summary: {(tmp_path / 'run' / 'summary.json').resolve()}" in output

    evaluated = run_cli(
        [
            f"evaluate={tmp_path / 'run'}",
            f"data.root={data_roots['mnist']}",
            "data.limit_test=8",
            f"hydra.run.dir={tmp_path / 'eval'}",
        ],
        cwd=tmp_path,
    )
    assert evaluated.returncode == 0, evaluated.stderr
    summary = json.loads((tmp_path / "eval" / "summary.json").read_text())
    output = evaluated.stdout + evaluated.stderr
    assert f"evaluated {(tmp_path / 'run' / 'checkpoints' / 'best.pt').resolve()}" in output
    accuracy = re.search(rf"test accuracy {NUMBER},\s+test loss {NUMBER}", output)
    assert float(accuracy[1]) == pytest.approx(summary["test_accuracy"], rel=1e-3)
    assert float(accuracy[2]) == pytest.approx(summary["test_loss"], rel=1e-3)


def test_sweep_prints_one_line_per_job_and_ends_with_the_report(tmp_path):
    sweep = tmp_path / "multirun"
    result = run_cli(
        ["-m", "seed=0,1,2", *tiny_overrides("matching", {}, steps=2), f"hydra.sweep.dir={sweep}"], cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    output = result.stdout + result.stderr
    losses = []
    for job in range(3):
        summary = json.loads((sweep / str(job) / "summary.json").read_text())
        [line] = [l for l in output.splitlines() if f"job {job} (" in l]
        assert float(re.search(rf"test_loss {NUMBER}", line)[1]) == pytest.approx(summary["test_loss"], rel=1e-3)
        assert line.endswith(str((sweep / str(job) / "summary.json").resolve()))
        losses.append(summary["test_loss"])
    # the report table comes after the last job: mean ± std of the three jobs' test loss
    table = output[output.rindex("job 2 (") :]
    header = next(l for l in table.splitlines() if l.startswith("| method.name"))
    row = next(l for l in table.splitlines() if l.startswith("| antlr"))
    cell = dict(zip([c.strip() for c in header.strip("|").split("|")], [c.strip() for c in row.strip("|").split("|")]))
    assert cell["n"] == "3"
    mean, std = (float(x) for x in cell["test_loss"].split(" ± "))
    assert mean == pytest.approx(statistics.mean(losses), rel=1e-3)
    assert std == pytest.approx(statistics.stdev(losses), rel=0.05, abs=1e-3)
