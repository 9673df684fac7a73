"""Random spike-train matching: spike counts, seeding, distinct trials, the TaskData contract."""

import pytest
import torch
from torch.utils.data import DataLoader

from antlr_exp.data import load_task, make_matching_problem
from antlr_exp.errors import ConfigError


@pytest.mark.parametrize("target_spikes", [1, 3])
def test_every_neuron_fires_the_requested_number_of_times(target_spikes):
    inputs, targets = make_matching_problem(10, 5, 3, target_spikes, 100, seed=7)
    assert inputs.shape == (100, 10) and targets.shape == (100, 5)
    assert inputs.dtype == torch.float32 and targets.dtype == torch.float32
    # 0/1 entries and exact counts per neuron mean the spikes sit at distinct steps.
    assert set(inputs.unique().tolist()) <= {0.0, 1.0}
    assert set(targets.unique().tolist()) <= {0.0, 1.0}
    assert inputs.sum(dim=0).tolist() == [3.0] * 10
    assert targets.sum(dim=0).tolist() == [float(target_spikes)] * 5


def test_same_seed_same_problem_and_global_rng_untouched():
    torch.manual_seed(123)
    state = torch.get_rng_state()
    first = make_matching_problem(10, 5, 3, 1, 100, seed=4)
    assert torch.equal(torch.get_rng_state(), state)
    second = make_matching_problem(10, 5, 3, 1, 100, seed=4)
    assert torch.equal(first[0], second[0]) and torch.equal(first[1], second[1])


def test_trials_are_distinct():
    problems = [make_matching_problem(10, 5, 3, 1, 100, seed=seed) for seed in range(100)]
    keys = {(inputs.numpy().tobytes(), targets.numpy().tobytes()) for inputs, targets in problems}
    assert len(keys) == 100
    assert len({inputs.numpy().tobytes() for inputs, _ in problems}) == 100
    assert len({targets.numpy().tobytes() for _, targets in problems}) == 100


def test_problem_does_not_follow_the_global_seed():
    # The generator is seeded from (seed, purpose), not with torch.manual_seed(seed)'s stream.
    torch.manual_seed(5)
    global_draw = torch.rand(10, 100).argsort(dim=1)[:, :3]
    inputs, _ = make_matching_problem(10, 5, 3, 1, 100, seed=5)
    own_draw = inputs.T.nonzero()[:, 1].view(10, 3)
    assert not torch.equal(global_draw.sort(dim=1).values, own_draw)


def test_inputs_do_not_depend_on_the_outputs():
    inputs_5, _ = make_matching_problem(10, 5, 3, 1, 100, seed=11)
    inputs_1, _ = make_matching_problem(10, 1, 3, 3, 100, seed=11)
    assert torch.equal(inputs_5, inputs_1)


def test_spike_steps_cover_the_whole_window():
    steps = torch.cat([make_matching_problem(10, 5, 3, 1, 100, seed=s)[1].nonzero()[:, 0] for s in range(200)])
    assert steps.min() < 5 and steps.max() > 94
    # Uniform over 0..99: each quarter of the window holds about a quarter of the 1,000 spikes.
    quarters = torch.bincount(steps // 25, minlength=4)
    assert (quarters > 180).all(), quarters


def test_load_task_matching_contract():
    task = load_task("matching", seed=2)
    assert task.train is task.val is task.test
    assert len(task.train) == 1
    assert task.input_shape == (10,) and task.num_steps == 100
    assert task.num_outputs == 5 and task.target_kind == "spike_train"
    inputs, targets = next(iter(DataLoader(task.train, batch_size=16)))
    assert inputs.shape == (1, 100, 10) and targets.shape == (1, 100, 5)
    expected = make_matching_problem(10, 5, 3, 1, 100, seed=2)
    assert torch.equal(inputs[0], expected[0]) and torch.equal(targets[0], expected[1])


def test_load_task_matching_options():
    task = load_task("matching", seed=0, num_steps=50, num_outputs=1, target_spikes=3, num_inputs=4, input_spikes=2)
    inputs, targets = task.train[0]
    assert task.input_shape == (4,) and task.num_outputs == 1 and task.num_steps == 50
    assert inputs.shape == (50, 4) and targets.shape == (50, 1)
    assert inputs.sum(0).tolist() == [2.0] * 4 and targets.sum().item() == 3


def test_items_are_copies():
    task = load_task("matching", seed=0)
    inputs, _ = task.train[0]
    inputs.zero_()
    assert task.train[0][0].sum() == 30


@pytest.mark.parametrize(
    "options",
    [
        {"input_spikes": 101},
        {"target_spikes": -1},
        {"num_inputs": 0},
        {"num_steps": 0},
        {"num_outputs": 2.5},
    ],
)
def test_invalid_settings_are_config_errors(options):
    arguments = {
        "num_inputs": 10,
        "num_outputs": 5,
        "input_spikes": 3,
        "target_spikes": 1,
        "num_steps": 100,
        "seed": 0,
    } | options
    with pytest.raises(ConfigError) as caught:
        make_matching_problem(**arguments)
    name, value = next(iter(options.items()))
    assert name in str(caught.value) and repr(value) in str(caught.value)
