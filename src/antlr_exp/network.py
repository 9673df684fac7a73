"""A stack of spiking layers, spike counting and the two decision schemes."""

from __future__ import annotations

from dataclasses import dataclass, field
from collections.abc import Sequence
from typing import Optional

import torch
from torch import nn

from .errors import ConfigError, InputError
from .kernels import SURROGATE_CODES, cpp_kernels
from .layer import (
    LIFState,
    RuleConfig,
    SpikingLinear,
    SynapticInput,
    _flatten_input,
    offset_for_trials,
    raise_non_finite,
    run_layer,
    weight_gradient,
)
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


class HiddenTimes(Sequence):
    """The ``times`` of a fused forward: hidden layers' spike times are formed when first read.

    The fused node does not store hidden layers' spike-time tensors; it returns for each a
    zero-memory stand-in ``handle`` (an expanded zero) that carries dL/dt_hat back to it. Reading
    ``times[l]`` forms ``t * S`` through :class:`_TimesFromSpikes`, whose gradient goes to the
    handle, so a loss on hidden spike times trains as before; unread, they cost nothing.
    """

    def __init__(self, handles: list, spikes: list, last: torch.Tensor):
        """``handles`` and ``spikes`` of the hidden layers; ``last``: the output layer's times."""
        self._handles, self._spikes, self._last = handles, spikes, last
        self._formed: dict = {}

    def __len__(self) -> int:
        return len(self._spikes) + 1  # the hidden layers and the output layer

    def __getitem__(self, index):
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        index = range(len(self))[index]  # negative indices; IndexError past the end
        if index == len(self) - 1:
            return self._last
        if index not in self._formed:
            self._formed[index] = _TimesFromSpikes.apply(self._handles[index], self._spikes[index])
        return self._formed[index]


class _TimesFromSpikes(torch.autograd.Function):
    """``t * S`` for spikes [B, T, N]; the gradient goes to ``handle`` (the fused node's
    stand-in for this layer's times), not to the spikes."""

    @staticmethod
    def forward(ctx, handle, spikes):
        steps = spikes.shape[1]
        return spikes.detach() * torch.arange(steps, dtype=spikes.dtype, device=spikes.device).view(1, steps, 1)

    @staticmethod
    def backward(ctx, grad):
        return grad, None


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

    #: train through :class:`FusedNetworkFunction` where it applies (see :meth:`uses_fused_backward`)
    fused: bool = True

    def uses_fused_backward(self, flat: torch.Tensor) -> bool:
        """True where a training forward goes through :class:`FusedNetworkFunction`: on the C++
        kernels (CPU), for the SRM-based rules, with autograd on and an input that needs no
        gradient. Elsewhere each layer is its own autograd node; both give the same gradients."""
        return (
            self.fused
            and self.rule.rule != "activation_rnn"
            and flat.device.type == "cpu"
            and torch.is_grad_enabled()
            and not flat.requires_grad
            and any(p.requires_grad for p in self.parameters())
            and cpp_kernels() is not None
        )

    def set_rule(self, rule: str, lambda_act: float = 1.0, lambda_tim: float = 1.0) -> None:
        """Switch the gradient rule of every layer (the forward pass is the same for all rules)."""
        self.rule = RuleConfig(rule, lambda_act, lambda_tim)
        for layer in self.layers:
            layer.rule = self.rule

    def _check_input(self, x: torch.Tensor, finite: bool = True) -> torch.Tensor:
        """The input as [B, T, N_in] floats; shapes checked, and with ``finite`` that no entry is
        NaN or inf (the fused path leaves that to the C++ scan of the first layer's input)."""
        if not isinstance(x, torch.Tensor):
            raise InputError(f"input of type {type(x).__name__}: expected a torch.Tensor")
        shape = tuple(x.shape)
        if self.trials > 1:
            if x.dim() < 4 or x.shape[0] != self.trials:
                raise InputError(f"input has shape {tuple(x.shape)}: a network of trials={self.trials} expects "
                                 f"[{self.trials}, batch, steps, ...] (one batch per trial)")
            x = x.reshape(x.shape[0] * x.shape[1], *x.shape[2:])
        if x.dim() < 3:
            raise InputError(
                f"input has shape {tuple(x.shape)}: expected [batch, steps, {self.sizes[0]}] or [batch, steps, C, H, W]"
            )
        if x.shape[0] == 0:
            raise InputError(f"input has shape {shape}: the batch is empty; expected at least one sample")
        flat = x.flatten(2) if x.dim() > 3 else x  # flatten: also where a frame has no pixels
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
        if finite:
            self._check_finite(flat)
        return flat

    @staticmethod
    def _check_finite(flat: torch.Tensor) -> None:
        # the sum is NaN or inf whenever an entry is (and costs one cheap pass); the exact test
        # runs only then, since a huge finite input could overflow the sum alone
        if not bool(torch.isfinite(flat.sum())) and not bool(torch.isfinite(flat).all()):
            raise_non_finite(flat)

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
        flat = self._check_input(x, finite=False)
        if not early_stop and self.uses_fused_backward(flat):
            return self._fused_forward(flat)  # the C++ scan of the input checks it is finite
        self._check_finite(flat)
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

    def _fused_forward(self, flat: torch.Tensor, simulated: Optional[list] = None) -> NetworkOutput:
        dtype = self.layers[0].weight.dtype
        flat = flat.to(dtype) if flat.dtype != dtype else flat
        params = [p for layer in self.layers for p in (layer.weight, layer.bias)]
        outputs = FusedNetworkFunction.apply(flat, self, simulated, *params)
        spikes, times = list(outputs[0::2]), list(outputs[1::2])
        return NetworkOutput(spikes, HiddenTimes(times[:-1], spikes[:-1], times[-1]), flat.shape[1], self.trials)

    def _train_until_all_fired(self, flat: torch.Tensor, chunk: int) -> NetworkOutput:
        """The simulation runs once, chunk by chunk; each layer's graph node is then made from
        the recorded potentials and spikes of the simulated steps."""
        keep_current = self.rule.rule == "activation_rnn"
        steps_done, pieces = self._chunks_until_all_fired(flat, chunk, keep_current)
        if self.uses_fused_backward(flat):
            simulated = [(torch.cat([r[2] for r in chunks], dim=0), torch.cat([r[3] for r in chunks], dim=0))
                         for chunks in pieces]
            return self._fused_forward(flat[:, :steps_done], simulated)
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


class FusedNetworkFunction(torch.autograd.Function):
    """All layers of a :class:`SpikingNetwork` as one autograd node (C++ kernels, SRM rules).

    The forward is the layer-by-layer simulation. The backward runs the layers top down through
    the C++ ``fused_adjoint``, which forms a layer's dL/dS and dL/dt_hat from the layer above's
    G, H and weights as it goes (instead of materializing ``G W`` and the spike-time gradient as
    [T, B, N] tensors) and, on event input, sums the weight gradient from the input events
    directly, so the first layer's G is never stored. Gradients that a loss puts on hidden
    layers' spikes or times are added as the per-layer path adds them. The gradients are those
    of the per-layer :class:`~antlr_exp.layer.SpikingLinearFunction` nodes, up to the order of
    floating-point sums (the tests compare both).

    Outputs: spikes and times of every layer, interleaved, each [B, T_sim, N]; a hidden layer's
    times are a zero-memory stand-in that :class:`HiddenTimes` turns into ``t * S`` when read.
    """

    @staticmethod
    def forward(ctx, flat, net, simulated, *params):
        ctx.set_materialize_grads(False)
        batch, steps, _ = flat.shape
        trials = net.trials
        last = len(net.layers) - 1
        s, events = flat, None
        outputs, saved, layouts = [], [], []
        for index, layer in enumerate(net.layers):
            weight, bias = params[2 * index], params[2 * index + 1]
            n_in = weight.shape[-1]
            inp = events if events is not None else _flatten_input(s)
            inp = offset_for_trials(inp, trials, n_in, batch)
            if simulated is None:
                potential, spikes, times, _, _, events = run_layer(
                    inp, weight.detach(), bias.detach(), net.params, steps, batch, emit_events=index < last,
                    store_times=index == last)
            else:
                potential, spikes = simulated[index]
                times, events = None, None
            s = spikes.transpose(0, 1)
            if index < last:  # hidden times: a stand-in (see HiddenTimes)
                times = s.new_zeros(()).expand(s.shape)
            else:
                if times is None:
                    times = spikes * torch.arange(steps, dtype=spikes.dtype, device=spikes.device).view(steps, 1, 1)
                times = times.transpose(0, 1)
            outputs += [s, times]
            layouts.append(tuple(x is not None for x in inp))
            saved += [x for x in inp if x is not None] + [potential, spikes]
        ctx.save_for_backward(*saved, *params)
        ctx.net, ctx.layouts, ctx.shape = net, layouts, (batch, steps)
        return tuple(outputs)

    @staticmethod
    def backward(ctx, *grad_outputs):
        net = ctx.net
        ext = cpp_kernels()
        params, rule = net.params, net.rule
        batch, steps = ctx.shape
        trials = net.trials
        saved = list(ctx.saved_tensors)
        n_layers = len(ctx.layouts)
        weights = saved[len(saved) - 2 * n_layers :: 2]
        per_layer = []
        for layout in ctx.layouts:
            inp = SynapticInput(*(saved.pop(0) if present else None for present in layout))
            potential, spikes = saved.pop(0), saved.pop(0)
            per_layer.append((inp, potential, spikes))
        empty = weights[0].new_empty(0)
        no_index = torch.empty(0, dtype=torch.int64)

        def time_major(grad):
            return empty if grad is None else grad.transpose(0, 1).reshape(steps, -1)

        grads = [None] * (2 * n_layers)
        g_up = h_up = w_up = empty
        for index in range(n_layers - 1, -1, -1):
            inp, potential, spikes = per_layer[index]
            weight = weights[index]
            n_in = weight.shape[-1]
            events = inp.dense is None and ctx.needs_input_grad[3 + 2 * index]
            need_g = index > 0 or (inp.dense is not None and ctx.needs_input_grad[3 + 2 * index])
            want_h = index > 0 and rule.tim_weight != 0.0
            g, h, lam_v_sum, dw_t = ext.fused_adjoint(
                potential.reshape(steps, -1), spikes.reshape(steps, -1),
                time_major(grad_outputs[2 * index]), time_major(grad_outputs[2 * index + 1]),
                g_up if rule.act_weight != 0.0 else empty, h_up if rule.tim_weight != 0.0 else empty, w_up,
                inp.row_offsets if events else no_index, inp.cols if events else no_index,
                inp.values if events and inp.values is not None else empty,
                trials, batch // trials, n_in, float(params.alpha_I), float(params.alpha_V), float(params.theta),
                rule.act_weight, rule.tim_weight, float(params.vstar_min), SURROGATE_CODES[params.surrogate],
                float(params.surrogate_a), float(params.surrogate_b), bool(params.single_spike),
                float(params.beta_I) * float(params.beta_V), need_g, want_h,
            )
            if ctx.needs_input_grad[3 + 2 * index]:
                if events:
                    grads[2 * index] = ext.transpose_contiguous(dw_t if trials == 1 else dw_t.view(trials, n_in, -1))
                else:
                    grads[2 * index] = weight_gradient(inp, g.view(steps * batch, -1), n_in, trials, steps)
            if ctx.needs_input_grad[4 + 2 * index]:
                grad_bias = lam_v_sum.view(trials, batch // trials, -1).sum(dim=1) * float(params.beta_bias)
                grads[2 * index + 1] = grad_bias.view(-1) if trials == 1 else grad_bias
            g_up, h_up, w_up = g, h, weight
        return (None, None, None, *grads)


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
