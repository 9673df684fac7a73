"""Losses of the paper (Table 1) as differentiable functions of (spikes, times).

Every loss takes the output layer's ``spikes`` [B, T, O] and, where it needs them, ``times``
[B, T, O] (``t * S``, the tensor that carries dL/dt_hat). Autograd then delivers dL/dS and
dL/dt_hat to the layer, whose backward applies the rule. All losses are batch means of a
per-sample loss; ``reduction="none"`` gives the per-sample values [B] instead.
"""

from __future__ import annotations

import functools
from typing import Optional

import torch
import torch.nn.functional as F
from torch.autograd.function import once_differentiable

from ..errors import ConfigError, InputError
from . import checks
from .rules import LOSSES, check_rule_loss  # noqa: F401  (re-exported: the losses' rule pairings)
from .spikes import first_spike_times


def _check_output(spikes: torch.Tensor, name: str = "spikes") -> None:
    if spikes.dim() != 3:
        raise InputError(f"{name} has shape {tuple(spikes.shape)}: expected [batch, steps, outputs]")


def _check_labels(labels: torch.Tensor, num_outputs: int) -> None:
    if not isinstance(labels, torch.Tensor):
        raise InputError(f"labels of type {type(labels).__name__}: expected a torch.Tensor of class indices")
    if labels.dim() != 1:
        raise InputError(f"labels has shape {tuple(labels.shape)}: expected [batch]")
    if labels.dtype == torch.bool or labels.is_floating_point() or labels.is_complex():
        raise InputError(f"labels has dtype {labels.dtype}: expected integer class indices (torch.long)")
    if labels.numel() and checks.reads_values():  # the caller may have checked them on the host
        low, high = (int(v) for v in torch.stack(torch.aminmax(labels)).tolist())  # one sync
        if low < 0 or high >= num_outputs:
            raise InputError(f"labels must lie in 0..{num_outputs - 1}; got min {low}, max {high}")


def count_targets(labels: torch.Tensor, num_outputs: int, n_true: float, n_false: float) -> torch.Tensor:
    """Target spike counts [B, O]: ``n_true`` for the label's neuron, ``n_false`` for the others."""
    _check_labels(labels, num_outputs)
    targets = torch.full((labels.shape[0], num_outputs), float(n_false), device=labels.device)
    targets[torch.arange(labels.shape[0], device=labels.device), labels] = float(n_true)
    return targets


def label_spike_trains(
    labels: torch.Tensor, num_outputs: int, num_steps: int, label_steps, other_steps=(), dtype=torch.float32
) -> torch.Tensor:
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
    for t in other_steps:  # a fill each (an index tensor made from the list would be a copy to the device)
        targets[:, int(t), :] = 1.0
    rows = torch.arange(batch, device=labels.device)
    targets[rows, :, labels] = 0.0
    for t in label_steps:
        targets[rows, int(t), labels] = 1.0
    return targets


def _reduce(per_sample: torch.Tensor, reduction: str) -> torch.Tensor:
    if reduction == "mean":
        return per_sample.mean()
    if reduction == "none":
        return per_sample
    raise ConfigError(f"reduction={reduction!r}: accepted are 'mean', 'none'")


def count_loss(spikes: torch.Tensor, target_counts: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """``sum_o (sum_t S_o[t] - n_o)^2 / T``, batch mean. target_counts [B, O]."""
    _check_output(spikes)
    if target_counts.shape != (spikes.shape[0], spikes.shape[2]):
        raise InputError(
            f"target_counts has shape {tuple(target_counts.shape)}: expected {(spikes.shape[0], spikes.shape[2])}"
        )
    steps = spikes.shape[1]
    error = spikes.sum(dim=1) - target_counts.to(spikes.dtype)
    return _reduce(error.pow(2).sum(dim=1) / steps, reduction)


#: block length of the blocked scan in :func:`exponential_filter`
_SCAN_BLOCK = 32


def _check_decay(decay: float) -> None:
    if not (0.0 < decay < 1.0):
        raise ConfigError(f"loss.decay={decay!r}: must lie in (0, 1)")


def exponential_filter(x: torch.Tensor, decay: float, reverse: bool = False) -> torch.Tensor:
    """``y[t] = decay * y[t-1] + x[t]`` along dim 1 of ``x`` [B, T, O], from y[-1] = 0.

    ``reverse``: the anticausal form ``y[t] = x[t] + decay * y[t+1]`` from y[T] = 0.
    Exact and O(T), by a blocked scan (see :func:`_scan_rows`).
    """
    batch, steps, outputs = x.shape
    rows = x.transpose(1, 2).reshape(batch * outputs, steps)
    return _scan_rows(rows, decay, reverse).view(batch, outputs, steps).transpose(1, 2)


@functools.lru_cache(maxsize=64)
def _scan_constants(decay: float, block: int, dtype, device, reverse: bool):
    """The [b, b] in-block filter matrix (applied as ``x @ matrix``) and the carry weights [b]."""
    index = torch.arange(block, dtype=torch.float64)
    lag = index.view(1, -1) - index.view(-1, 1)  # [j, i] -> i - j: step i sees input j
    if reverse:
        lag = -lag
    matrix = torch.where(lag >= 0, decay ** lag.clamp(min=0), torch.zeros((), dtype=torch.float64))
    rise = decay ** (index + 1)  # the carry from the block before reaches step i as decay^(i+1)
    if reverse:
        rise = rise.flip(0)  # from the block after: decay^(b-i)
    return matrix.to(dtype=dtype, device=device), rise.to(dtype=dtype, device=device)


def _scan_rows(x: torch.Tensor, decay: float, reverse: bool = False) -> torch.Tensor:
    """The filter of :func:`exponential_filter` along the rows of x [R, T], as a new tensor.

    Each block of ``_SCAN_BLOCK`` steps is filtered by one product with the [b, b] matrix of
    ``decay^(i-j)`` (i >= j); the values at the block ends (starts, in reverse) then follow the
    same recursion with decay ``decay^b``, filtered the same way, and each block adds its
    carry times ``decay^(i+1)``. Only powers with nonnegative exponents occur, so nothing
    overflows for any T; the work is O(T b).
    """
    count, steps = x.shape
    block = min(_SCAN_BLOCK, steps)
    blocks = -(-steps // block)
    matrix, rise = _scan_constants(float(decay), block, x.dtype, x.device, reverse)
    if blocks * block != steps:
        x = F.pad(x, (0, blocks * block - steps))  # trailing zeros change no step before T
    local = (x.reshape(count * blocks, block) @ matrix).view(count, blocks, block)
    if blocks > 1:
        if reverse:
            starts = _scan_rows(local[:, :, 0], decay**block, True)  # y at each block's first step
            local[:, :-1] += starts[:, 1:].unsqueeze(2) * rise
        else:
            ends = _scan_rows(local[:, :, -1], decay**block)  # y at each block's last step
            local[:, 1:] += ends[:, :-1].unsqueeze(2) * rise
    return local.view(count, blocks * block)[:, :steps]


class _SpikeTrainLoss(torch.autograd.Function):
    """Per sample ``sum_{o, tau >= 0} d_o[tau]^2``, [B], with ``d = kappa * (S - S_target)``; the backward gives
    dL/dS and, through ``times``, dL/dt_hat (kappa_dot), by one anticausal recursion.

    Internally rows r = (b, o) and time last: [B*O, T].
    """

    @staticmethod
    def forward(ctx, spikes, times, target, decay):
        batch, steps, outputs = spikes.shape
        x = (spikes.detach() - target.detach()).transpose(1, 2).reshape(batch * outputs, steps)
        filtered = _scan_rows(x, decay)  # d[tau], tau < T
        tail = decay * decay / (1.0 - decay * decay)  # sum_{tau >= T} d[tau]^2 = d[T-1]^2 * tail
        per_row = filtered.pow(2).sum(dim=1) + filtered[:, -1].pow(2) * tail
        loss = per_row.view(batch, outputs).sum(dim=1)
        ctx.decay, ctx.shape = decay, (batch, steps, outputs)
        ctx.save_for_backward(filtered)
        return loss

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_loss):
        (filtered,) = ctx.saved_tensors
        decay = ctx.decay
        batch, steps, outputs = ctx.shape
        # dL/dd[tau], tau < T; rows (b, o) take their sample's incoming gradient
        g = filtered * (2.0 * grad_loss).repeat_interleave(outputs).unsqueeze(1)
        # after the window d[tau] = d[T-1] decay^(tau-T+1), so
        # z[T] = sum_{tau >= T} g[tau] decay^(tau-T) = g[T-1] decay / (1 - decay^2)
        z_end = g[:, -1] * (decay / (1.0 - decay * decay))
        last = g[:, -1].clone()  # g[T-1] seeded with the tail, restored below
        g[:, -1] += decay * z_end
        z = _scan_rows(g, decay, reverse=True)  # z[t] = sum_{tau >= t} g[tau] kappa[tau - t]
        g[:, -1] = last

        def public(rows):
            return rows.view(batch, outputs, steps).transpose(1, 2)

        grad_spikes = public(z) if ctx.needs_input_grad[0] else None
        grad_target = public(-z) if ctx.needs_input_grad[2] else None
        grad_times = None
        if ctx.needs_input_grad[1]:
            # -sum_{tau >= t-1} g[tau] kappa_dot[tau - t] with kappa_dot[-1] = 1/2, kappa_dot[0] = decay/2,
            # kappa_dot[k >= 1] = decay^(k-1) (decay^2 - 1)/2, i.e. -(g[t-1] + decay z[t] - z[t+1]) / 2
            rows = torch.empty_like(z)
            rows[:, :-1] = z[:, 1:]
            rows[:, -1] = z_end
            rows.add_(z, alpha=-decay)
            rows[:, 1:] -= g[:, :-1]
            grad_times = public(rows.mul_(0.5))
        return grad_spikes, grad_times, grad_target, None


def spike_train_loss(
    spikes: torch.Tensor,
    times: Optional[torch.Tensor],
    target_spikes: torch.Tensor,
    decay: float = 0.9,
    reduction: str = "mean",
) -> torch.Tensor:
    """``sum_o sum_tau d_o[tau]^2``, ``d = kappa*S - kappa*S_target``, ``kappa[k] = decay^k``, batch mean.

    tau runs from 0 to infinity: after the window, d only decays, and its tail
    ``d[T-1]^2 decay^2 / (1 - decay^2)`` is added in closed form. Computed in O(T) by the
    recursion ``d[tau] = decay d[tau-1] + S[tau] - S_target[tau]`` (no truncated kernel).
    ``times`` [B, T, O] (or None) carries the spike-time derivative
    ``dL/dt_hat[t] = -sum_tau 2 d[tau] kappa_dot[tau - t]``, kappa_dot the central difference of
    kappa (nonzero from tau = t - 1). target_spikes [B, T, O].
    """
    _check_output(spikes)
    if target_spikes.shape != spikes.shape:
        raise InputError(f"target_spikes has shape {tuple(target_spikes.shape)}: expected {tuple(spikes.shape)}")
    _check_decay(decay)
    if times is not None and times.shape != spikes.shape:
        raise InputError(f"times has shape {tuple(times.shape)}: expected {tuple(spikes.shape)}")
    if times is not None and not times.requires_grad:
        times = None
    return _reduce(_SpikeTrainLoss.apply(spikes, times, target_spikes.to(spikes.dtype), float(decay)), reduction)


def first_spike_time_tensor(spikes: torch.Tensor, times: torch.Tensor) -> torch.Tensor:
    """First spike time of each neuron [B, O], differentiable in ``times``; T (constant) if silent."""
    steps = spikes.shape[1]
    first = first_spike_times(spikes.detach())
    fired = first < steps
    gathered = times.gather(1, first.clamp(max=steps - 1).unsqueeze(1)).squeeze(1)
    return torch.where(fired, gathered, torch.full_like(gathered, float(steps)))


def latency_loss(
    spikes: torch.Tensor, times: torch.Tensor, labels: torch.Tensor, beta: float = 1.0 / 6.0, reduction: str = "mean"
) -> torch.Tensor:
    """Cross-entropy of ``softmax_o(-beta * t_first_o)``, batch mean; silent outputs count as t = T."""
    _check_output(spikes)
    _check_labels(labels, spikes.shape[2])
    if labels.shape != (spikes.shape[0],):
        raise InputError(f"labels has shape {tuple(labels.shape)}: expected [{spikes.shape[0]}]")
    logits = -beta * first_spike_time_tensor(spikes, times)
    return _reduce(F.cross_entropy(logits, labels, reduction="none"), reduction)


def no_spike_count_term(
    spikes: torch.Tensor, labels: torch.Tensor, lambda_ns: float = 0.1, reduction: str = "mean", squared: bool = False
) -> torch.Tensor:
    """The no-spike count term for the label's neuron d, batch mean.

    The paper writes ``lambda_ns * (min(sum_t S_d[t], 1) - 1)^2``. Since the clipped count is 0
    or 1, ``lambda_ns * (1 - min(sum_t S_d[t], 1))`` has the same value; its derivative, the
    authors' code's gradient, is ``dL/dS_d[t] = -lambda_ns / B`` at every step of a sample whose
    label neuron stayed silent, half the squared form's. That is the default; ``squared=True``
    gives the squared form's gradient.
    """
    _check_output(spikes)
    _check_labels(labels, spikes.shape[2])
    if labels.shape != (spikes.shape[0],):
        raise InputError(f"labels has shape {tuple(labels.shape)}: expected [{spikes.shape[0]}]")
    counts = spikes.sum(dim=1).gather(1, labels.view(-1, 1)).squeeze(1)
    missing = 1.0 - counts.clamp(max=1.0)
    return _reduce(lambda_ns * (missing.pow(2) if squared else missing), reduction)


def no_spike_weight_penalty(net, out, p: float = 100.0, until_all_fired: bool = False) -> torch.Tensor:
    """The timing rule's no-spike penalty as a potential to add to the objective.

    Its gradient in each incoming weight of neuron j is ``-(p / fan_in) * f_j``, with f_j the
    fraction of the batch on which neuron j never fired: descending it raises the weights of
    silent neurons. Its value is not a loss; do not report it. With stacked trials each trial's
    fraction is over its own block of the batch.

    ``until_all_fired``: silence is counted up to and including the step at which the last output
    neuron of the (trial's) batch first fired, the whole window if one stayed silent: the window
    of the authors' code, which stops simulating a batch there. Each stacked trial has its own
    step, as in a run of its own, whatever steps the pass simulated.
    """
    total = None
    trials = getattr(out, "trials", 1)
    until = _steps_until_all_fired(out) if until_all_fired else None
    for layer, spikes in zip(net.layers, out.spikes):
        if until is None:
            silent = spikes.detach().sum(dim=1) == 0  # [K*B, N]
        else:
            silent = first_spike_times(spikes.detach()) >= until.view(-1, 1)
        silent = silent.to(layer.weight.dtype)
        if trials > 1:
            silent_fraction = silent.view(trials, -1, silent.shape[-1]).mean(dim=1)  # [K, N]
        else:
            silent_fraction = silent.mean(dim=0)  # [N]
        term = -(p / layer.in_features) * (silent_fraction.unsqueeze(-1) * layer.weight).sum()
        total = term if total is None else total + term
    return total


def _steps_until_all_fired(out) -> torch.Tensor:
    """Per sample [K*B]: the steps up to and including the one at which the last output of its
    trial's batch first fired (the simulated steps where one never fired)."""
    first = out.output_summary()[1]  # [K*B, O], the simulated steps where never fired; kept for the metrics
    per_trial = (first.view(out.trials, -1).amax(dim=1) + 1).clamp(max=out.output_spikes.shape[1])  # [K]
    return per_trial.repeat_interleave(first.shape[0] // out.trials)
