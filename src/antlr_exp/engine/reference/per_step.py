"""The test oracle: a plain per-time-step simulation differentiated by autograd.

It is not part of the engine and nothing in the engine imports it; it lives in the package so
that the tests and the benchmarks (a user's too) can check the engine against it.

This is the RNN-like description of the paper's neuron (eqs. 1-3) written step by step, with the surrogate on
the spike function. It is the independent oracle for the ``activation`` rule (reset factors
detached) and the ``activation_rnn`` rule (reset paths kept), and the slow baseline of
``scripts/bench.py``. It is not used for training. Its surrogate derivatives are written out
here (:func:`reference_surrogate`), apart from the engine's :mod:`antlr_exp.engine.surrogate`, so that
a mistake in one shows up as a difference between the two.
"""

from __future__ import annotations

from typing import Sequence

import torch

from ..neuron import NeuronParams


def reference_surrogate(potential: torch.Tensor, params: NeuronParams) -> torch.Tensor:
    """sigma(V), each shape as the derivative of a smooth step F(u), u = V - theta:

    exponential   F = (a/b) sign(u) (1 - e^(-b|u|))     sigma = a e^(-b|u|)
    fast_sigmoid  F = a u / (1 + b|u|)                  sigma = a / (1 + b|u|)^2
    triangle      F = a (u - b u|u| / 2) for |u| < 1/b  sigma = a (1 - b|u|), 0 beyond 1/b
    sigmoid       F = (4a/b) s(bu), s logistic          sigma = 4a s(bu) s(-bu)
    """
    u = potential - params.theta
    a, b = float(params.surrogate_a), float(params.surrogate_b)
    if params.surrogate == "exponential":
        return a * torch.exp(-b * torch.abs(u))
    if params.surrogate == "fast_sigmoid":
        return a / torch.square(1.0 + b * torch.abs(u))
    if params.surrogate == "triangle":
        return torch.where(torch.abs(u) < 1.0 / b, a * (1.0 - b * torch.abs(u)), torch.zeros_like(u))
    if params.surrogate == "sigmoid":
        return 4.0 * a * torch.sigmoid(b * u) * torch.sigmoid(-b * u)
    raise ValueError(f"surrogate={params.surrogate!r}: no reference shape")


class _SpikeFunction(torch.autograd.Function):
    """Heaviside(V - theta) forward, surrogate derivative sigma(V) backward."""

    @staticmethod
    def forward(ctx, potential, params):
        ctx.save_for_backward(potential)
        ctx.params = params
        return (potential >= params.theta).to(potential.dtype)

    @staticmethod
    def backward(ctx, grad):
        (potential,) = ctx.saved_tensors
        return grad * reference_surrogate(potential, ctx.params), None


def reference_forward(
    x: torch.Tensor,
    weights: Sequence[torch.Tensor],
    biases: Sequence[torch.Tensor],
    params: NeuronParams,
    reset_paths: bool,
):
    """Simulate step by step; returns (spikes, potentials), lists of [B, T, N_l] per layer.

    Args:
        x: input spikes [B, T, N_in].
        weights: [N_out, N_in] per layer; biases: [N_out] per layer.
        params: resolved neuron parameters.
        reset_paths: keep the gradient through the reset factors (1 - S) (``activation_rnn``)
            or detach them (``activation``, the SRM-based rule). The single-spike mask is
            always treated as a constant.
    """
    batch, steps, _ = x.shape
    n_layers = len(weights)
    state = []
    for w in weights:
        zeros = torch.zeros(batch, w.shape[0], dtype=x.dtype, device=x.device)
        state.append({"I": zeros, "V": zeros, "keep": torch.ones_like(zeros), "allowed": torch.ones_like(zeros)})
    spikes = [[] for _ in range(n_layers)]
    potentials = [[] for _ in range(n_layers)]
    for t in range(steps):
        s = x[:, t]
        for index, (w, b) in enumerate(zip(weights, biases)):
            st = state[index]
            current = params.alpha_I * st["keep"] * st["I"] + params.beta_I * (s @ w.t())
            potential = params.alpha_V * st["keep"] * st["V"] + params.beta_V * current + params.beta_bias * b
            s = _SpikeFunction.apply(potential, params)
            if params.single_spike:
                s = s * st["allowed"]
                st["allowed"] = (st["allowed"] * (1.0 - s)).detach()
            keep = 1.0 - s
            st.update(I=current, V=potential, keep=keep if reset_paths else keep.detach())
            spikes[index].append(s)
            potentials[index].append(potential)
    return (
        [torch.stack(layer, dim=1) for layer in spikes],
        [torch.stack(layer, dim=1) for layer in potentials],
    )
