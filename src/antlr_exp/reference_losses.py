"""An oracle, not used for training: the spike-train loss by a long convolution, as the library
computed it before its O(T) form (:func:`antlr_exp.losses.spike_train_loss`).

The independent check of that loss in the tests and the slow row of the benchmark
``python -m benchmarks.bench --spike-train-loss``: the kernel kappa[k] = decay^k is written out
until it falls below ``cutoff`` and convolved with the spike trains (conv1d); the spike-time
derivative comes from autograd through a second convolution with kappa_dot, the central
difference of kappa. With a small cutoff it agrees with the infinite-tail loss to rounding.
"""

import math

import torch
import torch.nn.functional as F


def exponential_kernel(decay: float, dtype=torch.float64, cutoff: float = 1e-6):
    """kappa [K] for k = 0..K-1 and kappa_dot [K+1] for k = -1..K-1 (kappa = 0 for k < 0)."""
    length = int(math.ceil(math.log(cutoff) / math.log(decay))) + 1
    kappa = torch.pow(torch.tensor(decay, dtype=torch.float64), torch.arange(length, dtype=torch.float64))
    padded = torch.cat([kappa.new_zeros(2), kappa, kappa.new_zeros(1)])  # k = -2..K
    kappa_dot = (padded[2:] - padded[:-2]) / 2  # k = -1..K-1
    return kappa.to(dtype), kappa_dot.to(dtype)


def causal_filter(signal: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """``out[tau] = sum_t signal[t] kernel[tau - t]``, tau = 0..T+K-2; [B, T, O] -> [B, T+K-1, O]."""
    batch, steps, outputs = signal.shape
    x = signal.permute(0, 2, 1).reshape(batch * outputs, 1, steps)
    out = F.conv1d(x, kernel.flip(0).view(1, 1, -1), padding=kernel.numel() - 1)
    return out.view(batch, outputs, -1).permute(0, 2, 1)


def conv_spike_train_loss(spikes, times, target, decay=0.9, cutoff=1e-6):
    """``sum_{o,tau} (kappa*S - kappa*S_target)^2``, batch mean; tau runs until kappa < cutoff."""
    kappa, kappa_dot = exponential_kernel(decay, spikes.dtype, cutoff)
    filtered = causal_filter(spikes, kappa)
    if times is not None and times.requires_grad:
        shift = times - times.detach()  # zero value, unit derivative
        filtered = filtered - causal_filter(shift, kappa_dot)[:, 1:]  # kappa_dot starts at k = -1
    difference = filtered - causal_filter(target.to(spikes.dtype), kappa)
    return difference.pow(2).sum(dim=(1, 2)).mean()
