"""A stack of spiking layers, spike counting and the two decision schemes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import torch
from torch import nn

from .errors import ConfigError, InputError
from .layer import LIFState, RuleConfig, SpikingLinear
from .neuron import NeuronParams

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

    @property
    def output_spikes(self) -> torch.Tensor:
        return self.spikes[-1]

    @property
    def output_times(self) -> torch.Tensor:
        return self.times[-1]

    @property
    def hidden_spikes(self) -> list:
        return self.spikes[:-1]


class SpikingNetwork(nn.Module):
    """Fully connected SNN, e.g. ``sizes=[784, 800, 10]`` (input, hidden..., output).

    Input spikes are [B, T, N_in] or event frames [B, T, C, H, W] (flattened to C*H*W).

    ``trials=K > 1`` stacks K independent networks (weights [K, N_out, N_in]) that train
    together: the input is then [K, B, T, ...] (one batch per trial) and the outputs hold K*B
    samples, trial-major. Losses that are batch means, taken over the K*B samples and multiplied
    by K, are the sum of the K trials' losses, so each trial gets its own gradient.
    """

    def __init__(
        self,
        sizes: Sequence[int],
        num_steps: int,
        neuron: Optional[NeuronParams] = None,
        rule: str = "antlr",
        lambda_act: float = 1.0,
        lambda_tim: float = 1.0,
        trials: int = 1,
    ):
        super().__init__()
        sizes = list(sizes)
        if len(sizes) < 2 or not all(isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in sizes):
            raise ConfigError(f"sizes={sizes!r}: need at least two positive integers (input, ..., output)")
        if not isinstance(num_steps, int) or num_steps <= 0:
            raise ConfigError(f"num_steps={num_steps!r}: must be a positive integer")
        self.sizes = sizes
        self.num_steps = num_steps
        self.params = (neuron or NeuronParams()).resolve(num_steps)
        if not isinstance(trials, int) or isinstance(trials, bool) or trials < 1:
            raise ConfigError(f"trials={trials!r}: must be a positive integer")
        self.trials = trials
        self.rule = RuleConfig(rule, lambda_act, lambda_tim)
        self.layers = nn.ModuleList(
            SpikingLinear(n_in, n_out, self.params, self.rule, trials) for n_in, n_out in zip(sizes[:-1], sizes[1:])
        )

    def set_rule(self, rule: str, lambda_act: float = 1.0, lambda_tim: float = 1.0) -> None:
        """Switch the gradient rule of every layer (the forward pass is the same for all rules)."""
        self.rule = RuleConfig(rule, lambda_act, lambda_tim)
        for layer in self.layers:
            layer.rule = self.rule

    def _check_input(self, x: torch.Tensor) -> torch.Tensor:
        if not isinstance(x, torch.Tensor):
            raise InputError(f"input of type {type(x).__name__}: expected a torch.Tensor")
        if self.trials > 1:
            if x.dim() < 4 or x.shape[0] != self.trials:
                raise InputError(f"input has shape {tuple(x.shape)}: a network of trials={self.trials} expects "
                                 f"[{self.trials}, batch, steps, ...] (one batch per trial)")
            x = x.reshape(x.shape[0] * x.shape[1], *x.shape[2:])
        if x.dim() < 3:
            raise InputError(
                f"input has shape {tuple(x.shape)}: expected [batch, steps, {self.sizes[0]}] or [batch, steps, C, H, W]"
            )
        flat = x.reshape(x.shape[0], x.shape[1], -1) if x.dim() > 3 else x
        if flat.shape[2] != self.sizes[0]:
            raise InputError(
                f"input has shape {tuple(x.shape)}: {flat.shape[2]} input neurons per step, the network expects {self.sizes[0]}"
            )
        if flat.shape[1] != self.num_steps:
            raise InputError(
                f"input has shape {tuple(x.shape)}: {flat.shape[1]} steps, the network was built for num_steps={self.num_steps}"
            )
        if not torch.is_floating_point(flat):
            flat = flat.to(self.layers[0].weight.dtype)
        # the sum is NaN or inf whenever an entry is (and costs one cheap pass); the exact test
        # runs only then, since a huge finite input could overflow the sum alone
        if not bool(torch.isfinite(flat.sum())) and not bool(torch.isfinite(flat).all()):
            bad = "NaN" if bool(torch.isnan(flat).any()) else "inf"
            raise InputError(f"input contains {bad} values: spikes must be finite (0/1)")
        return flat

    def forward(self, x: torch.Tensor, early_stop: bool = False, chunk: int = 10) -> NetworkOutput:
        """Simulate the window.

        Args:
            x: input spikes [B, T, N_in] or [B, T, C, H, W] ([K, B, T, ...] with trials=K).
            early_stop: stop once every output neuron of every sample has fired. With autograd
                off this is earliest-spike inference. With autograd on (training), the graph
                covers the simulated steps only, which is exact where the loss has no gradient
                after every output's first spike (the latency loss, with or without the no-spike
                count term): every dL/dV after that step is 0, so the backward through the
                shorter window gives the same gradients. Steps are run in chunks of ``chunk``
                across all layers.
        """
        flat = self._check_input(x)
        if early_stop:
            if torch.is_grad_enabled() and any(p.requires_grad for p in self.parameters()):
                return self._train_until_all_fired(flat, chunk)
            return self._simulate_until_all_fired(flat, chunk)
        spikes, times = [], []
        s, t, events = flat, None, None
        last = len(self.layers) - 1
        for index, layer in enumerate(self.layers):
            s, t, events = layer(s, t, events, emit_events=index < last)
            spikes.append(s)
            times.append(t)
        return NetworkOutput(spikes, times, flat.shape[1], self.trials)

    @torch.no_grad()
    def _chunks_until_all_fired(self, flat: torch.Tensor, chunk: int, keep_current: bool = False):
        """Simulate chunk by chunk until every output neuron of every sample has fired.

        Returns ``(steps simulated, per layer: list of the simulate() results of each chunk)``.
        """
        states: list[Optional[LIFState]] = [None] * len(self.layers)
        pieces: list[list[tuple]] = [[] for _ in self.layers]
        fired = None
        steps_done = 0
        for start in range(0, flat.shape[1], chunk):
            s = flat[:, start : start + chunk]
            for index, layer in enumerate(self.layers):
                result = layer.simulate(s, states[index], keep_current)
                s, states[index] = result[0], result[1]
                pieces[index].append(result)
            steps_done = start + s.shape[1]
            out_fired = s.amax(dim=1) > 0
            fired = out_fired if fired is None else fired | out_fired
            if bool(fired.all()):
                break
        return steps_done, pieces

    @torch.no_grad()
    def _simulate_until_all_fired(self, flat: torch.Tensor, chunk: int) -> NetworkOutput:
        steps_done, pieces = self._chunks_until_all_fired(flat, chunk)
        spikes = [torch.cat([r[0] for r in p], dim=1) for p in pieces]
        step_index = torch.arange(steps_done, dtype=flat.dtype, device=flat.device).view(1, -1, 1)
        return NetworkOutput(spikes, [s * step_index for s in spikes], steps_done, self.trials)

    def _train_until_all_fired(self, flat: torch.Tensor, chunk: int) -> NetworkOutput:
        """The simulation runs once, chunk by chunk; each layer's graph node is then made from
        the recorded potentials and spikes of the simulated steps."""
        keep_current = self.rule.rule == "activation_rnn"
        steps_done, pieces = self._chunks_until_all_fired(flat, chunk, keep_current)
        spikes, times = [], []
        s, t = flat[:, :steps_done], None
        for layer, chunks in zip(self.layers, pieces):
            potential = torch.cat([r[2] for r in chunks], dim=0)
            spikes_tm = torch.cat([r[3] for r in chunks], dim=0)
            current = torch.cat([r[4] for r in chunks], dim=0) if keep_current else None
            s, t, _ = layer(s, t, simulated=(potential, spikes_tm, current))
            spikes.append(s)
            times.append(t)
        return NetworkOutput(spikes, times, steps_done, self.trials)


def first_spike_times(spikes: torch.Tensor) -> torch.Tensor:
    """First spike step of every neuron, [B, N] from [B, T, N]; T where it never fired."""
    steps = spikes.shape[1]
    fired = spikes > 0
    first = fired.to(torch.int64).argmax(dim=1)
    return torch.where(fired.any(dim=1), first, torch.full_like(first, steps))


def decide(output_spikes: torch.Tensor, decision: str) -> torch.Tensor:
    """Predicted class per sample, int64 [B]; -1 where no output neuron fired.

    ``most_spike``: most output spikes; ties go to the earlier first spike, then the lower index.
    ``earliest_spike``: earliest first spike; ties go to the lower index (a rule that an early
    stop of the simulation cannot change).
    """
    if decision not in DECISIONS:
        raise ConfigError(f"decision={decision!r}: accepted are {', '.join(DECISIONS)}")
    steps = output_spikes.shape[1]
    counts = output_spikes.sum(dim=1).to(torch.int64)
    first = first_spike_times(output_spikes)
    if decision == "most_spike":
        score = counts * (steps + 1) - first
    else:
        score = steps - first
    prediction = score.argmax(dim=1)
    silent = counts.sum(dim=1) == 0
    return torch.where(silent, torch.full_like(prediction, -1), prediction)


def decision_steps(output_spikes: torch.Tensor, decision: str) -> torch.Tensor:
    """Last step each sample needs for its decision, int64 [B].

    ``earliest_spike``: the first output spike (T-1 if none fired); ``most_spike``: T-1.
    """
    if decision not in DECISIONS:
        raise ConfigError(f"decision={decision!r}: accepted are {', '.join(DECISIONS)}")
    steps = output_spikes.shape[1]
    if decision == "most_spike":
        return torch.full((output_spikes.shape[0],), steps - 1, dtype=torch.int64, device=output_spikes.device)
    first = first_spike_times(output_spikes).amin(dim=1)
    return first.clamp(max=steps - 1)


def spike_counts(out: NetworkOutput, decision: str) -> dict:
    """Spikes per sample, float [B] each.

    Keys: ``hidden_spikes`` and ``output_spikes`` (whole simulated window), and
    ``hidden_spikes_to_decision``, ``output_spikes_to_decision`` (steps 0..decision step, inclusive).
    """
    last = decision_steps(out.output_spikes, decision).view(-1, 1)

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
