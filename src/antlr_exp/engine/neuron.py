"""Neuron parameters and the kernels derived from them.

The neuron is the discrete-time current-based LIF of the paper (eqs. 1-3), with a
spike resetting both the membrane potential V and the synaptic current I::

    I[t] = alpha_I (1 - S[t-1]) I[t-1] + beta_I * sum_i w_i S_i[t]
    V[t] = alpha_V (1 - S[t-1]) V[t-1] + beta_V I[t] + beta_bias b
    S[t] = 1 if V[t] >= theta else 0

Its SRM form uses the kernel ``eps[k] = beta_I beta_V sum_{m=0..k} alpha_I^m alpha_V^(k-m)``.
Times are in steps throughout.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Union

import torch

from ..errors import ConfigError
from .surrogate import SURROGATES

Scale = Union[float, str]


@dataclass(frozen=True)
class NeuronParams:
    """Parameters shared by every neuron of a network.

    ``beta_V`` and ``beta_bias`` may be ``"auto"``: both become ``1 / max_k eps_unit[k]`` over the
    window (k = 0..T-1), where ``eps_unit`` is the kernel with ``beta_V = 1``. With it, one input
    spike of weight 1 raises V by at most 1 (the authors' code does the same over its window).
    """

    alpha_I: float = 0.99
    alpha_V: float = 0.99
    beta_I: float = 1.0
    beta_V: Scale = "auto"
    beta_bias: Scale = "auto"
    theta: float = 1.0
    single_spike: bool = False
    surrogate: str = "exponential"
    surrogate_a: float = 1.0
    surrogate_b: float = 3.0
    vstar_min: float = 0.01

    def __post_init__(self) -> None:
        for name in ("alpha_I", "alpha_V"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not (0.0 <= value <= 1.0):
                raise ConfigError(f"neuron.{name}={value!r}: a decay factor must be a number in [0, 1]")
        for name in ("beta_I", "theta", "vstar_min", "surrogate_b"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
                raise ConfigError(f"neuron.{name}={value!r}: must be a finite number > 0")
        if (
            not isinstance(self.surrogate_a, (int, float))
            or not math.isfinite(self.surrogate_a)
            or self.surrogate_a < 0
        ):
            raise ConfigError(f"neuron.surrogate_a={self.surrogate_a!r}: must be a finite number >= 0")
        for name in ("beta_V", "beta_bias"):
            value = getattr(self, name)
            if isinstance(value, str):
                if value != "auto":
                    raise ConfigError(f"neuron.{name}={value!r}: accepted are 'auto' or a number > 0")
            elif not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
                raise ConfigError(f"neuron.{name}={value!r}: accepted are 'auto' or a number > 0")
        if self.surrogate not in SURROGATES:
            raise ConfigError(f"neuron.surrogate={self.surrogate!r}: accepted are {', '.join(sorted(SURROGATES))}")

    def resolve(self, num_steps: int) -> "NeuronParams":
        """Return a copy with ``"auto"`` scales replaced by numbers for a window of ``num_steps``."""
        if num_steps <= 0:
            raise ConfigError(f"num_steps={num_steps!r}: must be a positive number of steps")
        auto = 1.0 / float(unit_kernel(self.alpha_I, self.alpha_V, num_steps, torch.float64).max())
        auto = auto / self.beta_I
        beta_V = auto if self.beta_V == "auto" else float(self.beta_V)
        beta_bias = auto * self.beta_I if self.beta_bias == "auto" else float(self.beta_bias)
        return replace(self, beta_V=beta_V, beta_bias=beta_bias)


def unit_kernel(alpha_I: float, alpha_V: float, length: int, dtype=torch.float64) -> torch.Tensor:
    """``sum_{m=0..k} alpha_I^m alpha_V^(k-m)`` for k = 0..length-1, shape [length]."""
    out = torch.empty(length, dtype=torch.float64)
    # Two-stage filter impulse response: x_I[k] = alpha_I^k, x_V[k] = alpha_V x_V[k-1] + x_I[k].
    current, value = 1.0, 0.0
    for idx in range(length):
        value = alpha_V * value + current
        out[idx] = value
        current *= alpha_I
    return out.to(dtype)


def eps_kernel(params: NeuronParams, length: int, dtype=torch.float64) -> torch.Tensor:
    """The SRM kernel eps[k], k = 0..length-1, shape [length]. ``params`` must be resolved."""
    _require_resolved(params)
    return (
        unit_kernel(params.alpha_I, params.alpha_V, length, torch.float64).mul(params.beta_I * params.beta_V).to(dtype)
    )


def eps_time_derivative(params: NeuronParams, length: int, dtype=torch.float64) -> torch.Tensor:
    """Central difference of eps in its argument, ``(eps[k+1] - eps[k-1]) / 2`` (eps[-1] = 0).

    Moving a presynaptic spike from step t to t + d changes V[t_a] by about
    ``-d * eps_dot[t_a - t]``; the timing rule uses ``dV[t_a]/dt_hat = -eps_dot[t_a - t]``.
    Shape [length].
    """
    eps = eps_kernel(params, length + 1, torch.float64)
    before = torch.cat([torch.zeros(1, dtype=torch.float64), eps[: length - 1]])
    return ((eps[1 : length + 1] - before) / 2).to(dtype)


def _require_resolved(params: NeuronParams) -> None:
    if isinstance(params.beta_V, str) or isinstance(params.beta_bias, str):
        raise ConfigError("NeuronParams has 'auto' scales; call params.resolve(num_steps) first")
