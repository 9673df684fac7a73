"""Per-split running metrics: loss, accuracy under both decisions, spikes per sample.

Metric names (``<split>_`` prefixed, split in train/val/test):

- ``loss``: the reported loss (the timing rule's no-spike weight penalty is not part of it).
- ``accuracy``: under the run's decision (``loss.decision``); ``accuracy_most_spike`` and
  ``accuracy_earliest_spike`` under each. A sample on which no output fired counts as wrong.
  Only for tasks with class labels.
- ``hidden_spikes_per_sample`` / ``output_spikes_per_sample``: over the whole window.
- ``hidden_spikes_to_decision_per_sample`` / ``output_spikes_to_decision_per_sample``: up to
  the decision step (the first output spike for earliest-spike, the whole window otherwise).
"""

from __future__ import annotations

import torch

from .network import DECISIONS, NetworkOutput, decide, spike_counts

_SPIKE_KEYS = {
    "hidden_spikes": "hidden_spikes_per_sample",
    "output_spikes": "output_spikes_per_sample",
    "hidden_spikes_to_decision": "hidden_spikes_to_decision_per_sample",
    "output_spikes_to_decision": "output_spikes_to_decision_per_sample",
}


def metric_names(split: str, has_labels: bool) -> tuple:
    """The names ``SplitMeter.compute(split)`` returns, in its order."""
    names = ["loss"]
    if has_labels:
        names += ["accuracy", *(f"accuracy_{decision}" for decision in DECISIONS)]
    names += list(_SPIKE_KEYS.values())
    return tuple(f"{split}_{name}" for name in names)


class SplitMeter:
    """Sums over the samples seen since the last ``reset``; ``compute`` gives the means."""

    def __init__(self, decision: str, has_labels: bool):
        self.decision = decision
        self.has_labels = has_labels
        self.reset()

    def reset(self) -> None:
        self.samples = 0
        self.loss_sum = 0.0
        self.correct = {d: 0 for d in DECISIONS}
        self.spikes = {k: 0.0 for k in _SPIKE_KEYS}

    @torch.no_grad()
    def update(self, out: NetworkOutput, targets: torch.Tensor, loss: float) -> None:
        """Add one batch: ``loss`` is its batch mean; ``targets`` labels [B] or spike trains."""
        batch = out.output_spikes.shape[0]
        self.samples += batch
        self.loss_sum += float(loss) * batch
        if self.has_labels:
            for decision in DECISIONS:
                self.correct[decision] += int((decide(out.output_spikes, decision) == targets).sum())
        for key, values in spike_counts(out, self.decision).items():
            self.spikes[key] += float(values.sum())

    def compute(self, split: str) -> dict:
        n = max(self.samples, 1)
        metrics = {f"{split}_loss": self.loss_sum / n}
        if self.has_labels:
            metrics[f"{split}_accuracy"] = self.correct[self.decision] / n
            for decision in DECISIONS:
                metrics[f"{split}_accuracy_{decision}"] = self.correct[decision] / n
        for key, name in _SPIKE_KEYS.items():
            metrics[f"{split}_{name}"] = self.spikes[key] / n
        return metrics

    def postfix(self) -> dict:
        """Short running values for the progress bar."""
        n = max(self.samples, 1)
        values = {"loss": f"{self.loss_sum / n:.4g}"}
        if self.has_labels:
            values["acc"] = f"{self.correct[self.decision] / n:.3f}"
        values["spikes"] = f"{(self.spikes['hidden_spikes'] + self.spikes['output_spikes']) / n:.1f}"
        return values
