"""antlr-report on what sweeps leave behind: evaluate= runs, failed and missing jobs, corrupt
summaries, bookkeeping keys, misspelt keys, output formats."""

from __future__ import annotations

import csv
import io
import json
import statistics
from pathlib import Path

import pytest
import yaml
from helpers.runs import compose_config, tiny_overrides
from omegaconf import OmegaConf

from antlr_exp.report import aggregate, expected_jobs, sweep_report
from antlr_exp.report import main as report_main
from antlr_exp.training.run import run


def make_job(folder, config: dict, summary) -> None:
    (folder / ".hydra").mkdir(parents=True)
    (folder / ".hydra" / "config.yaml").write_text(yaml.safe_dump(config))
    if summary is not None:
        (folder / "summary.json").write_text(summary if isinstance(summary, str) else json.dumps(summary))


def save_hydra_config(cfg, folder) -> None:
    """What Hydra writes into a run folder: the command's composed config."""
    (folder / ".hydra").mkdir(parents=True, exist_ok=True)
    OmegaConf.save(cfg, folder / ".hydra" / "config.yaml")


def make_sweep(folder, task_overrides: list, params=None) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "multirun.yaml").write_text(
        yaml.safe_dump(
            {
                "hydra": {
                    "sweeper": {
                        "_target_": "hydra._internal.core_plugins.basic_sweeper.BasicSweeper",
                        "params": params,
                    },
                    "overrides": {"task": task_overrides},
                }
            }
        )
    )


def config(method="antlr", seed=0, cache="/a"):
    return {
        "method": {"name": method},
        "loss": {"name": "count"},
        "seed": seed,
        "task": {"name": "mnist", "options": {"cache_dir": cache}},
    }


def test_evaluate_runs_are_filed_under_the_checkpoints_settings(data_roots, tmp_path):
    trained = compose_config(*tiny_overrides("mnist", data_roots), "method=timing")
    run(trained, tmp_path / "0")
    save_hydra_config(trained, tmp_path / "0")
    # the evaluation's own command config is the default task and method (matching, antlr)
    evaluated = compose_config(f"evaluate={tmp_path / '0'}", f"data.root={data_roots['mnist']}", "data.limit_test=8")
    assert (evaluated.task.name, evaluated.method.name) == ("matching", "antlr")
    run(evaluated, tmp_path / "1")
    save_hydra_config(evaluated, tmp_path / "1")
    [row] = aggregate([tmp_path], by=["task.name", "method.name", "loss.name"])
    assert (row["task.name"], row["method.name"], row["loss.name"], row["n"]) == ("mnist", "timing", "latency", 2)


def test_failed_and_missing_jobs_are_named(tmp_path, capsys):
    sweep = tmp_path / "sweep"
    make_sweep(sweep, ["method=antlr,timing", "seed=0,1"])
    make_job(sweep / "0", config("antlr", 0), {"test_accuracy": 0.5})
    make_job(sweep / "1", config("antlr", 1), None)  # started, never wrote its summary
    make_job(sweep / "3", config("timing", 1), {"test_accuracy": 0.7})  # job 2 never started
    assert expected_jobs(sweep) == 4
    assert report_main([str(sweep)]) == 0
    err = capsys.readouterr().err
    assert f"1 failed or unfinished job(s) (no summary.json): {sweep / '1'}" in err
    assert f"1 job(s) never started: {sweep / '2'}" in err
    text = sweep_report(sweep)
    assert str(sweep / "1") in text and str(sweep / "2") in text


def test_a_finished_stacked_job_is_not_called_failed_and_an_unfinished_one_is(data_roots, tmp_path, capsys):
    sweep = tmp_path / "sweep"
    make_sweep(sweep, ["method=antlr,timing", "trials=2"])
    stacked = compose_config(*tiny_overrides("mnist", data_roots), "trials=2")
    run(stacked, sweep / "0")  # the job's summaries are seed_0/ and seed_1/, indexed by trials.json
    save_hydra_config(stacked, sweep / "0")
    make_job(sweep / "1", config("timing", 0), None)  # a stacked job stopped before any trial finished
    (sweep / "1" / "seed_0").mkdir()
    assert report_main([str(sweep)]) == 0
    captured = capsys.readouterr()
    assert f"1 failed or unfinished job(s) (no summary.json): {sweep / '1'}" in captured.err
    assert str(sweep / "0") not in captured.err
    [row] = aggregate([sweep], by=["method.name"])
    assert (row["method.name"], row["n"]) == ("antlr", 2)


def test_expected_jobs_counts_the_presets_sweeper_params(tmp_path):
    # an experiment preset's hydra.sweeper.params, one of them overridden on the command line
    make_sweep(tmp_path, ["seed=0", "trainer.max_epochs=1"], params={"method.name": "a,b,c", "seed": "range(0,16)"})
    assert expected_jobs(tmp_path) == 3
    make_sweep(tmp_path, ["trainer.max_epochs=1"], params={"method.name": "a,b,c", "seed": "range(0,16)"})
    assert expected_jobs(tmp_path) == 48


def test_a_corrupt_summary_is_skipped_with_a_warning(tmp_path, capsys):
    make_job(tmp_path / "0", config(seed=0), {"test_accuracy": 0.5})
    make_job(tmp_path / "1", config(seed=1), '{"test_accuracy": 0.')  # cut off mid-write
    make_job(tmp_path / "2", config(seed=2), {"test_accuracy": 0.9})
    assert report_main([str(tmp_path), "--format", "json"]) == 0
    out, err = capsys.readouterr()
    assert f"warning: skipped {tmp_path / '1' / 'summary.json'}" in err and len(err.strip().splitlines()) == 1
    [row] = json.loads(out)
    assert row["n"] == 2 and row["test_accuracy_mean"] == pytest.approx(0.7)


def test_loss_name_is_shown_and_bookkeeping_keys_are_not_settings(tmp_path, capsys):
    # the two jobs differ only in where their N-MNIST cache lies, and in the seed
    make_job(tmp_path / "0", config(seed=0, cache="/fast/cache"), {"test_accuracy": 0.5})
    make_job(tmp_path / "1", config(seed=1, cache="/other/cache"), {"test_accuracy": 0.6})
    [row] = aggregate([tmp_path])
    assert set(row) == {"method.name", "loss.name", "n", "test_accuracy_mean", "test_accuracy_std"}
    assert (row["loss.name"], row["n"]) == ("count", 2)
    report_main([str(tmp_path)])
    assert capsys.readouterr().out.splitlines()[0] == "| method.name | loss.name | n | test_accuracy |"


@pytest.mark.parametrize(
    "flag, key, words",
    [
        ("--by", "metod.name", ["--by metod.name", "did you mean method.name", "accepted:"]),
        (
            "--metrics",
            "test_acuracy",
            ["--metrics test_acuracy", "did you mean test_accuracy", "accepted: test_accuracy"],
        ),
    ],
)
def test_misspelt_keys_are_refused(tmp_path, capsys, flag, key, words):
    make_job(tmp_path / "0", config(), {"test_accuracy": 0.5})
    with pytest.raises(SystemExit) as exit_:
        report_main([str(tmp_path), flag, key])
    assert exit_.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("antlr-report: error: ")
    for word in words:
        assert word in err[0]


def test_formats(tmp_path, capsys):
    values = {"antlr": [0.5, 0.6, 0.8], "timing": [0.3, 0.4, 0.2]}
    for method, accuracies in values.items():
        for seed, accuracy in enumerate(accuracies):
            make_job(tmp_path / f"{method}{seed}", config(method, seed), {"test_accuracy": accuracy, "test_loss": seed})
    report_main([str(tmp_path), "--format", "csv", "--metrics", "test_accuracy"])
    rows = {r["method.name"]: r for r in csv.DictReader(io.StringIO(capsys.readouterr().out))}
    report_main([str(tmp_path), "--format", "json", "--metrics", "test_accuracy"])
    as_json = {r["method.name"]: r for r in json.loads(capsys.readouterr().out)}
    for method, accuracies in values.items():
        for table in (rows, as_json):
            assert float(table[method]["test_accuracy_mean"]) == pytest.approx(statistics.mean(accuracies))
            assert float(table[method]["test_accuracy_std"]) == pytest.approx(statistics.stdev(accuracies))
            assert int(table[method]["n"]) == 3
    report_main([str(tmp_path), "--format", "markdown", "--metrics", "test_accuracy"])
    assert capsys.readouterr().out.splitlines()[1] == "|---|---|---|---|"
    with pytest.raises(SystemExit) as exit_:
        report_main([str(tmp_path), "--format", "html"])
    assert exit_.value.code == 2


@pytest.mark.parametrize("extra", ["sweep", "sweep/0", "sweep/", "sweep/../sweep", "link"])
def test_a_job_reached_through_two_paths_counts_once(tmp_path, capsys, monkeypatch, extra):
    monkeypatch.chdir(tmp_path)
    sweep = tmp_path / "sweep"
    make_sweep(sweep, ["seed=0,1"])
    accuracies = [0.5, 0.8]
    for seed, accuracy in enumerate(accuracies):
        make_job(sweep / str(seed), config(seed=seed), {"test_accuracy": accuracy})
    make_job(sweep / "2", config(seed=2), None)  # a failed job, named once
    (tmp_path / "link").symlink_to(sweep)
    assert report_main(["sweep", extra, "--format", "json"]) == 0
    out, err = capsys.readouterr()
    [row] = json.loads(out)
    assert row["n"] == 2
    assert row["test_accuracy_mean"] == pytest.approx(statistics.mean(accuracies))
    assert row["test_accuracy_std"] == pytest.approx(statistics.stdev(accuracies))
    assert err.count("failed or unfinished") == 1 and err.count(str(Path("sweep") / "2")) == 1


def test_a_non_numeric_metric_skips_that_summary_with_a_warning(tmp_path, capsys):
    make_job(tmp_path / "0", config(seed=0), {"test_accuracy": 0.5, "test_loss": 1.0})
    make_job(tmp_path / "1", config(seed=1), {"test_accuracy": "high", "test_loss": 2.0})
    make_job(tmp_path / "2", config(seed=2), {"test_accuracy": 0.9, "test_loss": 3.0, "task": "mnist"})
    assert report_main([str(tmp_path), "--format", "json"]) == 0
    out, err = capsys.readouterr()
    assert err.strip() == (
        f"antlr-report: warning: skipped {tmp_path / '1' / 'summary.json'}: unreadable summary "
        f"(ValueError: test_accuracy='high' is not a number)"
    )
    [row] = json.loads(out)
    assert (row["n"], row["test_accuracy_mean"], row["test_loss_mean"]) == (2, pytest.approx(0.7), pytest.approx(2.0))


def test_by_keeps_the_task_and_the_loss_where_jobs_differ_in_them(tmp_path, capsys):
    def job(name, task, loss, lambda_act, summary):
        make_job(
            tmp_path / name,
            {
                "method": {"name": "antlr", "lambda_act": lambda_act},
                "loss": {"name": loss},
                "seed": 0,
                "task": {"name": task},
            },
            summary,
        )

    job("a", "mnist", "latency", 0.5, {"test_accuracy": 0.9, "test_loss": 0.3})
    job("b", "matching", "spike_train", 0.5, {"test_accuracy": None, "test_loss": 20.0})
    job("c", "mnist", "latency", 1.0, {"test_accuracy": 0.8, "test_loss": 0.5})
    rows = aggregate([tmp_path], by=["method.lambda_act"])
    table = {(r["task.name"], r["loss.name"], r["method.lambda_act"]): (r["n"], r["test_loss_mean"]) for r in rows}
    assert table == {
        ("mnist", "latency", 0.5): (1, 0.3),
        ("matching", "spike_train", 0.5): (1, 20.0),
        ("mnist", "latency", 1.0): (1, 0.5),
    }
    # jobs of one task and loss: no column added
    [row] = aggregate([tmp_path / "a"], by=["method.lambda_act"])
    assert list(row)[:2] == ["method.lambda_act", "n"]
    assert report_main([str(tmp_path), "--by", "method.lambda_act"]) == 0
    assert capsys.readouterr().out.splitlines()[0].startswith("| task.name | loss.name | method.lambda_act | n |")


@pytest.mark.parametrize(
    "target, words",
    [
        ("folder", "is a folder"),
        ("a-file/table.csv", "is not a folder"),
        ("no-such/table.csv", "is not a folder"),
    ],
)
def test_csv_to_an_unusable_place_is_one_line_and_exit_2(tmp_path, capsys, target, words):
    make_job(tmp_path / "runs" / "0", config(), {"test_accuracy": 0.5})
    (tmp_path / "folder").mkdir()
    (tmp_path / "a-file").write_text("")
    with pytest.raises(SystemExit) as exit_:
        report_main([str(tmp_path / "runs"), "--csv", str(tmp_path / target)])
    assert exit_.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"antlr-report: error: --csv {tmp_path / target} ") and words in err[0]


def test_csv_that_cannot_be_written_is_one_line_and_exit_2(tmp_path, capsys):
    make_job(tmp_path / "runs" / "0", config(), {"test_accuracy": 0.5})
    target = tmp_path / ("x" * 300)  # a file name longer than file systems allow
    with pytest.raises(SystemExit) as exit_:
        report_main([str(tmp_path / "runs"), "--csv", str(target)])
    assert exit_.value.code == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last.startswith(f"antlr-report: error: --csv {target} cannot be written: File name too long")
