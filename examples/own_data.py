"""Your own data for antlr-train: a function that returns a TaskData (README, "Your own data").

PYTHONPATH=examples antlr-train task=custom task.options.loader=own_data:load task.num_steps=40
"""

import torch
from torch.utils.data import TensorDataset

from antlr_exp import TaskData


def load(num_steps: int = 40, samples: int = 600) -> TaskData:
    """Two classes of 20 inputs over num_steps steps: each class's own 10 inputs fire at step 2."""
    generator = torch.Generator().manual_seed(0)

    def split(count: int) -> TensorDataset:
        labels = torch.arange(count) % 2  # int64 class indices
        inputs = (torch.rand(count, num_steps, 20, generator=generator) < 0.01).float()  # 0/1 spikes
        inputs[labels == 0, 2, :10] = inputs[labels == 1, 2, 10:] = 1
        return TensorDataset(inputs, labels)

    # val=None: antlr-train holds out 1/6 of the training samples, drawn by the trial's seed
    return TaskData(split(samples), None, split(samples // 5), (20,), num_steps, 2, "label")
