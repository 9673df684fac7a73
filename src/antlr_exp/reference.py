"""A plain per-time-step simulation differentiated by autograd.

This is the RNN-like description of the paper's neuron (eqs. 1-3) written step by step, with the surrogate on
the spike function. It is the independent oracle for the ``activation`` rule (reset factors
detached) and the ``activation_rnn`` rule (reset paths kept), and the slow baseline of
``scripts/bench.py``. It is not used for training.
"""

from __future__ import annotations

from typing import Sequence

import torch

from .layer import surrogate_derivative
from .neuron import NeuronParams


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
        return grad * surrogate_derivative(potential, ctx.params), None


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
