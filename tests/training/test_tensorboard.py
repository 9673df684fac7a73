"""logger=tensorboard: the event files hold every metrics.csv value under split/name, and the
test metrics of summary.json."""

from __future__ import annotations

import csv
import json

import pytest
from helpers.runs import compose_config, tiny_overrides

from antlr_exp.training.loggers import metric_name
from antlr_exp.training.run import run

pytestmark = pytest.mark.slow  # end to end (see pyproject's markers)

pytest.importorskip("tensorboard", reason="logger=tensorboard needs the tensorboard package (the dev extra has it)")


def read_events(folder) -> dict:
    """tag -> [(step, value)] in the order TensorBoard shows them."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(folder), size_guidance={"scalars": 0})
    events.Reload()
    return {tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]}


def read_scalars(folder) -> dict:
    """tag -> {step: value}; no step twice."""
    scalars = {}
    for tag, events in read_events(folder).items():
        scalars[tag] = dict(events)
        assert len(scalars[tag]) == len(events), (tag, events)
    return scalars


def test_metric_names():
    assert metric_name("train_loss") == "train/loss"
    assert metric_name("val_accuracy_most_spike") == "val/accuracy_most_spike"
    assert metric_name("test_hidden_spikes_per_sample") == "test/hidden_spikes_per_sample"
    assert [metric_name(k) for k in ("epoch", "step", "lr", "time_s")] == ["epoch", "step", "lr", "time_s"]


def test_tensorboard_events_equal_metrics_csv_and_summary(data_roots, tmp_path):
    run(
        compose_config(
            *tiny_overrides("mnist", data_roots, steps=4), "trainer.val_every_n_steps=2", "logger=tensorboard"
        ),
        tmp_path,
    )
    with open(tmp_path / "metrics.csv") as stream:
        rows = list(csv.DictReader(stream))
    scalars = read_scalars(tmp_path / "tensorboard")
    assert {"train/loss", "val/loss", "train/accuracy", "val/accuracy", "lr", "epoch"} <= set(scalars)
    assert not any(tag.startswith(("train_", "val_")) for tag in scalars)
    columns = [c for c in rows[0] if c != "step"]
    for column in columns:
        tag = column.replace("_", "/", 1) if column.startswith(("train_", "val_")) else column
        assert scalars[tag] == {int(r["step"]): pytest.approx(float(r[column]), rel=1e-6) for r in rows}, column
    summary = json.loads((tmp_path / "summary.json").read_text())
    for key in ("test_accuracy", "test_loss", "test_hidden_spikes_per_sample"):
        assert scalars[key.replace("_", "/", 1)] == {4: pytest.approx(summary[key], rel=1e-6)}


def test_tensorboard_resume_purges_the_events_after_the_checkpoint(data_roots, tmp_path):
    from antlr_exp.training.loggers import RunLog

    cfg = compose_config(*tiny_overrides("mnist", data_roots), "logger=tensorboard")
    first = RunLog(cfg, tmp_path, [])
    for step in (2, 4, 6):  # a killed run logged step 6 after its last checkpoint at step 4
        first.log({"step": step, "train_loss": float(step)})
    first.finish()
    resumed = RunLog(cfg, tmp_path, [{"step": 2, "train_loss": 2.0}, {"step": 4, "train_loss": 4.0}])
    resumed.log({"step": 6, "train_loss": 60.0})
    resumed.finish()
    assert read_events(tmp_path / "tensorboard")["train/loss"] == [(2, 2.0), (4, 4.0), (6, 60.0)]
