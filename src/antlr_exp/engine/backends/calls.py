"""Calls into a kernel module with the C++ API (``lif_forward``, ``lif_forward_events``,
``srm_adjoint``, ``rnn_adjoint``): the argument packing that the C++ and Triton backends share.

The kernels take flat time-major tensors [T, M] (M = B * N) and scalars; these functions turn
the engine's [T, B, N] tensors and parameter objects into those arguments and back.
"""

from __future__ import annotations

import torch

from .. import synapses
from ..lif import LIFState, initial_state, surrogate_derivative
from ..neuron import NeuronParams
from ..rules import RuleConfig
from ..synapses import SynapticInput, bias_rows
from .base import rule_constants


def simulate(
    ops,
    source,
    bias,
    params: NeuronParams,
    state: LIFState,
    keep_current: bool,
    steps=None,
    batch=None,
    emit_events: bool = False,
    store_times: bool = True,
):
    """simulate_lif through the module's fused kernel (same arithmetic, one pass over [T, B*N]).

    ``source`` is the drive [T, B, N], or ``(events, weight)`` for the event-driven kernel.
    Returns simulate_lif's five values and the output events (None unless ``emit_events``).
    """
    if isinstance(source, torch.Tensor):
        steps, batch, n = source.shape
        dtype = source.dtype
    else:
        n, dtype = source[1].shape[-2], source[1].dtype
    flat = lambda x: x.reshape(batch * n)  # noqa: E731
    bias_term = bias_rows(bias.detach() * float(params.beta_bias), batch).to(dtype)
    empty = torch.empty(0, dtype=dtype, device=bias.device)
    common = (
        flat(bias_term),
        flat(state.current),
        flat(state.potential),
        flat(state.keep),
        flat(state.allowed) if state.allowed is not None else empty,
        float(params.alpha_I),
        float(params.alpha_V),
        float(params.beta_I),
        float(params.beta_V),
        float(params.theta),
        keep_current,
    )
    if isinstance(source, torch.Tensor):
        outputs = ops.lif_forward(source.reshape(steps, batch * n).contiguous(), *common, batch, emit_events)
    else:
        inp, weight = source
        values = inp.values if inp.values is not None else empty
        weight_t = ops.transpose_contiguous(weight).view(-1, n)  # [N_in, N], stacked [K*N_in, N]
        outputs = ops.lif_forward_events(
            inp.row_offsets, inp.cols, values, weight_t, steps, batch, *common, emit_events, store_times
        )
    return _unpack(outputs, state, steps, batch, n, keep_current, emit_events)


def simulate_drive(ops, drive, bias, params: NeuronParams, state=None, keep_current: bool = False):
    """:func:`antlr_exp.engine.lif.simulate_lif` (its arguments and five results) through the
    module's ``lif_forward`` on a dense drive [T, B, N]."""
    steps, batch, n = drive.shape
    if state is None:
        state = initial_state(batch, n, params, drive.dtype, drive.device)
    return simulate(ops, drive, bias, params, state, keep_current)[:5]


def _unpack(outputs, state: LIFState, steps: int, batch: int, n: int, keep_current: bool, emit_events: bool):
    potential, spikes, times, current, last_v, keep, allowed, currents, offsets, rows, cols = outputs
    events = None
    if emit_events and rows.numel() < synapses.SPARSE_DENSITY * spikes.numel():
        events = SynapticInput(None, rows, cols, None, offsets)
    shape = (steps, batch, n)
    final = LIFState(
        current.view(batch, n),
        last_v.view(batch, n),
        keep.view(batch, n),
        allowed.view(batch, n) if state.allowed is not None else None,
    )
    currents = currents.view(shape) if keep_current else None
    times = times.view(shape) if times.numel() or not spikes.numel() else None  # None: not stored
    return potential.view(shape), spikes.view(shape), times, final, currents, events


def adjoint(ops, grad_s, grad_t, potential, spikes, current, params: NeuronParams, rule: RuleConfig, want_h: bool):
    """:func:`antlr_exp.engine.lif.adjoint` through the module's ``srm_adjoint`` / ``rnn_adjoint``."""
    steps, batch, n = potential.shape
    kernel_scale = float(params.beta_I) * float(params.beta_V)
    flat = lambda x: x.view(steps, batch * n) if x is not None else potential.new_empty(0)  # noqa: E731
    if rule.rule == "activation_rnn":
        g, h, lam_v_sum = ops.rnn_adjoint(
            flat(potential),
            flat(spikes),
            flat(current),
            flat(surrogate_derivative(potential, params)),
            flat(grad_s),
            float(params.alpha_I),
            float(params.alpha_V),
            float(params.beta_V),
            bool(params.single_spike),
            kernel_scale,
        )
    else:
        g, h, lam_v_sum = ops.srm_adjoint(
            flat(potential),
            flat(spikes),
            flat(grad_s),
            flat(grad_t),
            *rule_constants(params, rule),
            want_h,
        )
    return g.view(steps, batch, n), (h.view(steps, batch, n) if want_h else None), lam_v_sum
