"""antlr-exp as a library: the top-level names, and examples/train_own_tensors.py."""

from __future__ import annotations

import math
import re
import subprocess
import sys

import pytest
from helpers.runs import REPO, cli_env

import antlr_exp

pytestmark = pytest.mark.slow  # end to end (see pyproject's markers)

EXAMPLE = REPO / "examples" / "train_own_tensors.py"
PENALTY = " + no_spike_weight_penalty(net, out, p=100.0)"


@pytest.mark.parametrize(
    "name, module",
    [
        ("SpikingNetwork", "network"),
        ("NeuronParams", "neuron"),
        ("load_task", "data"),
        ("count_loss", "losses"),
        ("latency_loss", "losses"),
        ("spike_train_loss", "losses"),
        ("no_spike_weight_penalty", "losses"),
        ("no_spike_count_term", "losses"),
        ("count_targets", "losses"),
        ("decide", "network"),
        ("load_run", "training.load_run"),
    ],
)
def test_top_level_names_are_the_modules_objects(name, module):
    from importlib import import_module

    assert getattr(antlr_exp, name) is getattr(import_module(f"antlr_exp.{module}"), name)
    assert name in antlr_exp.__all__


def test_importing_the_package_alone_does_not_import_torch():
    result = subprocess.run(
        [sys.executable, "-c", "import sys, antlr_exp; print('torch' in sys.modules)"],
        env=cli_env(),
        capture_output=True,
        text=True,
        check=True,
    )
    assert result.stdout.strip() == "False"


def run_example(source: str) -> tuple:
    result = subprocess.run(
        [sys.executable, "-c", source], env=cli_env(), capture_output=True, text=True, timeout=300, cwd=REPO
    )
    assert result.returncode == 0, result.stderr
    losses = [float(x) for x in re.findall(r"loss ([0-9.]+)", result.stdout)]
    spikes = [int(x) for x in re.findall(r"output spikes (\d+)", result.stdout)]
    return losses, spikes, result.stdout


def test_example_trains_on_own_tensors_and_its_loss_falls():
    losses, spikes, output = run_example(EXAMPLE.read_text())
    assert len(losses) == 40
    # it starts from a silent output layer: the latency loss of two equally late outputs is ln 2
    assert spikes[0] == 0 and losses[0] == pytest.approx(math.log(2), abs=1e-4)
    assert losses[-1] < 0.5 * losses[0]
    assert float(re.search(r"training accuracy \(earliest spike decides\) ([0-9.]+)", output)[1]) >= 0.9


def test_without_the_no_spike_penalty_the_timing_rule_never_leaves_the_silent_start():
    source = EXAMPLE.read_text()
    assert PENALTY in source
    losses, spikes, _ = run_example(source.replace(PENALTY, ""))
    assert set(spikes) == {0} and losses == pytest.approx([math.log(2)] * 40, abs=1e-4)
