"""All layers of a network as one autograd node, for backends with a fused backward (C++, Triton).

The forward is the layer-by-layer simulation. The backward runs the layers top down through the
backend's ``fused_adjoint``, which forms a layer's dL/dS and dL/dt_hat from the layer above's G,
H and weights as it goes (instead of materializing ``G W`` and the spike-time gradient as
[T, B, N] tensors) and, on event input, sums the weight gradient from the input events
directly, so the first layer's G is never stored.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from .backends import FusedLayerInputs, rule_constants
from .synapses import SynapticInput, offset_for_trials, weight_gradient


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


class FusedNetworkFunction(torch.autograd.Function):
    """All layers of a :class:`~antlr_exp.engine.network.SpikingNetwork` as one autograd node.

    Gradients that a loss puts on hidden layers' spikes or times are added as the per-layer path
    adds them. The gradients are those of the per-layer
    :class:`~antlr_exp.engine.layer.SpikingLinearFunction` nodes, up to the order of
    floating-point sums (the tests compare both).

    Outputs: spikes and times of every layer, interleaved, each [B, T_sim, N]; a hidden layer's
    times are a zero-memory stand-in that :class:`HiddenTimes` turns into ``t * S`` when read.
    """

    @staticmethod
    def forward(ctx, flat, net, backend, simulated, *params):
        ctx.set_materialize_grads(False)
        batch, steps, _ = flat.shape
        trials = net.trials
        last = len(net.layers) - 1
        s, events = flat, None
        outputs, saved, layouts = [], [], []
        for index, layer in enumerate(net.layers):
            weight, bias = params[2 * index], params[2 * index + 1]
            n_in = weight.shape[-1]
            inp = events if events is not None else backend.flatten_input(s)
            inp = offset_for_trials(inp, trials, n_in, batch)
            if simulated is None:
                potential, spikes, times, _, _, events = backend.run_layer(
                    inp,
                    weight.detach(),
                    bias.detach(),
                    net.params,
                    steps,
                    batch,
                    emit_events=index < last,
                    store_times=index == last,
                )
            else:
                potential, spikes = simulated[index]
                times, events = None, None
            s = spikes.transpose(0, 1)
            outputs += [s, _public_times(s, spikes, times, steps, hidden=index < last)]
            layouts.append(tuple(x is not None for x in inp))
            saved += [x for x in inp if x is not None] + [potential, spikes]
        ctx.save_for_backward(*saved, *params)
        ctx.net, ctx.backend, ctx.layouts, ctx.shape = net, backend, layouts, (batch, steps)
        return tuple(outputs)

    @staticmethod
    def backward(ctx, *grad_outputs):
        net, backend = ctx.net, ctx.backend
        params, rule = net.params, net.rule
        constants = rule_constants(params, rule)
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
            wants_weight = ctx.needs_input_grad[4 + 2 * index]
            # from input events the kernel sums the weight gradient itself where it can (C++), so that
            # G need not be stored; elsewhere the weight gradient is G's product with the input
            events = inp.dense is None and wants_weight and backend.capabilities.has_events
            need_g = index > 0 or (wants_weight and not events)
            want_h = index > 0 and rule.tim_weight != 0.0
            inputs = FusedLayerInputs(
                potential.reshape(steps, -1),
                spikes.reshape(steps, -1),
                time_major(grad_outputs[2 * index]),
                time_major(grad_outputs[2 * index + 1]),
                g_up if rule.act_weight != 0.0 else empty,
                h_up if rule.tim_weight != 0.0 else empty,
                w_up,
                inp.row_offsets if events else no_index,
                inp.cols if events else no_index,
                inp.values if events and inp.values is not None else empty,
                trials,
                batch // trials,
                n_in,
            )
            g, h, lam_v_sum, dw_t = backend.fused_adjoint(inputs, constants, need_g, want_h)
            if ctx.needs_input_grad[4 + 2 * index]:
                if events:
                    grads[2 * index] = backend.transpose_gradient(dw_t if trials == 1 else dw_t.view(trials, n_in, -1))
                else:
                    grads[2 * index] = weight_gradient(
                        inp, g.view(steps * batch, -1), n_in, trials, steps, backend.transpose_gradient
                    )
            if ctx.needs_input_grad[5 + 2 * index]:
                grad_bias = lam_v_sum.view(trials, batch // trials, -1).sum(dim=1) * float(params.beta_bias)
                grads[2 * index + 1] = grad_bias.view(-1) if trials == 1 else grad_bias
            g_up, h_up, w_up = g, h, weight
        return (None, None, None, None, *grads)


def _public_times(s, spikes, times, steps: int, hidden: bool):
    """A layer's times output [B, T, N]: for a hidden layer a stand-in (see :class:`HiddenTimes`),
    for the output layer ``t * S`` (formed here where the kernel did not store it)."""
    if hidden:
        return s.new_zeros(()).expand(s.shape)
    if times is None:
        times = spikes * torch.arange(steps, dtype=spikes.dtype, device=spikes.device).view(steps, 1, 1)
    return times.transpose(0, 1)
