"""Losses of the paper (Table 1) as differentiable functions of (spikes, times).

Every loss takes the output layer's ``spikes`` [B, T, O] and, where it needs them, ``times``
[B, T, O] (``t * S``, the tensor that carries dL/dt_hat). Autograd then delivers dL/dS and
dL/dt_hat to the layer, whose backward applies the rule. All losses are batch means.
"""

from __future__ import annotations

import math
from typing import Optional

import torch
import torch.nn.functional as F

from .errors import ConfigError, InputError
from .network import first_spike_times

LOSSES = ("count", "spike_train", "latency")

#: which rules can learn from which loss (count has no dL/dt, latency no dL/dS)
_COMPATIBLE = {
    "count": ("activation", "activation_rnn", "antlr"),
    "spike_train": ("activation", "activation_rnn", "timing", "antlr"),
    "latency": ("timing", "antlr"),
}


def check_rule_loss(rule: str, loss: str, lambda_act: float = 1.0, lambda_tim: float = 1.0) -> None:
    """Raise ConfigError for a rule/loss pairing that gives no gradient."""
    if loss not in LOSSES:
        raise ConfigError(f"loss={loss!r}: accepted are {', '.join(LOSSES)}")
    if rule not in _COMPATIBLE["spike_train"]:
        raise ConfigError(f"method={rule!r}: accepted are {', '.join(_COMPATIBLE['spike_train'])}")
    if rule not in _COMPATIBLE[loss]:
        raise ConfigError(
            f"method={rule} with loss={loss}: the {loss} loss gives "
            f"{'no spike-time gradient' if loss == 'count' else 'no spike-activation gradient'}, "
            f"which method={rule} needs; accepted methods for loss={loss}: {', '.join(_COMPATIBLE[loss])}"
        )
    if rule == "antlr" and loss == "count" and lambda_act == 0:
        raise ConfigError("loss=count with method=antlr and method.lambda_act=0: no gradient would flow; set lambda_act != 0")
    if rule == "antlr" and loss == "latency" and lambda_tim == 0:
        raise ConfigError("loss=latency with method=antlr and method.lambda_tim=0: no gradient would flow; set lambda_tim != 0")


def _check_output(spikes: torch.Tensor, name: str = "spikes") -> None:
    if spikes.dim() != 3:
        raise InputError(f"{name} has shape {tuple(spikes.shape)}: expected [batch, steps, outputs]")


def _check_labels(labels: torch.Tensor, num_outputs: int) -> None:
    if labels.dim() != 1:
        raise InputError(f"labels has shape {tuple(labels.shape)}: expected [batch]")
    if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= num_outputs):
        raise InputError(f"labels must lie in 0..{num_outputs - 1}; got min {int(labels.min())}, max {int(labels.max())}")


def count_targets(labels: torch.Tensor, num_outputs: int, n_true: float, n_false: float) -> torch.Tensor:
    """Target spike counts [B, O]: ``n_true`` for the label's neuron, ``n_false`` for the others."""
    _check_labels(labels, num_outputs)
    targets = torch.full((labels.shape[0], num_outputs), float(n_false), device=labels.device)
    targets[torch.arange(labels.shape[0], device=labels.device), labels] = float(n_true)
    return targets


def label_spike_trains(labels: torch.Tensor, num_outputs: int, num_steps: int,
                       label_steps, other_steps=(), dtype=torch.float32) -> torch.Tensor:
    """Target spike trains [B, T, O] made from class labels, for the spike-train loss on a labelled task.

    The label's neuron should fire at the steps ``label_steps``; every other output neuron at
    ``other_steps`` (empty: silent).
    """
    _check_labels(labels, num_outputs)
    for name, steps in (("label_steps", label_steps), ("other_steps", other_steps)):
        bad = [int(t) for t in steps if not 0 <= int(t) < num_steps]
        if bad:
            raise InputError(f"{name}={list(steps)}: steps {bad} lie outside the window 0..{num_steps - 1}")
    batch = labels.shape[0]
    targets = torch.zeros(batch, num_steps, num_outputs, dtype=dtype, device=labels.device)
    if len(other_steps):
        targets[:, torch.as_tensor(list(other_steps), dtype=torch.long, device=labels.device), :] = 1.0
    rows = torch.arange(batch, device=labels.device)
    targets[rows, :, labels] = 0.0
    for t in label_steps:
        targets[rows, int(t), labels] = 1.0
    return targets


def count_loss(spikes: torch.Tensor, target_counts: torch.Tensor) -> torch.Tensor:
    """``sum_o (sum_t S_o[t] - n_o)^2 / T``, batch mean. target_counts [B, O]."""
    _check_output(spikes)
    if target_counts.shape != (spikes.shape[0], spikes.shape[2]):
        raise InputError(
            f"target_counts has shape {tuple(target_counts.shape)}: expected {(spikes.shape[0], spikes.shape[2])}"
        )
    steps = spikes.shape[1]
    error = spikes.sum(dim=1) - target_counts.to(spikes.dtype)
    return (error.pow(2).sum(dim=1) / steps).mean()


def exponential_kernel(decay: float, dtype=torch.float64, device=None, cutoff: float = 1e-6):
    """kappa[k] = decay^k for k >= 0 until it falls below ``cutoff``, and its central difference.

    Returns ``(kappa, kappa_dot)``: kappa [K] for k = 0..K-1; kappa_dot [K+1] for k = -1..K-1,
    ``kappa_dot[k] = (kappa[k+1] - kappa[k-1]) / 2`` with kappa = 0 for k < 0 (the derivative of
    kappa in its argument; nonzero at k = -1, where the central difference sees the jump at 0).
    """
    if not (0.0 < decay < 1.0):
        raise ConfigError(f"loss.decay={decay!r}: must lie in (0, 1)")
    length = int(math.ceil(math.log(cutoff) / math.log(decay))) + 1
    kappa = torch.pow(torch.tensor(decay, dtype=torch.float64), torch.arange(length, dtype=torch.float64))
    padded = torch.cat([kappa.new_zeros(2), kappa, kappa.new_zeros(1)])  # k = -2..K
    kappa_dot = (padded[2:] - padded[:-2]) / 2  # k = -1..K-1
    return kappa.to(dtype=dtype, device=device), kappa_dot.to(dtype=dtype, device=device)


def _causal_filter(signal: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """``out[tau] = sum_t signal[t] kernel[tau - t]`` for tau = 0..T+K-2; [B, T, O] -> [B, T+K-1, O]."""
    batch, steps, outputs = signal.shape
    length = kernel.numel()
    x = signal.permute(0, 2, 1).reshape(batch * outputs, 1, steps)
    out = F.conv1d(x, kernel.flip(0).view(1, 1, -1), padding=length - 1)
    return out.view(batch, outputs, -1).permute(0, 2, 1)


def filtered_spike_train(spikes, times, kappa, kappa_dot) -> torch.Tensor:
    """kappa * S with a first-order dependence on spike times, [B, T+K-1, O].

    Its value is ``sum_t S[t] kappa[tau - t]``; its derivative in ``times[t]`` is
    ``-kappa_dot[tau - t]`` (moving a spike later delays its trace), tau >= t - 1.
    """
    filtered = _causal_filter(spikes, kappa)
    if times is not None and times.requires_grad:
        shift = times - times.detach()  # zero value, unit derivative
        # kappa_dot starts at k = -1: the filtered index is one ahead of tau
        filtered = filtered - _causal_filter(shift, kappa_dot)[:, 1:]
    return filtered


def spike_train_loss(
    spikes: torch.Tensor, times: Optional[torch.Tensor], target_spikes: torch.Tensor, decay: float = 0.9
) -> torch.Tensor:
    """``sum_o sum_tau d_o[tau]^2``, ``d = kappa*S - kappa*S_target``, batch mean.

    tau runs past T until the kernel falls below 1e-6. target_spikes [B, T, O].
    """
    _check_output(spikes)
    if target_spikes.shape != spikes.shape:
        raise InputError(f"target_spikes has shape {tuple(target_spikes.shape)}: expected {tuple(spikes.shape)}")
    kappa, kappa_dot = exponential_kernel(decay, spikes.dtype, spikes.device)
    difference = filtered_spike_train(spikes, times, kappa, kappa_dot) - _causal_filter(
        target_spikes.to(spikes.dtype), kappa
    )
    return difference.pow(2).sum(dim=(1, 2)).mean()


def first_spike_time_tensor(spikes: torch.Tensor, times: torch.Tensor) -> torch.Tensor:
    """First spike time of each neuron [B, O], differentiable in ``times``; T (constant) if silent."""
    steps = spikes.shape[1]
    first = first_spike_times(spikes.detach())
    fired = first < steps
    gathered = times.gather(1, first.clamp(max=steps - 1).unsqueeze(1)).squeeze(1)
    return torch.where(fired, gathered, torch.full_like(gathered, float(steps)))


def latency_loss(spikes: torch.Tensor, times: torch.Tensor, labels: torch.Tensor, beta: float = 1.0 / 6.0) -> torch.Tensor:
    """Cross-entropy of ``softmax_o(-beta * t_first_o)``, batch mean; silent outputs count as t = T."""
    _check_output(spikes)
    if labels.shape != (spikes.shape[0],):
        raise InputError(f"labels has shape {tuple(labels.shape)}: expected [{spikes.shape[0]}]")
    logits = -beta * first_spike_time_tensor(spikes, times)
    return F.cross_entropy(logits, labels)


def no_spike_count_term(spikes: torch.Tensor, labels: torch.Tensor, lambda_ns: float = 0.1) -> torch.Tensor:
    """``lambda_ns * (min(sum_t S_d[t], 1) - 1)^2`` for the label's neuron d, batch mean."""
    _check_output(spikes)
    counts = spikes.sum(dim=1).gather(1, labels.view(-1, 1)).squeeze(1)
    return lambda_ns * (counts.clamp(max=1.0) - 1.0).pow(2).mean()


def no_spike_weight_penalty(net, out, p: float = 100.0) -> torch.Tensor:
    """The timing rule's no-spike penalty as a potential to add to the objective.

    Its gradient in each incoming weight of neuron j is ``-(p / fan_in) * f_j``, with f_j the
    fraction of the batch on which neuron j never fired: descending it raises the weights of
    silent neurons. Its value is not a loss; do not report it.
    """
    total = None
    for layer, spikes in zip(net.layers, out.spikes):
        silent_fraction = (spikes.detach().sum(dim=1) == 0).to(layer.weight.dtype).mean(dim=0)  # [N]
        term = -(p / layer.in_features) * (silent_fraction.unsqueeze(1) * layer.weight).sum()
        total = term if total is None else total + term
    return total
