"""What a network's forward returns, and what is read from its spikes: first spike steps, the two
decision schemes and spike counts. Shapes are [B, T, N] (batch, steps, neurons); times in steps."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import torch

from ..errors import ConfigError

DECISIONS = ("most_spike", "earliest_spike")


@dataclass
class NetworkOutput:
    """Spikes and spike times of every spiking layer.

    ``spikes[l]`` and ``times[l]`` are [B, T_sim, N_l] (``times = t * S``); the last entry is the
    output layer. ``num_steps`` is the number of steps simulated (less than T after an early stop).
    With ``trials = K > 1`` the batch is K blocks of B samples (row ``k * B + b``).
    """

    spikes: list
    times: list
    num_steps: int
    trials: int = 1
    _summary: Optional[tuple] = field(default=None, repr=False, compare=False)

    def output_summary(self) -> tuple:
        """``(counts, first)`` of the output layer, int64 [B, N_out] each: spikes per neuron and
        first spike step (T_sim where it never fired). Formed once and kept, since the decisions,
        the spike counts and the metrics all read them."""
        if self._summary is None:
            self._summary = _summary(self.output_spikes)
        return self._summary

    @property
    def output_spikes(self) -> torch.Tensor:
        return self.spikes[-1]

    @property
    def output_times(self) -> torch.Tensor:
        return self.times[-1]

    @property
    def hidden_spikes(self) -> list:
        return self.spikes[:-1]


def first_spike_times(spikes: torch.Tensor) -> torch.Tensor:
    """First spike step of every neuron, [B, N] from [B, T, N]; T where it never fired."""
    steps = spikes.shape[1]
    fired = spikes > 0
    first = fired.to(torch.uint8).argmax(dim=1)
    return torch.where(fired.any(dim=1), first, torch.full_like(first, steps))


def _summary(spikes: torch.Tensor) -> tuple:
    """Spike counts and first spike steps of [B, T, N] spikes, int64 [B, N] each (T: never fired)."""
    spikes = spikes.detach()
    return spikes.sum(dim=1).to(torch.int64), first_spike_times(spikes)


def decide(output_spikes: torch.Tensor, decision: str, summary: Optional[tuple] = None) -> torch.Tensor:
    """Predicted class per sample, int64 [B]; -1 where no output neuron fired.

    ``most_spike``: most output spikes; ties go to the earlier first spike, then the lower index.
    ``earliest_spike``: earliest first spike; ties go to the lower index (a rule that an early
    stop of the simulation cannot change). ``summary``: the spikes' ``(counts, first)`` where
    already formed (:meth:`NetworkOutput.output_summary`).
    """
    if decision not in DECISIONS:
        raise ConfigError(f"decision={decision!r}: accepted are {', '.join(DECISIONS)}")
    steps = output_spikes.shape[1]
    counts, first = summary if summary is not None else _summary(output_spikes)
    if decision == "most_spike":
        score = counts * (steps + 1) - first
    else:
        score = steps - first
    prediction = score.argmax(dim=1)
    silent = counts.sum(dim=1) == 0
    return torch.where(silent, torch.full_like(prediction, -1), prediction)


def decision_steps(output_spikes: torch.Tensor, decision: str, summary: Optional[tuple] = None) -> torch.Tensor:
    """Last step each sample needs for its decision, int64 [B].

    ``earliest_spike``: the first output spike (T-1 if none fired); ``most_spike``: T-1.
    ``summary`` as for :func:`decide`.
    """
    if decision not in DECISIONS:
        raise ConfigError(f"decision={decision!r}: accepted are {', '.join(DECISIONS)}")
    steps = output_spikes.shape[1]
    if decision == "most_spike":
        return torch.full((output_spikes.shape[0],), steps - 1, dtype=torch.int64, device=output_spikes.device)
    first = (summary[1] if summary is not None else first_spike_times(output_spikes)).amin(dim=1)
    return first.clamp(max=steps - 1)


def spike_counts(out: NetworkOutput, decision: str) -> dict:
    """Spikes per sample, float [B] each.

    Keys: ``hidden_spikes`` and ``output_spikes`` (whole simulated window), and
    ``hidden_spikes_to_decision``, ``output_spikes_to_decision`` (steps 0..decision step, inclusive).
    """
    last = decision_steps(out.output_spikes, decision, out.output_summary()).view(-1, 1)

    def totals(spike_list):
        if not spike_list:
            zero = torch.zeros(out.output_spikes.shape[0], device=out.output_spikes.device)
            return zero, zero
        per_step = sum(s.detach().sum(dim=2) for s in spike_list)  # [B, T]
        cumulative = per_step.cumsum(dim=1)
        return cumulative[:, -1].float(), cumulative.gather(1, last).squeeze(1).float()

    hidden, hidden_to = totals(out.hidden_spikes)
    output, output_to = totals([out.output_spikes])
    return {
        "hidden_spikes": hidden,
        "output_spikes": output,
        "hidden_spikes_to_decision": hidden_to,
        "output_spikes_to_decision": output_to,
    }
