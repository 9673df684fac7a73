"""Spike encodings shared by the tasks: latency code for images, compact spike times <-> dense trains.

Compact form: one uint8 per input neuron holding the step of its single spike, or ``SILENT``
(255) when it never fires. A dense spike train is a float32 tensor of 0/1 with a time axis.
"""

from __future__ import annotations

import torch

from antlr_exp.errors import ConfigError

#: Marker for "this input never fires" in a uint8 spike-time tensor.
SILENT = 255

#: Largest pixel value of an 8-bit image.
PIXEL_MAX = 255


def latency_encode(pixels: torch.Tensor, t_max: int) -> torch.Tensor:
    """Latency-code 8-bit pixels: one spike per non-zero pixel, brighter pixels fire earlier.

    A pixel p in 1..255 (intensity x = p / 255) fires once at step
    ``floor((1 - x) * t_max) = ((255 - p) * t_max) // 255``, computed in integers so that no
    float rounding moves a spike (the authors' code truncates in float32; the two agree on all
    255 values for t_max = 24). p = 255 fires at step 0, p = 1 at step t_max - 1; p = 0 never
    fires and gets ``SILENT``. The whole tensor is encoded at once.

    Args:
        pixels: uint8 tensor of any shape ``[...]``, values 0..255.
        t_max: latest step scale (steps), 1..255; spikes fall in steps 0..t_max-1.

    Returns:
        uint8 tensor ``[...]`` (same shape): the spike step of every pixel, ``SILENT`` for p = 0.
    """
    if pixels.dtype != torch.uint8:
        raise ConfigError(f"latency_encode needs uint8 pixels, got dtype {pixels.dtype}")
    if isinstance(t_max, bool) or not isinstance(t_max, int) or not 1 <= t_max <= PIXEL_MAX:
        raise ConfigError(f"t_max={t_max!r} is invalid; expected an integer in 1..{PIXEL_MAX}")
    wide = pixels.to(torch.int32)
    steps = ((PIXEL_MAX - wide) * t_max) // PIXEL_MAX
    return torch.where(wide > 0, steps, SILENT).to(torch.uint8)


def spike_times_to_dense(spike_times: torch.Tensor, num_steps: int) -> torch.Tensor:
    """Expand compact spike times into a dense 0/1 spike train.

    Args:
        spike_times: uint8 tensor ``[..., D]``: the step of each neuron's single spike, or
            ``SILENT``. Steps must be below ``num_steps`` (checked by the caller's encoder).
        num_steps: T, the number of time steps.

    Returns:
        float32 tensor ``[..., T, D]`` with out[..., t, d] = 1 exactly when neuron d fires at t.
    """
    *leading, num_neurons = spike_times.shape
    flat = spike_times.reshape(-1, num_neurons)
    dense = torch.zeros(flat.shape[0], num_steps, num_neurons)
    sample, neuron = (flat != SILENT).nonzero(as_tuple=True)
    dense[sample, flat[sample, neuron].to(torch.int64), neuron] = 1.0
    return dense.reshape(*leading, num_steps, num_neurons)
