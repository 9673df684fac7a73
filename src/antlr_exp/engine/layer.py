"""The fully connected spiking layer over the whole time window: its autograd Function, whose
backward applies a gradient rule, and the module that holds the weights.

Forward: the synaptic input of every step is one (event-driven when sparse) matrix product
(:mod:`~antlr_exp.engine.synapses`), then the LIF time recurrence. Backward: the rule's adjoint
gives G = dL/d(synaptic input) and H (the timing-kernel sum); see :mod:`~antlr_exp.engine.lif`
for the maths. The time loops run in the backend that :func:`~antlr_exp.engine.backends.select`
returns for the input's device.

Trials: a layer built with ``trials=K`` holds K independent weight sets, ``weight`` [K, N_out,
N_in] and ``bias`` [K, N_out], and its batch is K blocks of B samples (row ``k * B + b`` is
sample b of trial k).
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import nn

from ..errors import ConfigError, InputError
from .backends import Backend, select
from .lif import LIFState
from .neuron import NeuronParams
from .rules import RuleConfig
from .synapses import SynapticInput, offset_for_trials, rows_times_weight, times_gradient_at_events, weight_gradient


class SpikingLinearFunction(torch.autograd.Function):
    """Spikes and spike times of a fully connected LIF layer; the backward applies a rule."""

    @staticmethod
    def forward(
        ctx,
        spikes_in,
        times_in,
        weight,
        bias,
        params: NeuronParams,
        rule: RuleConfig,
        events_in: Optional[SynapticInput] = None,
        emit_events: bool = False,
        simulated: Optional[tuple] = None,
        backend: Optional[Backend] = None,
    ):
        """``simulated``: ``(potential, spikes, current)`` time-major, already computed for this
        input (the chunked training forward); then only the graph node is made. ``backend``:
        the kernels (default: :func:`select` for the input's device)."""
        batch, steps, n_in = spikes_in.shape
        trials = weight.shape[0] if weight.dim() == 3 else 1
        backend = backend or select(spikes_in.device)
        inp = events_in if events_in is not None else backend.flatten_input(spikes_in)
        inp = offset_for_trials(inp, trials, n_in, batch)
        if simulated is None:
            potential, spikes, times, _, current, events_out = backend.run_layer(
                inp,
                weight,
                bias,
                params,
                steps,
                batch,
                keep_current=rule.rule == "activation_rnn",
                emit_events=emit_events,
            )  # time-major [T, B, N]
        else:
            potential, spikes, current = simulated
            times = spikes * torch.arange(steps, dtype=spikes.dtype, device=spikes.device).view(steps, 1, 1)
            events_out = None
        ctx.params, ctx.rule, ctx.shape, ctx.trials, ctx.backend = params, rule, (batch, steps, n_in), trials, backend
        ctx.has_times_in = times_in is not None
        ctx.input_layout = tuple(x is not None for x in inp)
        ctx.save_for_backward(
            *(x for x in inp if x is not None), weight, potential, spikes, *((current,) if current is not None else ())
        )
        return spikes.transpose(0, 1), times.transpose(0, 1), events_out

    @staticmethod
    def backward(ctx, grad_spikes, grad_times, _grad_events=None):
        saved = list(ctx.saved_tensors)
        inp = SynapticInput(*(saved.pop(0) if present else None for present in ctx.input_layout))
        weight, potential, spikes = saved[:3]
        current = saved[3] if len(saved) > 3 else None
        params, rule = ctx.params, ctx.rule
        batch, steps, n_in = ctx.shape
        trials = ctx.trials
        grad_s = _time_major(grad_spikes)
        grad_t = _time_major(grad_times)
        want_h = ctx.has_times_in and ctx.needs_input_grad[1] and rule.tim_weight != 0.0
        backend = ctx.backend
        g, h, lam_v_sum = backend.adjoint(grad_s, grad_t, potential, spikes, current, params, rule, want_h)
        g_rows = g.view(steps * batch, -1)  # dL/d(synaptic input) per row
        grad_weight = None
        if ctx.needs_input_grad[2]:
            grad_weight = weight_gradient(inp, g_rows, n_in, trials, steps, backend.transpose_gradient)
        grad_bias = None
        if ctx.needs_input_grad[3]:
            grad_bias = lam_v_sum.view(trials, batch // trials, -1).sum(dim=1) * float(params.beta_bias)
            grad_bias = grad_bias.view(-1) if trials == 1 else grad_bias

        grad_spikes_in = grad_times_in = None
        if ctx.needs_input_grad[0] and rule.act_weight != 0.0:
            grad_spikes_in = rows_times_weight(g_rows, weight, steps).view(steps, batch, n_in).transpose(0, 1)
        if want_h:
            h_rows = h.view(steps * batch, -1)
            grad_times_in = times_gradient_at_events(inp, h_rows, weight, batch, steps, n_in)
        return grad_spikes_in, grad_times_in, grad_weight, grad_bias, None, None, None, None, None, None


def _time_major(grad: Optional[torch.Tensor]) -> Optional[torch.Tensor]:
    return None if grad is None else grad.transpose(0, 1).contiguous()


class SpikingLinear(nn.Module):
    """Fully connected LIF layer run over the whole window.

    ``forward(spikes_in [B,T,N_in], times_in [B,T,N_in] or None) -> (spikes, times, events)``,
    spikes and times [B, T, N_out]; ``times = t * S`` carries dL/dt_hat at spike steps in the
    backward.
    Weights start as PyTorch's default for ``nn.Linear``; biases at 0. With ``trials=K > 1`` the
    layer is K independent layers: ``weight`` [K, N_out, N_in] (K draws of that default, one
    after another), ``bias`` [K, N_out], and the batch holds K blocks of samples, one per trial.
    ``kernels``: the setting :func:`select` resolves when the layer runs on its own (a network
    hands its layers its backend).
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        params: NeuronParams,
        rule: RuleConfig,
        trials: int = 1,
        kernels: Optional[str] = None,
    ):
        super().__init__()
        if in_features <= 0 or out_features <= 0:
            raise ConfigError(f"layer size {in_features}->{out_features}: sizes must be positive integers")
        if not isinstance(trials, int) or trials < 1:
            raise ConfigError(f"trials={trials!r}: must be a positive integer")
        weights = [nn.Linear(in_features, out_features, bias=False).weight.detach().clone() for _ in range(trials)]
        self.weight = nn.Parameter(weights[0] if trials == 1 else torch.stack(weights))
        self.bias = nn.Parameter(torch.zeros(out_features) if trials == 1 else torch.zeros(trials, out_features))
        self.params = params
        self.rule = rule
        self.kernels = kernels  # the kernels setting (see antlr_exp.engine.backends.select)

    @property
    def trials(self) -> int:
        return self.weight.shape[0] if self.weight.dim() == 3 else 1

    @property
    def in_features(self) -> int:
        return self.weight.shape[-1]

    @property
    def out_features(self) -> int:
        return self.weight.shape[-2]

    def forward(
        self,
        spikes_in: torch.Tensor,
        times_in: Optional[torch.Tensor] = None,
        events_in: Optional[SynapticInput] = None,
        emit_events: bool = False,
        simulated: Optional[tuple] = None,
        backend: Optional[Backend] = None,
    ):
        """``(spikes, times, events)``: events are the output spikes in sparse form for the next
        layer (with ``emit_events`` on the C++ path, else None); ``events_in`` the same for the
        input, which then is not scanned again. ``simulated``: see SpikingLinearFunction.forward.
        ``backend``: the network's (default: :func:`select` for the input's device)."""
        if spikes_in.dim() != 3 or spikes_in.shape[2] != self.in_features:
            raise InputError(
                f"spikes_in has shape {tuple(spikes_in.shape)}: expected [batch, steps, {self.in_features}]"
            )
        if spikes_in.dtype != self.weight.dtype:
            spikes_in = spikes_in.to(self.weight.dtype)
            events_in = None
        backend = backend or select(spikes_in.device, self.kernels)
        return SpikingLinearFunction.apply(
            spikes_in,
            times_in,
            self.weight,
            self.bias,
            self.params,
            self.rule,
            events_in,
            emit_events,
            simulated,
            backend,
        )

    def simulate(
        self,
        spikes_in: torch.Tensor,
        state: Optional[LIFState] = None,
        keep_current: bool = False,
        backend: Optional[Backend] = None,
    ):
        """Forward without autograd for a chunk of steps.

        Returns ``(spikes [B,T,N], state, potential, spikes_time_major, current)``; the last three
        are time-major [T, B, N] (current only with ``keep_current``).
        """
        batch, steps, _ = spikes_in.shape
        backend = backend or select(spikes_in.device, self.kernels)
        inp = backend.flatten_input(spikes_in.to(self.weight.dtype))
        inp = offset_for_trials(inp, self.trials, self.in_features, batch)
        potential, spikes, _, state, current, _ = backend.run_layer(
            inp, self.weight.detach(), self.bias.detach(), self.params, steps, batch, state, keep_current
        )
        return spikes.transpose(0, 1), state, potential, spikes, current

    def extra_repr(self) -> str:
        trials = f", trials={self.trials}" if self.trials > 1 else ""
        return f"in_features={self.in_features}, out_features={self.out_features}, rule={self.rule.rule}{trials}"
