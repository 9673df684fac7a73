"""Training batches: per step, one batch per trial in its own epoch order, stacked into the
stacked network's input."""

from __future__ import annotations

import math

import torch
from torch.utils.data.dataloader import default_collate


def stack_trials(batches: list) -> tuple:
    """One batch per trial -> the stacked network's input [K, B, ...] and targets [K*B, ...]."""
    if len(batches) == 1:
        return batches[0]
    inputs = torch.stack([b[0] for b in batches])
    targets = torch.cat([b[1] for b in batches])
    return inputs, targets


class EpochBatches:
    """The training batches of a run's trials (``datas``: one TaskData per trial), ``batch_size``
    samples per trial and step."""

    def __init__(self, datas: list, batch_size: int):
        self.datas = datas
        self.batch_size = batch_size
        self.single_sample_batch = None  # see rest_of_epoch

    def rest_of_epoch(self, states: list, shuffles: list):
        """The rest of the current epoch: per step, one batch per trial in its own order, stacked.
        ``states`` (TrainState) and ``shuffles`` (torch.Generator) are the trials'; a state without
        an epoch order draws it from its generator.

        Each trial's batches are its dataset's items in its epoch order, collated as a DataLoader
        would (``default_collate``), without a DataLoader: the matching task's epoch is one step,
        and building K loaders at every step cost more than the step's arithmetic at K = 100.
        When every trial's training set is one sample, the stacked batch is the same at every
        step and is made once (each epoch still draws its order, so the generators advance as
        they always did)."""
        batch_size = self.batch_size
        orders = []
        for state, shuffle, data in zip(states, shuffles, self.datas):
            if state.epoch_order is None:
                state.epoch_order = torch.randperm(len(data.train), generator=shuffle)
            orders.append(state.epoch_order[state.batch_in_epoch * batch_size :].tolist())
        if all(len(data.train) == 1 for data in self.datas):
            if orders[0]:
                if self.single_sample_batch is None:
                    self.single_sample_batch = stack_trials([default_collate([data.train[0]]) for data in self.datas])
                yield self.single_sample_batch
            return
        steps = min(math.ceil(len(order) / batch_size) for order in orders)
        for i in range(steps):
            window = slice(i * batch_size, (i + 1) * batch_size)
            yield stack_trials(
                [default_collate([data.train[j] for j in order[window]]) for data, order in zip(self.datas, orders)]
            )
