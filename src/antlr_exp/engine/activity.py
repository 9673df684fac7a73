"""Per-layer activity of a forward: events per layer, which neurons fired, synaptic operations.

Layer 0 is the input, layers 1..L the spiking layers (L the output). For each sample, over the
whole simulated window and up to the decision step (inclusive; :func:`decision_steps`):

- ``events[l]``: the events of layer l. A spiking layer's events are its spikes. The input's
  events are its nonzero entries (input neuron i at step t): every task's input is 0/1 spikes
  (latency-coded MNIST, binary N-MNIST frames, spike-train matching), and an input of other
  values (a library user's own tensors) counts each nonzero entry as one event, which reads one
  row of the weights (a multiply instead of an add where the value is not 1).
- ``fired[l]`` (l >= 1): whether each neuron of layer l fired, [B, N_l].
- ``synops``: synaptic operations, ``sum_{l=0..L-1} events[l] * N_{l+1}``: every event of layer
  l reaches all N_{l+1} neurons of the layer above (the fan-out of a fully connected layer), one
  operation each. The output's spikes reach no layer and cost none; the bias, added to every
  neuron at every step whatever the input, is not a synaptic operation.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .spikes import NetworkOutput, decision_steps, first_spike_times


@dataclass
class LayerActivity:
    """Per-sample activity of a forward; B samples (K*B with stacked trials, trial-major)."""

    sizes: list  # N_0 (input), N_1, ..., N_L
    events: torch.Tensor  # float64 [L+1, B]: events per layer, whole window
    events_to_decision: torch.Tensor  # float64 [L+1, B]: up to the decision step
    fired: list  # L entries, bool [B, N_l]: the neuron fired in the window
    fired_to_decision: list  # L entries, bool [B, N_l]: fired up to the decision step

    @property
    def synops(self) -> torch.Tensor:
        """Synaptic operations per sample over the whole window, float64 [B]."""
        return synaptic_operations(self.events, self.sizes)

    @property
    def synops_to_decision(self) -> torch.Tensor:
        """Synaptic operations per sample up to the decision step, float64 [B]."""
        return synaptic_operations(self.events_to_decision, self.sizes)


def synaptic_operations(events: torch.Tensor, sizes: list) -> torch.Tensor:
    """``sum_l events[l] * sizes[l+1]`` over l = 0..L-1: events [L+1, B] -> [B]."""
    fan_out = torch.tensor(sizes[1:], dtype=events.dtype, device=events.device).view(-1, 1)
    return (events[:-1] * fan_out).sum(dim=0)


def flat_inputs(inputs: torch.Tensor, out: NetworkOutput) -> torch.Tensor:
    """The input of ``out``'s forward as [B, T_sim, N_in] (stacked trials' [K, B, T, ...] and event
    frames [B, T, C, H, W] flattened; steps beyond an early stop dropped)."""
    batch = out.output_spikes.shape[0]
    steps = inputs.shape[2 if out.trials > 1 else 1]
    return inputs.reshape(batch, steps, -1)[:, : out.num_steps]


def input_events(flat: torch.Tensor) -> torch.Tensor:
    """Nonzero entries per sample and step of ``flat`` [B, T, N], int64 [B, T]. From the list of
    nonzeros: the inputs are sparse, and a comparison over the whole tensor followed by a sum
    costs several times more."""
    batch, steps, inputs = flat.shape
    rows = flat.reshape(batch * steps, inputs).nonzero()[:, 0]
    return torch.bincount(rows, minlength=batch * steps).view(batch, steps)


@torch.no_grad()
def layer_activity(inputs: torch.Tensor, out: NetworkOutput, decision: str) -> LayerActivity:
    """The activity of the forward ``out`` of ``inputs`` (as the network took them) under
    ``decision`` (see the module's docstring)."""
    flat = flat_inputs(inputs, out)
    last = decision_steps(out.output_spikes, decision, out.output_summary()).view(-1, 1)
    per_step = [input_events(flat)] + [s.detach().sum(dim=2) for s in out.spikes]  # [B, T] each
    cumulative = torch.stack(per_step).to(torch.float64).cumsum(dim=2)  # [L+1, B, T]
    events = cumulative[:, :, -1]
    events_to_decision = cumulative.gather(2, last.unsqueeze(0).expand(len(per_step), -1, -1)).squeeze(2)
    fired, fired_to_decision = [], []
    for spikes in out.spikes:
        first = first_spike_times(spikes.detach())  # [B, N]: T_sim where it never fired
        fired.append(first < spikes.shape[1])
        fired_to_decision.append(first <= last)
    sizes = [flat.shape[2], *(s.shape[2] for s in out.spikes)]
    return LayerActivity(sizes, events, events_to_decision, fired, fired_to_decision)
