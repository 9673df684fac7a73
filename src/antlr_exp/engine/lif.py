"""The LIF time loops in plain PyTorch: the forward recurrence and the adjoint maths of the rules.

These are the reference for the kernels of :mod:`antlr_exp.engine.backends` (the ``python``
backend runs them as they are; the C++ and Triton kernels compute the same numbers in one pass).

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

from typing import NamedTuple, Optional

import torch

from .neuron import NeuronParams
from .rules import RuleConfig
from .surrogate import SURROGATES
from .synapses import bias_rows


class LIFState(NamedTuple):
    """State carried between chunks of a simulation, each [B, N]."""

    current: torch.Tensor  # I after the last step
    potential: torch.Tensor  # V after the last step
    keep: torch.Tensor  # 1 - S of the last step
    allowed: Optional[torch.Tensor]  # single-spike mode: 1 while the neuron has not fired yet


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


def adjoint(grad_s, grad_t, potential, spikes, current, params: NeuronParams, rule: RuleConfig, want_h: bool):
    """Backward of one layer's rule from dL/dS and dL/dt_hat [T, B, N] (either may be None).

    Returns ``(G, H, lam_V summed over t)``: G [T, B, N] = dL/d(synaptic input), H [T, B, N]
    the timing-kernel sum for the layer below (None unless ``want_h``), and [B*N] sums of
    lam_V over time (for the bias gradient).
    """
    kernel_scale = float(params.beta_I) * float(params.beta_V)
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


def dv_from_rule(grad_s, grad_t, potential, keep, allowed, params: NeuronParams, rule: RuleConfig):
    """dL/dV[t] of an SRM-based rule (activation, timing, antlr), [T, B, N].

    activation part: ``sigma(V[t]) dL/dS[t]`` (times ``allowed`` in single-spike mode: a neuron
    that already fired cannot spike, so its S does not depend on V);
    timing part: ``-dL/dt_hat[t] / V*[t]`` at spike steps (formed densely and selected there,
    so that the host never waits for the device to count the spikes).
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
        v_before = torch.zeros_like(potential)
        torch.mul(potential[:-1], keep[:-1], out=v_before[1:])
        vstar = (potential - v_before).clamp_(min=float(params.vstar_min))
        timing = grad_t / vstar * -rule.tim_weight
        grad_v.add_(torch.where(keep == 0, timing, torch.zeros_like(timing)))
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
