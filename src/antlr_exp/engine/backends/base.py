"""The interface every kernel backend implements, and what each declares it can do.

A backend runs a layer's time loops: the LIF forward (:meth:`Backend.run_layer`,
:meth:`Backend.simulate_lif`) and a rule's adjoint (:meth:`Backend.adjoint`), plus the scan of
input spikes into dense rows or events. Where a backend has ``capabilities.has_fused``, the
network also trains through :meth:`Backend.fused_adjoint` (all layers as one autograd node).
Every backend computes the numbers of the plain PyTorch functions of :mod:`antlr_exp.engine.lif`
(the tests compare them).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import NamedTuple, Optional

import torch

from ..lif import LIFState
from ..neuron import NeuronParams
from ..rules import RuleConfig
from ..synapses import SynapticInput

#: surrogate shapes as numbered in the kernels (csrc/constants.h, the Triton ``_surrogate``)
SURROGATE_CODES = {"exponential": 0, "fast_sigmoid": 1, "triangle": 2, "sigmoid": 3}


@dataclass(frozen=True)
class Capabilities:
    """What a backend can do.

    ``devices``: the tensor device types it runs on (``("any",)``: all). ``has_fused``: a fused
    network backward (:meth:`Backend.fused_adjoint`). ``has_events``: an event-driven forward
    from sparse input, and output spikes as events for the next layer (the fused backward then
    sums the first layer's weight gradient from the input events). ``checks_input``: its scan of
    a layer's input (:meth:`Backend.flatten_input`) refuses NaN and inf. ``supports_float64``:
    float64 as well as float32.
    """

    devices: tuple
    has_fused: bool = False
    has_events: bool = False
    checks_input: bool = False
    supports_float64: bool = True

    def runs_on(self, device_type: str) -> bool:
        return "any" in self.devices or device_type in self.devices


class RuleConstants(NamedTuple):
    """The scalars of a rule's adjoint, in the order the kernels take them (after the tensors)."""

    alpha_I: float
    alpha_V: float
    theta: float
    act_weight: float
    tim_weight: float
    vstar_min: float
    surrogate_kind: int
    surrogate_a: float
    surrogate_b: float
    single_spike: bool
    kernel_scale: float  # beta_I * beta_V


def rule_constants(params: NeuronParams, rule: RuleConfig) -> RuleConstants:
    """The adjoint's scalars for resolved ``params`` and ``rule``."""
    return RuleConstants(
        float(params.alpha_I),
        float(params.alpha_V),
        float(params.theta),
        rule.act_weight,
        rule.tim_weight,
        float(params.vstar_min),
        SURROGATE_CODES[params.surrogate],
        float(params.surrogate_a),
        float(params.surrogate_b),
        bool(params.single_spike),
        float(params.beta_I) * float(params.beta_V),
    )


class FusedLayerInputs(NamedTuple):
    """One layer's tensors for :meth:`Backend.fused_adjoint`, time-major [T, M] with M = B * N
    (``empty`` stands for a tensor that is not given).

    ``grad_s``, ``grad_t``: gradients a loss put on this layer's spikes and times; ``g_up``,
    ``h_up``, ``w_up``: G, H and the weight of the layer above (empty at the output layer);
    ``row_offsets``, ``cols``, ``values``: the input events when the weight gradient is summed
    from them (else empty); ``trials``, ``batch_per_trial``, ``n_in``: the layer's layout.
    """

    potential: torch.Tensor
    spikes: torch.Tensor
    grad_s: torch.Tensor
    grad_t: torch.Tensor
    g_up: torch.Tensor
    h_up: torch.Tensor
    w_up: torch.Tensor
    row_offsets: torch.Tensor
    cols: torch.Tensor
    values: torch.Tensor
    trials: int
    batch_per_trial: int
    n_in: int


class Backend(ABC):
    """A kernel backend. Get one from :func:`antlr_exp.engine.backends.select`, never directly."""

    #: ``cpp``, ``triton`` or ``python``: what ``summary.json`` records as ``kernels``
    name: str
    capabilities: Capabilities

    @abstractmethod
    def flatten_input(self, spikes_in: torch.Tensor) -> SynapticInput:
        """Spikes [B, T, N_in] as dense rows or events (see :func:`~antlr_exp.engine.synapses.flatten_input`)."""

    @abstractmethod
    def transpose_gradient(self, grad_t: torch.Tensor) -> torch.Tensor:
        """An event path's weight gradient [N_in, N_out] ([K, N_in, N_out]) as [N_out, N_in] ([K, ...])."""

    @abstractmethod
    def simulate_lif(
        self,
        drive: torch.Tensor,
        bias: torch.Tensor,
        params: NeuronParams,
        state: Optional[LIFState] = None,
        keep_current: bool = False,
    ) -> tuple:
        """:func:`antlr_exp.engine.lif.simulate_lif`'s arguments and five results."""

    @abstractmethod
    def run_layer(
        self,
        inp: SynapticInput,
        weight,
        bias,
        params: NeuronParams,
        steps: int,
        batch: int,
        state: Optional[LIFState] = None,
        keep_current: bool = False,
        emit_events: bool = False,
        store_times: bool = True,
    ) -> tuple:
        """A layer's synaptic input and LIF recurrence: :meth:`simulate_lif`'s five results and,
        sixth, the output spikes as a :class:`SynapticInput` for the next layer where ``emit_events``
        and the backend has events (else None). ``store_times=False`` lets a backend leave out the
        spike times (then None)."""

    @abstractmethod
    def adjoint(
        self, grad_s, grad_t, potential, spikes, current, params: NeuronParams, rule: RuleConfig, want_h: bool
    ) -> tuple:
        """:func:`antlr_exp.engine.lif.adjoint`'s arguments and results."""

    def fused_adjoint(self, inputs: FusedLayerInputs, constants: RuleConstants, need_g: bool, want_h: bool):
        """One layer of the fused network backward: ``(G, H, lam_V sums, dW^T from events)``."""
        raise NotImplementedError(f"the {self.name} backend has no fused backward (capabilities.has_fused is False)")

    def __repr__(self) -> str:
        return f"<{self.name} backend: {self.capabilities}>"
