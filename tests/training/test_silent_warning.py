"""The warning that a trial's output layer fell silent: once, when the output spikes per training
sample first drop below the threshold, with the options that kept the outputs firing."""

from __future__ import annotations

import logging

import pytest

from antlr_exp.training.evaluation import SILENT_OUTPUTS, warn_if_output_fell_silent


def rows(*spikes):
    return [{"step": 10 * (i + 1), "train_output_spikes_per_sample": value} for i, value in enumerate(spikes)]


@pytest.mark.parametrize(
    "history, warned",
    [
        (rows(12.0, 0.25), True),  # falls silent now: 75 % of the samples had no output spike
        (rows(0.25), True),  # silent at the first evaluation point
        (rows(12.0, 3.0), False),  # fewer spikes, not silent (the threshold is 0.5)
        (rows(0.4, 0.25), False),  # already silent at the previous point: said once
        (rows(12.0, SILENT_OUTPUTS), False),  # at the threshold: not below it
    ],
)
def test_the_warning_comes_once_when_the_outputs_fall_below_the_threshold(history, warned, caplog):
    with caplog.at_level(logging.WARNING):
        warn_if_output_fell_silent(history, "trial seed 4")
    messages = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(messages) == int(warned)
    if warned:
        share = 100 * (1 - history[-1]["train_output_spikes_per_sample"])
        assert messages[0].startswith("trial seed 4: its output layer fired 0.25 spikes")
        assert f"up to {history[-1]['step']}" in messages[0] and f"{share:.0f} %" in messages[0]
        assert "neuron.vstar_min=0.1" in messages[0] and "loss.lambda_ns=1.0" in messages[0]
