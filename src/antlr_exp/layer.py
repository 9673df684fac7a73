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
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple, Optional

import torch
from torch import nn

from .errors import ConfigError, InputError
from .neuron import NeuronParams
from .surrogate import SURROGATES

RULES = ("activation", "activation_rnn", "timing", "antlr")

#: Inputs whose fraction of nonzero entries is below this use the event-driven product.
SPARSE_DENSITY = 0.05


@dataclass(frozen=True)
class RuleConfig:
    """Which gradient rule a layer's backward applies, and its weights (antlr only)."""

    rule: str = "antlr"
    lambda_act: float = 1.0
    lambda_tim: float = 1.0

    def __post_init__(self) -> None:
        if self.rule not in RULES:
            raise ConfigError(f"method={self.rule!r}: accepted are {', '.join(RULES)}")
        for name in ("lambda_act", "lambda_tim"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ConfigError(f"method.{name}={value!r}: must be a finite number")

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
    """Presynaptic spikes as given to the matrix product, kept for the weight gradient."""

    dense: Optional[torch.Tensor]  # [T*B, N_in] time-major rows, or None when sparse
    rows: Optional[torch.Tensor]  # sparse: row index t*B + b of every nonzero
    cols: Optional[torch.Tensor]  # sparse: presynaptic neuron of every nonzero
    values: Optional[torch.Tensor]  # sparse: value of every nonzero (None when all are 1)


def _flatten_input(spikes_in: torch.Tensor) -> SynapticInput:
    """Time-major view of spikes [B, T, N_in], dense or as a list of events."""
    batch, steps, n_in = spikes_in.shape
    nonzero = int(torch.count_nonzero(spikes_in))
    if nonzero < SPARSE_DENSITY * spikes_in.numel():
        b, t, i = spikes_in.nonzero(as_tuple=True)
        values = spikes_in[b, t, i]
        if bool((values == 1).all()):
            values = None
        return SynapticInput(None, t * batch + b, i, values)
    dense = spikes_in.transpose(0, 1).reshape(steps * batch, n_in)
    return SynapticInput(dense, None, None, None)


def synaptic_input(inp: SynapticInput, weight: torch.Tensor, rows_total: int) -> torch.Tensor:
    """sum_i w_ji S_i[t] for every row, shape [T*B, N_out]."""
    if inp.dense is not None:
        return inp.dense @ weight.t()
    out = torch.zeros(rows_total, weight.shape[0], dtype=weight.dtype, device=weight.device)
    gathered = weight.t()[inp.cols]
    if inp.values is not None:
        gathered = gathered * inp.values.unsqueeze(1)
    return out.index_add_(0, inp.rows, gathered)


def weight_gradient(inp: SynapticInput, grad_rows: torch.Tensor, n_in: int) -> torch.Tensor:
    """sum over rows of grad_rows[row, j] * S[row, i], shape [N_out, N_in]."""
    if inp.dense is not None:
        return grad_rows.t() @ inp.dense
    gathered = grad_rows[inp.rows]
    if inp.values is not None:
        gathered = gathered * inp.values.unsqueeze(1)
    grad_t = torch.zeros(n_in, grad_rows.shape[1], dtype=grad_rows.dtype, device=grad_rows.device)
    return grad_t.index_add_(0, inp.cols, gathered).t()


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
        bias: [N] trainable bias b (enters as ``beta_bias * b`` every step).
        params: resolved neuron parameters.
        state: state after an earlier chunk, or None to start at rest.
        keep_current: also return the currents I[t] (needed by the ``activation_rnn`` backward).

    Returns:
        ``(potential [T,B,N], keep [T,B,N], state, current or None)`` where ``keep = 1 - S``
        (float, in the spike-restricted sense when ``single_spike``).
    """
    steps, batch, n = drive.shape
    dtype, device = drive.dtype, drive.device
    if state is None:
        zeros = torch.zeros(batch, n, dtype=dtype, device=device)
        state = LIFState(
            zeros,
            zeros.clone(),
            torch.ones(batch, n, dtype=dtype, device=device),
            torch.ones(batch, n, dtype=dtype, device=device) if params.single_spike else None,
        )
    alpha_I, alpha_V = float(params.alpha_I), float(params.alpha_V)
    beta_I, beta_V, theta = float(params.beta_I), float(params.beta_V), float(params.theta)
    if beta_I != 1.0:
        drive = drive * beta_I
    bias_term = (bias * float(params.beta_bias)).to(dtype).expand(batch, n)
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
    return potential, keep, final, current_all


def _adjoint_srm(grad_v: torch.Tensor, keep: torch.Tensor, params: NeuronParams):
    """Reverse-time sums over spike-free windows for injected dL/dV (no reset paths).

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


def spike_derivative_of_time(potential: torch.Tensor, keep: torch.Tensor, params: NeuronParams) -> torch.Tensor:
    """V*[t] = V[t] - (1 - S[t-1]) V[t-1], clamped to >= vstar_min; [T, B, N]."""
    previous = torch.zeros_like(potential)
    previous[1:] = potential[:-1] * keep[:-1]
    return (potential - previous).clamp_(min=float(params.vstar_min))


def allowed_mask(spikes: torch.Tensor) -> torch.Tensor:
    """Single-spike mode: 1 at steps where the neuron has not fired before, [T, B, N]."""
    fired_before = torch.cumsum(spikes, dim=0) - spikes
    return 1.0 - fired_before


class SpikingLinearFunction(torch.autograd.Function):
    """Spikes and spike times of a fully connected LIF layer; the backward applies a rule."""

    @staticmethod
    def forward(ctx, spikes_in, times_in, weight, bias, params: NeuronParams, rule: RuleConfig):
        batch, steps, n_in = spikes_in.shape
        inp = _flatten_input(spikes_in)
        drive = synaptic_input(inp, weight, steps * batch).view(steps, batch, -1)
        potential, keep, _, current = simulate_lif(
            drive, bias, params, keep_current=rule.rule == "activation_rnn"
        )
        spikes = 1.0 - keep  # time-major [T, B, N]
        step_index = torch.arange(steps, dtype=spikes.dtype, device=spikes.device).view(steps, 1, 1)
        times = spikes * step_index
        ctx.params, ctx.rule, ctx.shape = params, rule, (batch, steps, n_in)
        ctx.has_times_in = times_in is not None
        ctx.save_for_backward(
            *(x if x is not None else torch.empty(0) for x in inp),
            weight,
            potential,
            keep,
            current if current is not None else torch.empty(0),
        )
        ctx.sparse = inp.dense is None
        ctx.has_values = inp.values is not None
        return spikes.transpose(0, 1), times.transpose(0, 1)

    @staticmethod
    def backward(ctx, grad_spikes, grad_times):
        dense, rows, cols, values, weight, potential, keep, current = ctx.saved_tensors
        inp = SynapticInput(
            None if ctx.sparse else dense,
            rows if ctx.sparse else None,
            cols if ctx.sparse else None,
            values if ctx.has_values else None,
        )
        params, rule = ctx.params, ctx.rule
        batch, steps, n_in = ctx.shape
        spikes = 1.0 - keep
        grad_s = _time_major(grad_spikes, potential)
        grad_t = _time_major(grad_times, potential)
        allowed = allowed_mask(spikes) if params.single_spike else None

        if rule.rule == "activation_rnn":
            lam_v, lam_i = _adjoint_rnn(grad_s, potential, current, keep, allowed, params)
        else:
            grad_v = dv_from_rule(grad_s, grad_t, potential, keep, allowed, params, rule)
            lam_v, lam_i = _adjoint_srm(grad_v, keep, params)

        kernel_scale = float(params.beta_I) * float(params.beta_V)
        g = lam_i * kernel_scale  # dL/d(synaptic input), [T, B, N]
        g_rows = g.view(steps * batch, -1)
        grad_weight = weight_gradient(inp, g_rows, n_in) if ctx.needs_input_grad[2] else None
        grad_bias = lam_v.sum(dim=(0, 1)) * float(params.beta_bias) if ctx.needs_input_grad[3] else None

        grad_spikes_in = grad_times_in = None
        if ctx.needs_input_grad[0] and rule.act_weight != 0.0:
            grad_spikes_in = (g_rows @ weight).view(steps, batch, n_in).transpose(0, 1)
        if ctx.has_times_in and ctx.needs_input_grad[1] and rule.tim_weight != 0.0:
            h = timing_kernel_sum(g, lam_v, keep, params)
            h_in = (h.view(steps * batch, -1) @ weight).view(steps, batch, n_in).transpose(0, 1)
            # only steps where the presynaptic neuron fired carry a spike time
            grad_times_in = h_in * _presynaptic_spikes(inp, batch, steps, n_in, h_in)
        return grad_spikes_in, grad_times_in, grad_weight, grad_bias, None, None


def _time_major(grad: Optional[torch.Tensor], like: torch.Tensor) -> torch.Tensor:
    if grad is None:
        return torch.zeros_like(like)
    return grad.transpose(0, 1).contiguous()


def _presynaptic_spikes(inp: SynapticInput, batch, steps, n_in, like) -> torch.Tensor:
    """Presynaptic spikes as [B, T, N_in] (0/1), rebuilt from the saved input."""
    if inp.dense is not None:
        return (inp.dense.view(steps, batch, n_in) != 0).to(like.dtype).transpose(0, 1)
    mask = torch.zeros(steps * batch, n_in, dtype=like.dtype, device=like.device)
    mask[inp.rows, inp.cols] = 1.0
    return mask.view(steps, batch, n_in).transpose(0, 1)


def dv_from_rule(grad_s, grad_t, potential, keep, allowed, params: NeuronParams, rule: RuleConfig):
    """dL/dV[t] of an SRM-based rule (activation, timing, antlr), [T, B, N].

    activation part: ``sigma(V[t]) dL/dS[t]`` (times ``allowed`` in single-spike mode: a neuron
    that already fired cannot spike, so its S does not depend on V);
    timing part: ``-dL/dt_hat[t] / V*[t]`` at spike steps.
    """
    grad_v = torch.zeros_like(potential)
    if rule.act_weight != 0.0:
        sigma = surrogate_derivative(potential, params)
        if allowed is not None:
            sigma = sigma * allowed
        grad_v.addcmul_(sigma, grad_s, value=rule.act_weight)
    if rule.tim_weight != 0.0:
        spikes = 1.0 - keep
        vstar = spike_derivative_of_time(potential, keep, params)
        grad_v.addcmul_(spikes * grad_t, vstar.reciprocal_(), value=-rule.tim_weight)
    return grad_v


def timing_kernel_sum(g: torch.Tensor, lam_v: torch.Tensor, keep: torch.Tensor, params: NeuronParams):
    """H[t] = sum_{t_a in W(t)} dL/dV[t_a] * d eps[t_a - t]/d t_hat (central difference), [T, B, N]."""
    alpha_I, alpha_V = float(params.alpha_I), float(params.alpha_V)
    kernel_scale = float(params.beta_I) * float(params.beta_V)
    later = torch.zeros_like(g)
    later[:-1] = g[1:] * keep[:-1]
    return (later - alpha_I * g - (kernel_scale * alpha_V) * lam_v) * 0.5


class SpikingLinear(nn.Module):
    """Fully connected LIF layer run over the whole window.

    ``forward(spikes_in [B,T,N_in], times_in [B,T,N_in] or None) -> (spikes, times)``, both
    [B, T, N_out]; ``times = t * S`` carries dL/dt_hat at spike steps in the backward.
    Weights start as PyTorch's default for ``nn.Linear``; biases at 0.
    """

    def __init__(self, in_features: int, out_features: int, params: NeuronParams, rule: RuleConfig):
        super().__init__()
        if in_features <= 0 or out_features <= 0:
            raise ConfigError(f"layer size {in_features}->{out_features}: sizes must be positive integers")
        linear = nn.Linear(in_features, out_features, bias=False)
        self.weight = nn.Parameter(linear.weight.detach().clone())
        self.bias = nn.Parameter(torch.zeros(out_features))
        self.params = params
        self.rule = rule

    @property
    def in_features(self) -> int:
        return self.weight.shape[1]

    @property
    def out_features(self) -> int:
        return self.weight.shape[0]

    def forward(self, spikes_in: torch.Tensor, times_in: Optional[torch.Tensor] = None):
        if spikes_in.dim() != 3 or spikes_in.shape[2] != self.in_features:
            raise InputError(
                f"spikes_in has shape {tuple(spikes_in.shape)}: expected [batch, steps, {self.in_features}]"
            )
        if spikes_in.dtype != self.weight.dtype:
            spikes_in = spikes_in.to(self.weight.dtype)
        return SpikingLinearFunction.apply(spikes_in, times_in, self.weight, self.bias, self.params, self.rule)

    def simulate(self, spikes_in: torch.Tensor, state: Optional[LIFState] = None):
        """Forward without autograd for a chunk of steps; returns ``(spikes [B,T,N], state)``."""
        batch, steps, _ = spikes_in.shape
        inp = _flatten_input(spikes_in.to(self.weight.dtype))
        drive = synaptic_input(inp, self.weight, steps * batch).view(steps, batch, -1)
        _, keep, state, _ = simulate_lif(drive, self.bias, self.params, state)
        return (1.0 - keep).transpose(0, 1), state

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, rule={self.rule.rule}"
