"""Random spike-train matching (paper sections 3.4 and 4.1): one fixed random problem per trial.

Every input neuron fires ``input_spikes`` times at distinct random steps; every output neuron has
a target spike train of ``target_spikes`` spikes at distinct random steps. The network is trained
to reproduce the target trains from the inputs, and the paper reports the training loss on that
single problem, so train, val and test are the same one-item dataset.

Where the target spikes may fall: the paper gives no window and the authors' public code
(github.com/KyungsuKim42/ANTLR) has no matching task (only MNIST and N-MNIST loaders), so this
is our choice: input and target steps are both drawn uniformly over the whole window 0..T-1.
Every neuron has a trainable bias, so even a target before the first input spike is reachable.
"""

from __future__ import annotations

import torch
from torch.utils.data import Dataset

from antlr_exp.data.common import TaskData, check_int, generator_for


def _random_spike_trains(
    num_neurons: int, spikes_per_neuron: int, num_steps: int, generator: torch.Generator
) -> torch.Tensor:
    """float32 0/1 tensor [num_steps, num_neurons] with exactly ``spikes_per_neuron`` spikes per
    neuron, at distinct steps drawn uniformly without replacement."""
    steps = torch.rand(num_neurons, num_steps, generator=generator).argsort(dim=1)
    chosen = steps[:, :spikes_per_neuron]  # [num_neurons, spikes_per_neuron]
    trains = torch.zeros(num_steps, num_neurons)
    trains.scatter_(0, chosen.T.contiguous(), 1.0)
    return trains


def make_matching_problem(
    num_inputs: int, num_outputs: int, input_spikes: int, target_spikes: int, num_steps: int, seed: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Build the random spike-train matching problem of one trial.

    Spike steps are drawn uniformly without replacement over the whole window 0..T-1 (see the
    module docstring for why). Inputs and targets come from two local generators seeded from
    ``seed`` ("matching/inputs", "matching/targets"; the global RNG is untouched), so the inputs
    of a seed do not depend on ``num_outputs`` or ``target_spikes``: the landscape study (1
    output) and the matching study (5 outputs) see the same inputs for the same seed.

    Args:
        num_inputs: number of input neurons (>= 1).
        num_outputs: number of output neurons (>= 1).
        input_spikes: spikes per input neuron, at distinct steps (0..T).
        target_spikes: spikes per target train, at distinct steps (0..T).
        num_steps: T, the number of time steps (>= 1).
        seed: the trial; any int.

    Returns:
        ``(input_spikes, target_spikes)``: float32 0/1 tensors ``[T, num_inputs]`` and
        ``[T, num_outputs]``.
    """
    num_steps = check_int("num_steps", num_steps, minimum=1)
    num_inputs = check_int("num_inputs", num_inputs, minimum=1)
    num_outputs = check_int("num_outputs", num_outputs, minimum=1)
    input_spikes = check_int("input_spikes", input_spikes, minimum=0, maximum=num_steps)
    target_spikes = check_int("target_spikes", target_spikes, minimum=0, maximum=num_steps)
    inputs = _random_spike_trains(num_inputs, input_spikes, num_steps, generator_for(seed, "matching/inputs"))
    targets = _random_spike_trains(num_outputs, target_spikes, num_steps, generator_for(seed, "matching/targets"))
    return inputs, targets


class MatchingProblem(Dataset):
    """A one-item dataset holding one matching problem.

    Item 0 is ``(inputs, target)``: float32 0/1 tensors ``[T, num_inputs]`` and
    ``[T, num_outputs]`` (fresh copies, safe to modify).
    """

    def __init__(self, inputs: torch.Tensor, targets: torch.Tensor):
        self.inputs = inputs
        self.targets = targets

    def __len__(self) -> int:
        return 1

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        if index not in (0, -1):
            raise IndexError(f"MatchingProblem has one item; index {index} is out of range")
        return self.inputs.clone(), self.targets.clone()


def load_matching(
    *,
    num_steps: int = 100,
    seed: int = 0,
    num_inputs: int = 10,
    num_outputs: int = 5,
    input_spikes: int = 3,
    target_spikes: int = 1,
) -> TaskData:
    """The matching task of trial ``seed`` as a TaskData (train, val and test: the same problem).

    Args:
        num_steps: T (steps).
        seed: the trial.
        num_inputs, num_outputs, input_spikes, target_spikes: see ``make_matching_problem``
            (use ``num_outputs=1`` for the landscape study, ``target_spikes`` 1 or 3 for Fig. 6).

    Returns:
        TaskData with ``input_shape=(num_inputs,)``, ``target_kind="spike_train"``.
    """
    inputs, targets = make_matching_problem(num_inputs, num_outputs, input_spikes, target_spikes, num_steps, seed)
    problem = MatchingProblem(inputs, targets)
    return TaskData(
        train=problem,
        val=problem,
        test=problem,
        input_shape=(inputs.shape[1],),
        num_steps=inputs.shape[0],
        num_outputs=targets.shape[1],
        target_kind="spike_train",
    )
