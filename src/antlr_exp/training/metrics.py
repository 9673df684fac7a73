"""Per-split running metrics: loss, accuracy under both decisions, spikes per sample.

Metric names (``<split>_`` prefixed, split in train/val/test):

- ``loss``: the reported loss (the timing rule's no-spike weight penalty is not part of it).
- ``accuracy``: under the run's decision (``loss.decision``); ``accuracy_most_spike`` and
  ``accuracy_earliest_spike`` under each. A sample on which no output fired counts as wrong.
  Only for tasks with class labels.
- ``hidden_spikes_per_sample`` / ``output_spikes_per_sample``: over the whole window.
- ``hidden_spikes_to_decision_per_sample`` / ``output_spikes_to_decision_per_sample``: up to
  the decision step (the first output spike for earliest-spike, the whole window otherwise).

Per layer, measured where the meter is given the inputs (the evaluation points: validation and
test, not the training steps), each also ``..._to_decision_...`` up to the decision step
(:mod:`antlr_exp.engine.activity` says what counts):

- ``input_spikes_per_sample``, ``hidden<i>_spikes_per_sample`` (i = 1.. from the input side;
  the output's is ``output_spikes_per_sample``): events per sample of each layer.
- ``hidden<i>_silent_fraction``, ``output_silent_fraction``: the fraction of the layer's
  neurons that fired on none of the split's samples.
- ``synops_per_sample``: synaptic operations per sample, the sum over layers of the events
  arriving from the layer below (the input included) times that layer's size.
"""

from __future__ import annotations

from typing import Optional

import torch

from ..engine.activity import layer_activity
from ..engine.spikes import DECISIONS, NetworkOutput, decide, spike_counts

_SPIKE_KEYS = {
    "hidden_spikes": "hidden_spikes_per_sample",
    "output_spikes": "output_spikes_per_sample",
    "hidden_spikes_to_decision": "hidden_spikes_to_decision_per_sample",
    "output_spikes_to_decision": "output_spikes_to_decision_per_sample",
}


def layer_names(hidden_layers: int) -> list:
    """The layers' names in the metrics: ``input``, ``hidden1`` .. ``hidden<n>``, ``output``."""
    return ["input", *(f"hidden{i}" for i in range(1, hidden_layers + 1)), "output"]


def layer_metric_names(hidden_layers: int) -> list:
    """The per-layer metrics of a network with ``hidden_layers`` hidden layers (no split prefix)."""
    names = layer_names(hidden_layers)
    spikes = [f"{layer}_spikes{window}_per_sample" for layer in names[:-1] for window in ("", "_to_decision")]
    silent = [f"{layer}_silent{window}_fraction" for layer in names[1:] for window in ("", "_to_decision")]
    return [*spikes, *silent, "synops_per_sample", "synops_to_decision_per_sample"]


def metric_names(split: str, has_labels: bool, hidden_layers: Optional[int] = None) -> tuple:
    """The names ``SplitMeter.compute(split)`` returns, in its order; with ``hidden_layers``
    (validation and test) the per-layer ones of a network with that many hidden layers too."""
    names = ["loss"]
    if has_labels:
        names += ["accuracy", *(f"accuracy_{decision}" for decision in DECISIONS)]
    names += list(_SPIKE_KEYS.values())
    if hidden_layers is not None and split != "train":
        names += layer_metric_names(hidden_layers)
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
        self.layers = None  # the per-layer sums, once a batch came with its inputs

    @torch.no_grad()
    def update(self, out: NetworkOutput, targets: torch.Tensor, loss, inputs=None) -> None:
        """Add one batch: ``loss`` is its batch mean (a float), or with trials one batch mean per
        trial ([K]); ``targets`` labels [K*B] or spike trains. With ``inputs`` (what the network
        took), the per-layer counts too."""
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
        if inputs is not None:
            self._add_layers(layer_activity(inputs, out, self.decision), batch)

    def _add_layers(self, activity, batch: int) -> None:
        """Per trial: events per layer and synaptic operations summed over the samples, and which
        neurons fired on any sample so far."""
        trials = self.trials

        def per_trial(values):  # [..., K*B] -> [..., K] sums
            return values.reshape(*values.shape[:-1], trials, batch).sum(dim=-1).cpu()

        def any_sample(masks):  # [K*B, N] each -> [K, N]
            return [mask.view(trials, batch, -1).any(dim=1).cpu() for mask in masks]

        sums = {
            "events": per_trial(activity.events).T,  # [K, L+1]
            "events_to_decision": per_trial(activity.events_to_decision).T,
            "synops": per_trial(activity.synops),
            "synops_to_decision": per_trial(activity.synops_to_decision),
        }
        fired = {"fired": any_sample(activity.fired), "fired_to_decision": any_sample(activity.fired_to_decision)}
        if self.layers is None:
            self.layers = {**sums, **fired}
            return
        for key, value in sums.items():
            self.layers[key] += value
        for key, masks in fired.items():
            self.layers[key] = [a | b for a, b in zip(self.layers[key], masks)]

    def _layer_metrics(self, split: str, k: int, n: int) -> dict:
        """Trial k's per-layer metrics (see the module's docstring)."""
        layers = self.layers
        names = layer_names(len(layers["fired"]) - 1)
        metrics = {}
        for index, layer in enumerate(names[:-1]):
            for window in ("", "_to_decision"):
                metrics[f"{split}_{layer}_spikes{window}_per_sample"] = float(layers[f"events{window}"][k][index]) / n
        for index, layer in enumerate(names[1:]):
            for window in ("", "_to_decision"):
                fired = layers[f"fired{window}"][index][k]
                metrics[f"{split}_{layer}_silent{window}_fraction"] = float((~fired).double().mean())
        for window in ("", "_to_decision"):
            metrics[f"{split}_synops{window}_per_sample"] = float(layers[f"synops{window}"][k]) / n
        return metrics

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
            if self.layers is not None:
                metrics.update(self._layer_metrics(split, k, n))
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
