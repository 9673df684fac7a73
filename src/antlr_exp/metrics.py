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

from .engine.spikes import DECISIONS, NetworkOutput, decide, spike_counts

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
    """Sums over the samples seen since the last ``reset``; ``compute`` gives the means.

    With ``trials=K > 1`` the batches hold K blocks of samples (one per stacked trial) and every
    sum is kept per trial; ``compute_trials`` gives one dict per trial. The sums live on the
    device of the batches: ``update`` never makes the host wait for the device, and
    ``compute_trials`` and ``postfix`` read them in one copy.
    """

    def __init__(self, decision: str, has_labels: bool, trials: int = 1):
        self.decision = decision
        self.has_labels = has_labels
        self.trials = trials
        self.reset()

    def reset(self) -> None:
        zeros = lambda: torch.zeros(self.trials, dtype=torch.float64)  # noqa: E731
        self.samples = 0  # per trial
        self.loss_sum = zeros()
        self.correct = {d: zeros() for d in DECISIONS}
        self.spikes = {k: zeros() for k in _SPIKE_KEYS}

    @torch.no_grad()
    def update(self, out: NetworkOutput, targets: torch.Tensor, loss) -> None:
        """Add one batch: ``loss`` is its batch mean (a float), or with trials one batch mean per
        trial ([K]); ``targets`` labels [K*B] or spike trains."""
        trials = self.trials
        batch = out.output_spikes.shape[0] // trials
        device = out.output_spikes.device
        if self.loss_sum.device != device:  # the first batch since the reset (or a resume)
            self._move(device)
        self.samples += batch
        self.loss_sum += torch.as_tensor(loss, dtype=torch.float64, device=device).detach().reshape(-1) * batch
        summary = out.output_summary()
        if self.has_labels:
            right = torch.stack([decide(out.output_spikes, decision, summary) == targets for decision in DECISIONS])
            right = right.view(len(DECISIONS), trials, batch).sum(dim=2).to(torch.float64)
            for index, decision in enumerate(DECISIONS):
                self.correct[decision] += right[index]
        counts = spike_counts(out, self.decision)
        sums = torch.stack(list(counts.values())).view(len(counts), trials, batch).to(torch.float64).sum(dim=2)
        for index, key in enumerate(counts):
            self.spikes[key] += sums[index]

    def _move(self, device) -> None:
        self.loss_sum = self.loss_sum.to(device)
        self.correct = {d: value.to(device) for d, value in self.correct.items()}
        self.spikes = {k: value.to(device) for k, value in self.spikes.items()}

    def _host_sums(self) -> tuple:
        """The sums on the host, in one copy: ``(loss [K], correct {decision: [K]}, spikes {key: [K]})``."""
        rows = torch.stack([self.loss_sum, *self.correct.values(), *self.spikes.values()]).cpu()
        correct = dict(zip(self.correct, rows[1 : 1 + len(self.correct)]))
        return rows[0], correct, dict(zip(self.spikes, rows[1 + len(self.correct) :]))

    def compute_trials(self, split: str) -> list:
        """One metrics dict per trial."""
        n = max(self.samples, 1)
        loss_sum, correct, spikes = self._host_sums()
        rows = []
        for k in range(self.trials):
            metrics = {f"{split}_loss": float(loss_sum[k]) / n}
            if self.has_labels:
                metrics[f"{split}_accuracy"] = float(correct[self.decision][k]) / n
                for decision in DECISIONS:
                    metrics[f"{split}_accuracy_{decision}"] = float(correct[decision][k]) / n
            for key, name in _SPIKE_KEYS.items():
                metrics[f"{split}_{name}"] = float(spikes[key][k]) / n
            rows.append(metrics)
        return rows

    def compute(self, split: str) -> dict:
        """The metrics of a single trial (the first one of a stacked run)."""
        return self.compute_trials(split)[0]

    def postfix(self) -> dict:
        """Short running values for the progress bar (means over the trials)."""
        n = max(self.samples, 1)
        loss_sum, correct, spikes = self._host_sums()
        values = {"loss": f"{float(loss_sum.mean()) / n:.4g}"}
        if self.has_labels:
            values["acc"] = f"{float(correct[self.decision].mean()) / n:.3f}"
        total = spikes["hidden_spikes"] + spikes["output_spikes"]
        values["spikes"] = f"{float(total.mean()) / n:.1f}"
        return values
