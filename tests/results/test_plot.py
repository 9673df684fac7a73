"""antlr-plot: accuracy against spikes and the loss curves of a sweep folder."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import yaml
from helpers.runs import cli_env

pytest.importorskip("matplotlib")
from antlr_exp import plot  # noqa: E402

JOBS = {  # method -> per seed: (accuracy, hidden spikes, output spikes, train losses at steps 10, 20)
    "antlr": [(0.8, 100.0, 5.0, (2.0, 1.0)), (0.9, 120.0, 7.0, (3.0, 1.5))],
    "timing": [(0.6, 40.0, 2.0, (2.5, 2.2)), (0.7, 60.0, 4.0, (2.7, 2.0))],
}


@pytest.fixture
def sweep(tmp_path):
    number = 0
    for method, jobs in JOBS.items():
        for seed, (accuracy, hidden, output, losses) in enumerate(jobs):
            job = tmp_path / "sweep" / str(number)
            number += 1
            (job / ".hydra").mkdir(parents=True)
            (job / ".hydra" / "config.yaml").write_text(
                yaml.safe_dump({"method": {"name": method}, "loss": {"name": "count"}, "seed": seed})
            )
            (job / "summary.json").write_text(
                json.dumps(
                    {
                        "test_accuracy": accuracy,
                        "test_hidden_spikes_per_sample": hidden,
                        "test_output_spikes_per_sample": output,
                    }
                )
            )
            (job / "metrics.csv").write_text(
                "step,train_loss,val_loss\n"
                + "".join(f"{step},{loss},{loss + 1}\n" for step, loss in zip((10, 20), losses))
            )
    return tmp_path / "sweep"


def test_accuracy_against_spikes_and_loss_curves(sweep, tmp_path):
    grouped = plot.groups([sweep])
    assert list(grouped) == ["method=antlr loss=count", "method=timing loss=count"]
    figure = plot.accuracy_vs_spikes(grouped)
    axes = figure.axes[0]
    for index, jobs in enumerate(JOBS.values()):
        points, mean = axes.collections[2 * index].get_offsets(), axes.collections[2 * index + 1].get_offsets()
        expected = [(hidden + output, accuracy) for accuracy, hidden, output, _ in jobs]
        assert points.ravel().tolist() == pytest.approx([v for point in expected for v in point])
        assert mean.ravel().tolist() == pytest.approx(
            [sum(x for x, _ in expected) / 2, sum(y for _, y in expected) / 2]
        )
    figure = plot.loss_curves(grouped)
    train, val = figure.axes
    for index, jobs in enumerate(JOBS.values()):
        means = [sum(job[3][i] for job in jobs) / len(jobs) for i in range(2)]
        assert list(train.lines[index].get_xdata()) == [10, 20]
        assert list(train.lines[index].get_ydata()) == pytest.approx(means)
        assert list(val.lines[index].get_ydata()) == pytest.approx([m + 1 for m in means])

    assert plot.main([str(sweep), "--out", str(tmp_path / "png")]) == 0
    for name in ("accuracy_vs_spikes.png", "loss_curves.png"):
        data = (tmp_path / "png" / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000


def test_runs_without_metrics_draw_empty_loss_curves_without_a_warning(sweep, recwarn):
    for metrics in sweep.glob("*/metrics.csv"):
        metrics.unlink()
    figure = plot.loss_curves(plot.groups([sweep]))
    assert all(not ax.lines for ax in figure.axes) and figure.axes[0].get_legend() is None
    assert not [w for w in recwarn if issubclass(w.category, UserWarning)], [str(w.message) for w in recwarn]


def test_a_panel_without_finished_runs_draws_no_legend_and_no_warning(recwarn):
    from antlr_exp.results.plots import accuracy_vs_spikes_panels

    row = {"method.name": "antlr", "n": 2, "test_accuracy_mean": 0.9, "test_accuracy_std": 0.01}
    for metric in ("hidden", "output"):
        row[f"test_{metric}_spikes_to_decision_per_sample_mean"] = 10.0
        row[f"test_{metric}_spikes_to_decision_per_sample_std"] = 1.0
    figure = accuracy_vs_spikes_panels([("(a)", [row]), ("(b)", [])], "title")
    (a_hidden, a_output), (b_hidden, b_output) = figure.axes[:2], figure.axes[2:]
    assert a_hidden.get_legend() is not None and a_output.get_legend() is not None
    assert b_hidden.get_legend() is None and b_output.get_legend() is None
    assert not [w for w in recwarn if issubclass(w.category, UserWarning)], [str(w.message) for w in recwarn]


def test_without_matplotlib_one_line_and_exit_2(sweep):
    code = (
        "import sys; sys.modules['matplotlib'] = None; from antlr_exp.plot import main; "
        f"sys.exit(main([{str(sweep)!r}]))"
    )
    result = subprocess.run([sys.executable, "-c", code], env=cli_env(), capture_output=True, text=True)
    assert result.returncode == 2
    assert result.stderr.strip() == "antlr-plot: error: matplotlib is not installed; pip install 'antlr-exp[figures]'"


@pytest.mark.parametrize("second", ["sweep", "sweep/0", "sweep/"])
def test_a_job_reached_through_two_paths_is_drawn_once(sweep, monkeypatch, second):
    monkeypatch.chdir(sweep.parent)
    grouped = plot.groups(["sweep", second])
    assert {label: len(jobs) for label, jobs in grouped.items()} == {
        label: 2 for label in ("method=antlr loss=count", "method=timing loss=count")
    }
    figure = plot.accuracy_vs_spikes(grouped)
    labels = [text.get_text() for text in figure.axes[0].get_legend().get_texts()]
    assert labels == ["method=antlr loss=count (n=2)", "method=timing loss=count (n=2)"]


@pytest.mark.parametrize("out", ["/proc/antlr-plot-out", "{sweep}/0/summary.json/png", "{sweep}/0/summary.json"])
def test_out_to_an_unusable_place_is_one_line_and_exit_2(sweep, capsys, out):
    out = out.format(sweep=sweep)
    with pytest.raises(SystemExit) as exit_:
        plot.main([str(sweep), "--out", out])
    assert exit_.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"antlr-plot: error: --out {out} cannot be made a folder: ")
