"""Every experiment preset composes and trains at a tiny scale, in the jobs of its own sweep.

Each preset's sweep (``hydra.sweeper.params``: the rules of a figure, the lambdas of a study) is
expanded as ``antlr-train -m`` would. Every job of a figure's sweep (one per rule), and the first
and last of a study's sweep of values, run two optimizer steps on the fake data, with two stacked
trials where the preset stacks trials. A preset that composes but cannot train (a loss its rule
refuses, a key its task lacks, a value that fails when the data is read) fails here, not hours
into a sweep.
"""

from __future__ import annotations

import itertools
import math

import pytest
from helpers.runs import compose_config, tiny_overrides
from hydra import compose, initialize_config_dir

from antlr_exp.cli.train import group_options
from antlr_exp.config import CONF_DIR
from antlr_exp.training.run import run

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_thread")]


def sweep_jobs(experiment: str) -> list:
    """The overrides of each job of the preset's own sweep (one empty job without a sweep)."""
    with initialize_config_dir(version_base="1.3", config_dir=str(CONF_DIR)):
        full = compose("config", overrides=[f"experiment={experiment}"], return_hydra_config=True)
    params = dict(full.hydra.sweeper.params or {})
    choices = [[f"{key}={value}" for value in str(values).split(",")] for key, values in params.items()]
    return [list(job) for job in itertools.product(*choices)]


@pytest.mark.parametrize("experiment", group_options("experiment"))
def test_every_experiment_preset_trains_at_a_tiny_scale(experiment, data_roots, tmp_path):
    preset = compose_config(f"experiment={experiment}")
    trials = min(preset.trials, 2)
    jobs = sweep_jobs(experiment)
    assert jobs, experiment
    if len(jobs) > 3:  # a study's sweep of values: both ends
        jobs = [jobs[0], jobs[-1]]
    for number, job in enumerate(jobs):
        tiny = [o for o in tiny_overrides(preset.task.name, data_roots) if not o.startswith("task.num_steps=")]
        overrides = [*job, *tiny, f"trials={trials}"]  # the preset's own time window (a loss may name steps in it)
        cfg = compose_config(f"experiment={experiment}", *overrides)
        summary = run(cfg, tmp_path / str(number))
        assert summary.get("trials", 1) == trials, (experiment, job)
        assert math.isfinite(summary["test_loss"]), (experiment, job)
