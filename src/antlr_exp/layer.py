"""The fully connected spiking layer over the whole time window, with the gradient rules.

Forward: the synaptic input of every step is one (event-driven when sparse) matrix product,
then an elementwise time recurrence (the LIF of :mod:`antlr_exp.neuron`).

Backward: every rule produces dL/dV[t] (``grad_v``) and sends it down the same way::

    activation      grad_v = sigma(V) * dL/dS                      (SRM: no reset paths)
    timing          grad_v = -dL/dt_hat / V*   at spike steps, 0 elsewhere
    antlr           grad_v = lambda_act * activation part + lambda_tim * timing part
    activation_rnn  plain BPTT of the RNN-like equations with sigma for dS/dV, reset paths kept

The reverse-time recurrence over the neuron's spike-free windows (eqs. 6, 7, 9, 10)::

    lam_V[t] = grad_v[t] + alpha_V (1 - S[t]) lam_V[t+1]     = sum_{t_a in W(t)} grad_v[t_a] alpha_V^(t_a-t)
    lam_I[t] = lam_V[t]  + alpha_I (1 - S[t]) lam_I[t+1]     (G = beta_I beta_V lam_I)
    G[t]     = sum_{t_a in W(t)} grad_v[t_a] eps[t_a - t]       = dL/d(sum_i w_i S_i[t])
    H[t]     = sum_{t_a in W(t)} grad_v[t_a] d eps[t_a - t]/dt  (central difference)
             = -(alpha_I G[t] + beta_I beta_V alpha_V lam_V[t] - (1 - S[t]) G[t+1]) / 2

where W(t) = {t_a >= t : no spike of the neuron in [t, t_a - 1]}. Then
dL/dw_ji = sum_t G_j[t] S_i[t], dL/db_j = beta_bias sum_t lam_V_j[t],
dL/dS_i[t] = sum_j w_ji G_j[t] and dL/dt_hat_i[t] = S_i[t] sum_j w_ji H_j[t].

Shapes: public tensors are [B, T, N] (batch, steps, neurons); internals are time-major [T, B, N].

Trials: a layer built with ``trials=K`` holds K independent weight sets, ``weight`` [K, N_out,
N_in] and ``bias`` [K, N_out], and its batch is K blocks of B samples (row ``k * B + b`` is
sample b of trial k). The time recurrences are elementwise, so they see K*B columns as one
batch; only the products with the weights are per trial: batched matrix products on dense
input, and on events a block-diagonal lookup (the event of trial k at input i reads row
``k * N_in + i`` of the stacked ``W^T`` [K*N_in, N_out]).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple, Optional

import torch
import torch.nn.functional as F
from torch import nn

from .errors import ConfigError, InputError
from .kernels import SURROGATE_CODES, cpp_kernels, triton_kernels
from .neuron import NeuronParams
from .surrogate import SURROGATES

RULES = ("activation", "activation_rnn", "timing", "antlr")

#: Inputs whose fraction of nonzero entries is below this use the event-driven product.
SPARSE_DENSITY = 0.1


@dataclass(frozen=True)
class RuleConfig:
    """Which gradient rule a layer's backward applies, and its weights (antlr only)."""

    rule: str = "antlr"
    lambda_act: float = 1.0
    lambda_tim: float = 1.0

    def __post_init__(self) -> None:
        if self.rule not in RULES:
            raise ConfigError(f"method={self.rule!r}: accepted are {', '.join(RULES)}")
        for name in ("lambda_act", "lambda_tim"):  # antlr-train's config check is this one too
            value = getattr(self, name)
            if (isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value)
                    or value < 0):
                raise ConfigError(f"method.{name}={value!r} is out of range; accepted: a number in [0, inf)")

    @property
    def act_weight(self) -> float:
        """Weight of the activation (surrogate) part of dL/dV."""
        return {"activation": 1.0, "timing": 0.0, "antlr": float(self.lambda_act), "activation_rnn": 1.0}[self.rule]

    @property
    def tim_weight(self) -> float:
        """Weight of the timing part of dL/dV."""
        return {"activation": 0.0, "timing": 1.0, "antlr": float(self.lambda_tim), "activation_rnn": 0.0}[self.rule]


class LIFState(NamedTuple):
    """State carried between chunks of a simulation, each [B, N]."""

    current: torch.Tensor  # I after the last step
    potential: torch.Tensor  # V after the last step
    keep: torch.Tensor  # 1 - S of the last step
    allowed: Optional[torch.Tensor]  # single-spike mode: 1 while the neuron has not fired yet


class SynapticInput(NamedTuple):
    """Presynaptic spikes as given to the matrix product, kept for the weight gradient.

    Rows are time-major, ``row = t * B + b``. Dense: ``dense`` [T*B, N_in]. Event-driven: one
    entry per nonzero, sorted by row, with CSR offsets ``row_offsets`` [T*B + 1].
    """

    dense: Optional[torch.Tensor]
    rows: Optional[torch.Tensor]
    cols: Optional[torch.Tensor]
    values: Optional[torch.Tensor]  # None when every nonzero is 1
    row_offsets: Optional[torch.Tensor]


def raise_non_finite(spikes: torch.Tensor):
    """The error for input spikes holding NaN or inf."""
    bad = "NaN" if bool(torch.isnan(spikes).any()) else "inf"
    raise InputError(f"input contains {bad} values: spikes must be finite (0/1)")


def _flatten_input(spikes_in: torch.Tensor) -> SynapticInput:
    """Time-major form of spikes [B, T, N_in]: dense rows, or the list of events when sparse.
    On the C++ path the scan also checks that every entry is finite (InputError if not)."""
    batch, steps, n_in = spikes_in.shape
    time_major = spikes_in.transpose(0, 1)
    ext = cpp_kernels() if spikes_in.device.type == "cpu" else None
    if ext is not None:
        found = ext.csr_events(time_major, SPARSE_DENSITY)
        if not bool(found[-1]):
            raise_non_finite(spikes_in)
        if len(found) > 2:
            offsets, rows, cols, values, all_ones, _ = found
            return SynapticInput(None, rows, cols, None if bool(all_ones) else values, offsets)
    elif int(torch.count_nonzero(spikes_in)) < SPARSE_DENSITY * spikes_in.numel():
        t, b, i = time_major.nonzero(as_tuple=True)  # lexicographic: sorted by row t*B + b
        values = time_major[t, b, i]
        if bool((values == 1).all()):
            values = None
        rows = t * batch + b
        counts = torch.bincount(rows, minlength=steps * batch)
        offsets = torch.zeros(steps * batch + 1, dtype=torch.int64, device=spikes_in.device)
        torch.cumsum(counts, 0, out=offsets[1:])
        return SynapticInput(None, rows, i, values, offsets)
    return SynapticInput(time_major.reshape(steps * batch, n_in), None, None, None, None)


def _by_trial(rows: torch.Tensor, trials: int, steps: int) -> torch.Tensor:
    """Time-major rows [T*K*B, N] (row ``t*K*B + k*B + b``) as one block per trial, [K, T*B, N]."""
    n = rows.shape[-1]
    batch = rows.shape[0] // (steps * trials)
    return rows.view(steps, trials, batch, n).transpose(0, 1).reshape(trials, steps * batch, n)


def _from_trial(blocks: torch.Tensor, steps: int) -> torch.Tensor:
    """Inverse of :func:`_by_trial`: [K, T*B, N] -> [T*K*B, N]."""
    trials, rows, n = blocks.shape
    batch = rows // steps
    return blocks.view(trials, steps, batch, n).transpose(0, 1).reshape(steps * trials * batch, n)


def stacked_weight_t(weight: torch.Tensor) -> torch.Tensor:
    """``W^T`` as the event lookup reads it: [N_in, N_out], or [K*N_in, N_out] for stacked trials."""
    if weight.dim() == 2:
        return weight.t()
    return weight.transpose(1, 2).reshape(-1, weight.shape[1])


def offset_for_trials(inp: SynapticInput, trials: int, n_in: int, batch: int) -> SynapticInput:
    """Events of a K-trial batch (``batch`` = K*B rows per step) with each column moved to its
    trial's block, ``i -> k*N_in + i``. Dense input and a single trial are returned unchanged."""
    if trials == 1 or inp.dense is not None:
        return inp
    trial = torch.remainder(inp.rows, batch).div_(batch // trials, rounding_mode="floor")
    return inp._replace(cols=inp.cols + trial * n_in)


def synaptic_input(inp: SynapticInput, weight: torch.Tensor, steps: Optional[int] = None) -> torch.Tensor:
    """sum_i w_ji S_i[row] for every row, shape [T*B, N_out] (stacked trials: [T*K*B, N_out],
    events already moved by :func:`offset_for_trials`; ``steps`` needed for dense input)."""
    if inp.dense is not None:
        if weight.dim() == 3:
            return _from_trial(torch.bmm(_by_trial(inp.dense, weight.shape[0], steps), weight.transpose(1, 2)), steps)
        return inp.dense @ weight.t()
    return F.embedding_bag(
        inp.cols, stacked_weight_t(weight), inp.row_offsets, mode="sum", per_sample_weights=inp.values,
        include_last_offset=True,
    )


def weight_gradient(inp: SynapticInput, grad_rows: torch.Tensor, n_in: int, trials: int = 1,
                    steps: Optional[int] = None) -> torch.Tensor:
    """sum over rows of grad_rows[row, j] * S[row, i], shape [N_out, N_in] ([K, N_out, N_in] for
    stacked trials, each trial summing over its own rows)."""
    if trials > 1:
        if inp.dense is not None:
            g = _by_trial(grad_rows, trials, steps)
            return torch.bmm(g.transpose(1, 2), _by_trial(inp.dense, trials, steps))
        grad_t = _event_weight_gradient_t(inp, grad_rows, trials * n_in)  # [K*N_in, N_out]
        ext = cpp_kernels() if grad_t.device.type == "cpu" else None
        grad_t = grad_t.view(trials, n_in, -1)
        return ext.transpose_contiguous(grad_t) if ext is not None else grad_t.transpose(1, 2).contiguous()
    if inp.dense is not None:
        return grad_rows.t() @ inp.dense
    grad_t = _event_weight_gradient_t(inp, grad_rows, n_in)
    ext = cpp_kernels() if grad_t.device.type == "cpu" else None
    # a contiguous [N_out, N_in] gradient spares autograd a copy into the parameter's layout
    return ext.transpose_contiguous(grad_t) if ext is not None else grad_t.t()


def _event_weight_gradient_t(inp: SynapticInput, grad_rows: torch.Tensor, n_in: int) -> torch.Tensor:
    """sum over events of grad_rows[row] grouped by column, [n_in, N_out]."""
    order = torch.argsort(inp.cols, stable=True)
    counts = torch.bincount(inp.cols, minlength=n_in)
    offsets = torch.zeros(n_in + 1, dtype=torch.int64, device=grad_rows.device)
    torch.cumsum(counts, 0, out=offsets[1:])
    values = inp.values[order] if inp.values is not None else None
    return F.embedding_bag(
        inp.rows[order], grad_rows, offsets, mode="sum", per_sample_weights=values, include_last_offset=True
    )


def bias_rows(bias: torch.Tensor, batch: int) -> torch.Tensor:
    """The bias of every row of a batch, [batch, N]: ``bias`` [N], or [K, N] for K stacked trials
    (rows ``k * B + b``)."""
    if bias.dim() == 1:
        return bias.expand(batch, bias.shape[0])
    trials, n = bias.shape
    return bias.view(trials, 1, n).expand(trials, batch // trials, n).reshape(batch, n)


def simulate_lif(
    drive: torch.Tensor,
    bias: torch.Tensor,
    params: NeuronParams,
    state: Optional[LIFState] = None,
    keep_current: bool = False,
):
    """Run the LIF recurrence over the steps of ``drive``.

    Args:
        drive: synaptic input ``sum_i w_ji S_i[t]``, time-major [T, B, N] (beta_I not applied).
        bias: [N] trainable bias b (enters as ``beta_bias * b`` every step); [K, N] for K
            stacked trials (then B = K blocks of samples).
        params: resolved neuron parameters.
        state: state after an earlier chunk, or None to start at rest.
        keep_current: also return the currents I[t] (needed by the ``activation_rnn`` backward).

    Returns:
        ``(potential [T,B,N], spikes [T,B,N], times [T,B,N], state, current or None)``; spikes
        are 0/1 floats (after the single-spike restriction when ``single_spike``), times are
        ``t * S`` with t counted from the start of this call.
    """
    steps, batch, n = drive.shape
    dtype, device = drive.dtype, drive.device
    if state is None:
        state = initial_state(batch, n, params, dtype, device)
    ext = cpp_kernels() if device.type == "cpu" else None
    ext = ext or triton_kernels(device)  # same arguments and results as the C++ module's lif_forward
    if ext is not None:
        return _simulate_lif_cpp(ext, drive, bias, params, state, keep_current)[:5]
    alpha_I, alpha_V = float(params.alpha_I), float(params.alpha_V)
    beta_I, beta_V, theta = float(params.beta_I), float(params.beta_V), float(params.theta)
    if beta_I != 1.0:
        drive = drive * beta_I
    bias_term = bias_rows(bias * float(params.beta_bias), batch).to(dtype)
    potential = torch.empty(steps, batch, n, dtype=dtype, device=device)
    keep = torch.empty_like(potential)
    current_all = torch.empty_like(potential) if keep_current else None
    current = state.current.clone()
    previous_v, previous_keep, allowed = state.potential, state.keep, state.allowed
    if allowed is not None:
        allowed = allowed.clone()
    scratch = torch.empty(batch, n, dtype=dtype, device=device)
    below = torch.empty(batch, n, dtype=dtype, device=device)
    for t in range(steps):
        torch.addcmul(drive[t], current, previous_keep, value=alpha_I, out=current)
        if current_all is not None:
            current_all[t].copy_(current)
        torch.add(bias_term, current, alpha=beta_V, out=scratch)
        torch.addcmul(scratch, previous_v, previous_keep, value=alpha_V, out=potential[t])
        previous_v = potential[t]
        if allowed is None:
            torch.lt(previous_v, theta, out=keep[t])
        else:
            # S = allowed * (V >= theta); keep = 1 - S; allowed <- allowed * (V < theta)
            torch.lt(previous_v, theta, out=below)
            torch.addcmul(1.0 - allowed, allowed, below, out=keep[t])
            allowed.mul_(below)
        previous_keep = keep[t]
    final = LIFState(current, previous_v.clone(), previous_keep.clone(), allowed)
    spikes = keep.neg_().add_(1.0)
    times = spikes * torch.arange(steps, dtype=dtype, device=device).view(steps, 1, 1)
    return potential, spikes, times, final, current_all


def initial_state(batch: int, n: int, params: NeuronParams, dtype, device) -> LIFState:
    """The state at rest (before step 0), each [B, N]."""
    zeros = torch.zeros(batch, n, dtype=dtype, device=device)
    ones = torch.ones(batch, n, dtype=dtype, device=device)
    return LIFState(zeros, zeros.clone(), ones, ones.clone() if params.single_spike else None)


def run_layer(inp: SynapticInput, weight, bias, params: NeuronParams, steps: int, batch: int,
              state: Optional[LIFState] = None, keep_current: bool = False, emit_events: bool = False,
              store_times: bool = True):
    """The layer's synaptic input and LIF recurrence.

    Returns the five values of :func:`simulate_lif` and, sixth, the output spikes as a sparse
    :class:`SynapticInput` for the next layer when ``emit_events`` and the C++ kernels produced
    them (else None). With the C++ kernels and sparse input, the input events feed the
    recurrence directly and no [T, B, N] input tensor is formed. ``store_times=False``: the
    event-driven C++ kernel leaves out the spike times (``times`` is then None); elsewhere they
    are formed anyway.
    """
    ext = cpp_kernels() if weight.device.type == "cpu" else None
    if ext is not None:
        n = weight.shape[-2]
        if state is None:
            state = initial_state(batch, n, params, weight.dtype, weight.device)
        source = (inp, weight.detach()) if inp.dense is None else synaptic_input(inp, weight, steps).view(steps, batch, -1)
        return _simulate_lif_cpp(ext, source, bias, params, state, keep_current, steps, batch, emit_events,
                                 store_times)
    drive = synaptic_input(inp, weight, steps).view(steps, batch, -1)
    return (*simulate_lif(drive, bias, params, state, keep_current), None)


def _simulate_lif_cpp(ext, source, bias, params, state: LIFState, keep_current: bool, steps=None, batch=None,
                      emit_events: bool = False, store_times: bool = True):
    """simulate_lif through the fused C++ kernel (same arithmetic, one pass over [T, B*N]).

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
        outputs = ext.lif_forward(source.reshape(steps, batch * n).contiguous(), *common, batch, emit_events)
    else:
        inp, weight = source
        values = inp.values if inp.values is not None else empty
        weight_t = ext.transpose_contiguous(weight).view(-1, n)  # [N_in, N], stacked [K*N_in, N]
        outputs = ext.lif_forward_events(
            inp.row_offsets, inp.cols, values, weight_t, steps, batch, *common, emit_events, store_times
        )
    potential, spikes, times, current, last_v, keep, allowed, currents, offsets, rows, cols = outputs
    events = None
    if emit_events and rows.numel() < SPARSE_DENSITY * spikes.numel():
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


def _adjoint_srm(grad_v: torch.Tensor, keep: torch.Tensor, params: NeuronParams):
    """Reverse-time sums over spike-free windows for injected dL/dV (no reset paths), PyTorch path.

    Args:
        grad_v: dL/dV[t], [T, B, N]; keep: 1 - S[t], [T, B, N].
    Returns:
        ``(lam_V, lam_I)``, both [T, B, N]; G = beta_I beta_V lam_I.
    """
    alpha_I, alpha_V = float(params.alpha_I), float(params.alpha_V)
    lam_v = torch.empty_like(grad_v)
    lam_i = torch.empty_like(grad_v)
    steps = grad_v.shape[0]
    lam_v[steps - 1] = grad_v[steps - 1]
    lam_i[steps - 1] = grad_v[steps - 1]
    for t in range(steps - 2, -1, -1):
        torch.addcmul(grad_v[t], lam_v[t + 1], keep[t], value=alpha_V, out=lam_v[t])
        torch.addcmul(lam_v[t], lam_i[t + 1], keep[t], value=alpha_I, out=lam_i[t])
    return lam_v, lam_i


def _adjoint_rnn(grad_s, potential, current, keep, allowed, params):
    """Plain BPTT of the RNN-like equations, reset paths kept, sigma for dS/dV.

    Returns ``(lam_V, lam_I)`` in the same scaling as :func:`_adjoint_srm`
    (lam_I here is dL/dI / beta_V).
    """
    alpha_I, alpha_V = float(params.alpha_I), float(params.alpha_V)
    beta_V = float(params.beta_V)
    sigma = surrogate_derivative(potential, params)
    if allowed is not None:
        sigma = sigma * allowed
    steps, batch, n = grad_s.shape
    lam_v = torch.empty_like(grad_s)
    lam_i = torch.empty_like(grad_s)
    next_v = torch.zeros(batch, n, dtype=grad_s.dtype, device=grad_s.device)
    next_i = torch.zeros_like(next_v)  # dL/dI[t+1] / beta_V
    for t in range(steps - 1, -1, -1):
        # dL/dS[t] through the reset of I[t+1] and V[t+1]
        total_s = grad_s[t] - alpha_I * beta_V * current[t] * next_i - alpha_V * potential[t] * next_v
        lam_v[t] = sigma[t] * total_s + alpha_V * keep[t] * next_v
        lam_i[t] = lam_v[t] + alpha_I * keep[t] * next_i
        next_v, next_i = lam_v[t], lam_i[t]
    return lam_v, lam_i


def surrogate_derivative(potential: torch.Tensor, params: NeuronParams) -> torch.Tensor:
    """sigma(V) of the configured shape, same shape as ``potential``."""
    fn = SURROGATES[params.surrogate]
    return fn(potential - float(params.theta), float(params.surrogate_a), float(params.surrogate_b))


def allowed_mask(spikes: torch.Tensor) -> torch.Tensor:
    """Single-spike mode: 1 at steps where the neuron has not fired before, [T, B, N]."""
    fired_before = torch.cumsum(spikes, dim=0) - spikes
    return 1.0 - fired_before


class SpikingLinearFunction(torch.autograd.Function):
    """Spikes and spike times of a fully connected LIF layer; the backward applies a rule."""

    @staticmethod
    def forward(ctx, spikes_in, times_in, weight, bias, params: NeuronParams, rule: RuleConfig,
                events_in: Optional[SynapticInput] = None, emit_events: bool = False,
                simulated: Optional[tuple] = None):
        """``simulated``: ``(potential, spikes, current)`` time-major, already computed for this
        input (the chunked training forward); then only the graph node is made."""
        batch, steps, n_in = spikes_in.shape
        trials = weight.shape[0] if weight.dim() == 3 else 1
        inp = events_in if events_in is not None else _flatten_input(spikes_in)
        inp = offset_for_trials(inp, trials, n_in, batch)
        if simulated is None:
            potential, spikes, times, _, current, events_out = run_layer(
                inp, weight, bias, params, steps, batch, keep_current=rule.rule == "activation_rnn",
                emit_events=emit_events,
            )  # time-major [T, B, N]
        else:
            potential, spikes, current = simulated
            times = spikes * torch.arange(steps, dtype=spikes.dtype, device=spikes.device).view(steps, 1, 1)
            events_out = None
        ctx.params, ctx.rule, ctx.shape, ctx.trials = params, rule, (batch, steps, n_in), trials
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
        g, h, lam_v_sum = adjoint(grad_s, grad_t, potential, spikes, current, params, rule, want_h)
        g_rows = g.view(steps * batch, -1)  # dL/d(synaptic input) per row
        grad_weight = weight_gradient(inp, g_rows, n_in, trials, steps) if ctx.needs_input_grad[2] else None
        grad_bias = None
        if ctx.needs_input_grad[3]:
            grad_bias = lam_v_sum.view(trials, batch // trials, -1).sum(dim=1) * float(params.beta_bias)
            grad_bias = grad_bias.view(-1) if trials == 1 else grad_bias

        grad_spikes_in = grad_times_in = None
        if ctx.needs_input_grad[0] and rule.act_weight != 0.0:
            grad_spikes_in = _rows_times_weight(g_rows, weight, steps).view(steps, batch, n_in).transpose(0, 1)
        if want_h:
            h_rows = h.view(steps * batch, -1)
            grad_times_in = _times_gradient_at_events(inp, h_rows, weight, batch, steps, n_in)
        return grad_spikes_in, grad_times_in, grad_weight, grad_bias, None, None, None, None, None


def adjoint(grad_s, grad_t, potential, spikes, current, params: NeuronParams, rule: RuleConfig, want_h: bool):
    """Backward of one layer's rule from dL/dS and dL/dt_hat [T, B, N] (either may be None).

    Returns ``(G, H, lam_V summed over t)``: G [T, B, N] = dL/d(synaptic input), H [T, B, N]
    the timing-kernel sum for the layer below (None unless ``want_h``), and [B*N] sums of
    lam_V over time (for the bias gradient).
    """
    steps, batch, n = potential.shape
    kernel_scale = float(params.beta_I) * float(params.beta_V)
    ext = cpp_kernels() if potential.device.type == "cpu" else None
    ext = ext or triton_kernels(potential.device)  # same srm_adjoint / rnn_adjoint as the C++ module
    if ext is not None:
        flat = lambda x: x.view(steps, batch * n) if x is not None else potential.new_empty(0)  # noqa: E731
        single = bool(params.single_spike)
        if rule.rule == "activation_rnn":
            g, h, lam_v_sum = ext.rnn_adjoint(
                flat(potential), flat(spikes), flat(current), flat(surrogate_derivative(potential, params)),
                flat(grad_s), float(params.alpha_I), float(params.alpha_V), float(params.beta_V), single,
                kernel_scale,
            )
        else:
            g, h, lam_v_sum = ext.srm_adjoint(
                flat(potential), flat(spikes), flat(grad_s), flat(grad_t), float(params.alpha_I),
                float(params.alpha_V), float(params.theta), rule.act_weight, rule.tim_weight,
                float(params.vstar_min), SURROGATE_CODES[params.surrogate], float(params.surrogate_a),
                float(params.surrogate_b), single, kernel_scale, want_h,
            )
        return g.view(steps, batch, n), (h.view(steps, batch, n) if want_h else None), lam_v_sum
    keep = 1.0 - spikes
    allowed = allowed_mask(spikes) if params.single_spike else None
    if rule.rule == "activation_rnn":
        lam_v, lam_i = _adjoint_rnn(
            grad_s if grad_s is not None else torch.zeros_like(potential), potential, current, keep, allowed, params
        )
    else:
        grad_v = dv_from_rule(grad_s, grad_t, potential, keep, allowed, params, rule)
        lam_v, lam_i = _adjoint_srm(grad_v, keep, params)
    g = lam_i.mul_(kernel_scale)
    h = timing_kernel_sum(g, lam_v, spikes, params) if want_h else None
    return g, h, lam_v.sum(dim=0).view(-1)


def _time_major(grad: Optional[torch.Tensor]) -> Optional[torch.Tensor]:
    return None if grad is None else grad.transpose(0, 1).contiguous()


def _rows_times_weight(rows: torch.Tensor, weight: torch.Tensor, steps: int) -> torch.Tensor:
    """``rows @ W`` per row, [T*B, N_in] from [T*B, N_out]; each trial's rows with its own W."""
    if weight.dim() == 2:
        return rows @ weight
    return _from_trial(torch.bmm(_by_trial(rows, weight.shape[0], steps), weight), steps)


def _times_gradient_at_events(inp: SynapticInput, h_rows, weight, batch, steps, n_in) -> torch.Tensor:
    """dL/dt_hat_i[t] = sum_j w_ji H_j[t] at the presynaptic spikes (0 elsewhere), [B, T, N_in]."""
    if inp.dense is not None:
        full = _rows_times_weight(h_rows, weight, steps) * (inp.dense != 0)
        return full.view(steps, batch, n_in).transpose(0, 1)
    at_events = (h_rows[inp.rows] * stacked_weight_t(weight)[inp.cols]).sum(dim=1)
    cols = inp.cols if weight.dim() == 2 else torch.remainder(inp.cols, n_in)
    out = torch.zeros(steps * batch * n_in, dtype=h_rows.dtype, device=h_rows.device)
    out[inp.rows * n_in + cols] = at_events
    return out.view(steps, batch, n_in).transpose(0, 1)


def dv_from_rule(grad_s, grad_t, potential, keep, allowed, params: NeuronParams, rule: RuleConfig):
    """dL/dV[t] of an SRM-based rule (activation, timing, antlr), [T, B, N].

    activation part: ``sigma(V[t]) dL/dS[t]`` (times ``allowed`` in single-spike mode: a neuron
    that already fired cannot spike, so its S does not depend on V);
    timing part: ``-dL/dt_hat[t] / V*[t]`` at spike steps, computed at the spikes only.
    """
    if rule.act_weight != 0.0 and grad_s is not None:
        grad_v = surrogate_derivative(potential, params).mul_(grad_s)
        if allowed is not None:
            grad_v.mul_(allowed)
        if rule.act_weight != 1.0:
            grad_v.mul_(rule.act_weight)
    else:
        grad_v = torch.zeros_like(potential)
    if rule.tim_weight != 0.0 and grad_t is not None:
        t, b, n = (keep == 0).nonzero(as_tuple=True)
        v_now = potential[t, b, n]
        earlier = (t - 1).clamp(min=0)
        v_before = torch.where(t > 0, potential[earlier, b, n] * keep[earlier, b, n], torch.zeros_like(v_now))
        vstar = (v_now - v_before).clamp_(min=float(params.vstar_min))
        grad_v.index_put_((t, b, n), grad_t[t, b, n] / vstar * -rule.tim_weight, accumulate=True)
    return grad_v


def timing_kernel_sum(g: torch.Tensor, lam_v: torch.Tensor, spikes: torch.Tensor, params: NeuronParams):
    """H[t] = sum_{t_a in W(t)} dL/dV[t_a] * d eps[t_a - t]/d t_hat (central difference), [T, B, N].

    H[t] = (( 1 - S[t]) G[t+1] - alpha_I G[t] - beta_I beta_V alpha_V lam_V[t]) / 2.
    """
    alpha_I, alpha_V = float(params.alpha_I), float(params.alpha_V)
    kernel_scale = float(params.beta_I) * float(params.beta_V)
    h = torch.mul(g, -0.5 * alpha_I)
    h.add_(lam_v, alpha=-0.5 * kernel_scale * alpha_V)
    h[:-1].add_(g[1:], alpha=0.5).addcmul_(g[1:], spikes[:-1], value=-0.5)
    return h


class SpikingLinear(nn.Module):
    """Fully connected LIF layer run over the whole window.

    ``forward(spikes_in [B,T,N_in], times_in [B,T,N_in] or None) -> (spikes, times, events)``,
    spikes and times [B, T, N_out]; ``times = t * S`` carries dL/dt_hat at spike steps in the
    backward.
    Weights start as PyTorch's default for ``nn.Linear``; biases at 0. With ``trials=K > 1`` the
    layer is K independent layers: ``weight`` [K, N_out, N_in] (K draws of that default, one
    after another), ``bias`` [K, N_out], and the batch holds K blocks of samples, one per trial.
    """

    def __init__(self, in_features: int, out_features: int, params: NeuronParams, rule: RuleConfig,
                 trials: int = 1):
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

    @property
    def trials(self) -> int:
        return self.weight.shape[0] if self.weight.dim() == 3 else 1

    @property
    def in_features(self) -> int:
        return self.weight.shape[-1]

    @property
    def out_features(self) -> int:
        return self.weight.shape[-2]

    def forward(self, spikes_in: torch.Tensor, times_in: Optional[torch.Tensor] = None,
                events_in: Optional[SynapticInput] = None, emit_events: bool = False,
                simulated: Optional[tuple] = None):
        """``(spikes, times, events)``: events are the output spikes in sparse form for the next
        layer (with ``emit_events`` on the C++ path, else None); ``events_in`` the same for the
        input, which then is not scanned again. ``simulated``: see SpikingLinearFunction.forward."""
        if spikes_in.dim() != 3 or spikes_in.shape[2] != self.in_features:
            raise InputError(
                f"spikes_in has shape {tuple(spikes_in.shape)}: expected [batch, steps, {self.in_features}]"
            )
        if spikes_in.dtype != self.weight.dtype:
            spikes_in = spikes_in.to(self.weight.dtype)
            events_in = None
        return SpikingLinearFunction.apply(
            spikes_in, times_in, self.weight, self.bias, self.params, self.rule, events_in, emit_events, simulated
        )

    def simulate(self, spikes_in: torch.Tensor, state: Optional[LIFState] = None, keep_current: bool = False):
        """Forward without autograd for a chunk of steps.

        Returns ``(spikes [B,T,N], state, potential, spikes_time_major, current)``; the last three
        are time-major [T, B, N] (current only with ``keep_current``).
        """
        batch, steps, _ = spikes_in.shape
        inp = offset_for_trials(_flatten_input(spikes_in.to(self.weight.dtype)), self.trials, self.in_features, batch)
        potential, spikes, _, state, current, _ = run_layer(
            inp, self.weight.detach(), self.bias.detach(), self.params, steps, batch, state, keep_current)
        return spikes.transpose(0, 1), state, potential, spikes, current

    def extra_repr(self) -> str:
        trials = f", trials={self.trials}" if self.trials > 1 else ""
        return f"in_features={self.in_features}, out_features={self.out_features}, rule={self.rule.rule}{trials}"
