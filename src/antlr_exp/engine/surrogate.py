"""Surrogate derivatives sigma(V) standing in for dS/dV of the threshold function.

Each takes ``u = V - theta`` and the two shape parameters ``a`` (height) and ``b`` (sharpness).
"""

from __future__ import annotations

from typing import Callable

import torch


def exponential(u: torch.Tensor, a: float, b: float) -> torch.Tensor:
    """``a * exp(-b |u|)``: the paper's choice (a = 1, b = 3)."""
    return torch.exp(u.abs() * -b).mul_(a)


def fast_sigmoid(u: torch.Tensor, a: float, b: float) -> torch.Tensor:
    """``a / (1 + b |u|)^2`` (SuperSpike)."""
    return (u.abs() * b).add_(1.0).pow_(-2).mul_(a)


def triangle(u: torch.Tensor, a: float, b: float) -> torch.Tensor:
    """``a * max(0, 1 - b |u|)``."""
    return (1.0 - u.abs() * b).clamp_(min=0.0).mul_(a)


def sigmoid(u: torch.Tensor, a: float, b: float) -> torch.Tensor:
    """``a * 4 s(b u) (1 - s(b u))`` with s the logistic function (peak a at u = 0)."""
    s = torch.sigmoid(u * b)
    return s.mul_(1.0 - s).mul_(4.0 * a)


SURROGATES: dict[str, Callable[[torch.Tensor, float, float], torch.Tensor]] = {
    "exponential": exponential,
    "fast_sigmoid": fast_sigmoid,
    "triangle": triangle,
    "sigmoid": sigmoid,
}
