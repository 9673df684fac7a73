"""A stack of spiking layers: :class:`SpikingNetwork` and its forward paths.

A forward takes one of three paths: layer by layer (each layer its own autograd node), fused
(all layers one node, where the backend has a fused backward; :mod:`~antlr_exp.engine.fused`),
or chunk by chunk until every output has fired (the early stop). All give the same spikes and
the same gradients.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Optional

import torch
from torch import nn

from ..errors import ConfigError, InputError
from . import checks
from .backends import Backend, requested, select
from .fused import FusedNetworkFunction, HiddenTimes
from .layer import SpikingLinear
from .lif import LIFState
from .neuron import NeuronParams
from .rules import RuleConfig
from .spikes import NetworkOutput
from .synapses import raise_non_finite


class SpikingNetwork(nn.Module):
    """Fully connected SNN, e.g. ``sizes=[784, 800, 10]`` (input, hidden..., output).

    Input spikes are [B, T, N_in] or event frames [B, T, C, H, W] (flattened to C*H*W).

    ``trials=K > 1`` stacks K independent networks (weights [K, N_out, N_in]) that train
    together: the input is then [K, B, T, ...] (one batch per trial) and the outputs hold K*B
    samples, trial-major. Losses that are batch means, taken over the K*B samples and multiplied
    by K, are the sum of the K trials' losses, so each trial gets its own gradient.

    ``kernels``: auto | cpp | triton | python, or None for the environment's default (see :func:`select`);
    :meth:`backend` says which backend runs on a device.
    """

    def __init__(
        self,
        sizes: Sequence[int],
        num_steps: int,
        neuron: Optional[NeuronParams] = None,
        rule: str = "antlr",
        lambda_act: float = 1.0,
        lambda_tim: float = 1.0,
        trials: int = 1,
        kernels: Optional[str] = None,
    ):
        super().__init__()
        sizes = list(sizes)
        if len(sizes) < 2 or not all(isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in sizes):
            raise ConfigError(f"sizes={sizes!r}: need at least two positive integers (input, ..., output)")
        if not isinstance(num_steps, int) or num_steps <= 0:
            raise ConfigError(f"num_steps={num_steps!r}: must be a positive integer")
        self.sizes = sizes
        self.num_steps = num_steps
        self.params = (neuron or NeuronParams()).resolve(num_steps)
        if not isinstance(trials, int) or isinstance(trials, bool) or trials < 1:
            raise ConfigError(f"trials={trials!r}: must be a positive integer")
        self.trials = trials
        self.rule = RuleConfig(rule, lambda_act, lambda_tim)
        self.kernels = kernels
        requested(kernels)  # a bad setting fails here, not at the first step
        self.layers = nn.ModuleList(
            SpikingLinear(n_in, n_out, self.params, self.rule, trials, kernels)
            for n_in, n_out in zip(sizes[:-1], sizes[1:])
        )

    #: train through :class:`FusedNetworkFunction` where it applies (see :meth:`uses_fused_backward`)
    fused: bool = True

    def backend(self, device=None) -> Backend:
        """The kernels that run this network on ``device`` (default: its parameters' device)."""
        return select(device if device is not None else self.layers[0].weight.device, self.kernels)

    def uses_fused_backward(self, flat: torch.Tensor, backend: Optional[Backend] = None) -> bool:
        """True where a training forward goes through :class:`FusedNetworkFunction`: on a backend
        with a fused backward (C++, Triton), for the SRM-based rules, with autograd on and an input that
        needs no gradient. Elsewhere each layer is its own autograd node; both give the same
        gradients."""
        return (
            self.fused
            and self.rule.rule != "activation_rnn"
            and torch.is_grad_enabled()
            and not flat.requires_grad
            and any(p.requires_grad for p in self.parameters())
            and (backend or self.backend(flat.device)).capabilities.has_fused
        )

    def set_rule(self, rule: str, lambda_act: float = 1.0, lambda_tim: float = 1.0) -> None:
        """Switch the gradient rule of every layer (the forward pass is the same for all rules)."""
        self.rule = RuleConfig(rule, lambda_act, lambda_tim)
        for layer in self.layers:
            layer.rule = self.rule

    def _check_input(self, x: torch.Tensor, finite: bool = True) -> torch.Tensor:
        """The input as [B, T, N_in] floats (see :func:`flat_input`)."""
        return flat_input(x, self.sizes[0], self.num_steps, self.trials, self.layers[0].weight.dtype, finite)

    @staticmethod
    def _check_finite(flat: torch.Tensor) -> None:
        check_finite_input(flat)

    def forward(self, x: torch.Tensor, early_stop: bool = False, chunk: int = 10) -> NetworkOutput:
        """Simulate the window.

        Args:
            x: input spikes [B, T, N_in] or [B, T, C, H, W] ([K, B, T, ...] with trials=K).
            early_stop: stop once every output neuron of every sample has fired. With autograd
                off this is earliest-spike inference. With autograd on (training), the graph
                covers the simulated steps only, which is exact where the loss has no gradient
                after every output's first spike (the latency loss, with or without the no-spike
                count term): every dL/dV after that step is 0, so the backward through the
                shorter window gives the same gradients. Steps are run in chunks of ``chunk``
                across all layers.
        """
        flat = self._check_input(x, finite=False)
        backend = self.backend(flat.device)
        fused = not early_stop and self.uses_fused_backward(flat, backend)
        if not (fused and backend.capabilities.checks_input):  # else the backend's scan of the input checks
            self._check_finite(flat)
        if fused:
            return self._fused_forward(flat, backend)
        if early_stop:
            if torch.is_grad_enabled() and any(p.requires_grad for p in self.parameters()):
                return self._train_until_all_fired(flat, chunk, backend)
            return self._simulate_until_all_fired(flat, chunk, backend)
        spikes, times = [], []
        s, t, events = flat, None, None
        last = len(self.layers) - 1
        for index, layer in enumerate(self.layers):
            s, t, events = layer(s, t, events, emit_events=index < last, backend=backend)
            spikes.append(s)
            times.append(t)
        return NetworkOutput(spikes, times, flat.shape[1], self.trials)

    @torch.no_grad()
    def _chunks_until_all_fired(self, flat: torch.Tensor, chunk: int, backend: Backend, keep_current: bool = False):
        """Simulate chunk by chunk until every output neuron of every sample has fired.

        Returns ``(steps simulated, per layer: list of the simulate() results of each chunk)``.
        """
        states: list[Optional[LIFState]] = [None] * len(self.layers)
        pieces: list[list[tuple]] = [[] for _ in self.layers]
        fired = None
        steps_done = 0
        for start in range(0, flat.shape[1], chunk):
            s = flat[:, start : start + chunk]
            for index, layer in enumerate(self.layers):
                result = layer.simulate(s, states[index], keep_current, backend)
                s, states[index] = result[0], result[1]
                pieces[index].append(result)
            steps_done = start + s.shape[1]
            out_fired = s.amax(dim=1) > 0
            fired = out_fired if fired is None else fired | out_fired
            if bool(fired.all()):
                break
        return steps_done, pieces

    @torch.no_grad()
    def _simulate_until_all_fired(self, flat: torch.Tensor, chunk: int, backend: Backend) -> NetworkOutput:
        steps_done, pieces = self._chunks_until_all_fired(flat, chunk, backend)
        spikes = [torch.cat([r[0] for r in p], dim=1) for p in pieces]
        step_index = torch.arange(steps_done, dtype=flat.dtype, device=flat.device).view(1, -1, 1)
        return NetworkOutput(spikes, [s * step_index for s in spikes], steps_done, self.trials)

    def _fused_forward(self, flat: torch.Tensor, backend: Backend, simulated: Optional[list] = None) -> NetworkOutput:
        dtype = self.layers[0].weight.dtype
        flat = flat.to(dtype) if flat.dtype != dtype else flat
        params = [p for layer in self.layers for p in (layer.weight, layer.bias)]
        outputs = FusedNetworkFunction.apply(flat, self, backend, simulated, *params)
        spikes, times = list(outputs[0::2]), list(outputs[1::2])
        return NetworkOutput(spikes, HiddenTimes(times[:-1], spikes[:-1], times[-1]), flat.shape[1], self.trials)

    def _train_until_all_fired(self, flat: torch.Tensor, chunk: int, backend: Backend) -> NetworkOutput:
        """The simulation runs once, chunk by chunk; each layer's graph node is then made from
        the recorded potentials and spikes of the simulated steps."""
        keep_current = self.rule.rule == "activation_rnn"
        steps_done, pieces = self._chunks_until_all_fired(flat, chunk, backend, keep_current)
        if self.uses_fused_backward(flat, backend):
            simulated = [
                (torch.cat([r[2] for r in chunks], dim=0), torch.cat([r[3] for r in chunks], dim=0))
                for chunks in pieces
            ]
            return self._fused_forward(flat[:, :steps_done], backend, simulated)
        spikes, times = [], []
        s, t = flat[:, :steps_done], None
        for layer, chunks in zip(self.layers, pieces):
            potential = torch.cat([r[2] for r in chunks], dim=0)
            spikes_tm = torch.cat([r[3] for r in chunks], dim=0)
            current = torch.cat([r[4] for r in chunks], dim=0) if keep_current else None
            s, t, _ = layer(s, t, simulated=(potential, spikes_tm, current), backend=backend)
            spikes.append(s)
            times.append(t)
        return NetworkOutput(spikes, times, steps_done, self.trials)


def flat_input(x, n_in: int, num_steps: int, trials: int, dtype, finite: bool = True) -> torch.Tensor:
    """The input of a network of ``n_in`` inputs, ``num_steps`` steps and ``trials`` stacked trials
    as [B, T, N_in] floats; shapes checked, and with ``finite`` that no entry is NaN or inf (the
    fused path leaves that to the C++ scan of the first layer's input). Raises InputError."""
    if not isinstance(x, torch.Tensor):
        raise InputError(f"input of type {type(x).__name__}: expected a torch.Tensor")
    shape = tuple(x.shape)
    if trials > 1:
        if x.dim() < 4 or x.shape[0] != trials:
            raise InputError(
                f"input has shape {shape}: a network of trials={trials} expects "
                f"[{trials}, batch, steps, ...] (one batch per trial)"
            )
        x = x.reshape(x.shape[0] * x.shape[1], *x.shape[2:])
    if x.dim() < 3:
        raise InputError(f"input has shape {shape}: expected [batch, steps, {n_in}] or [batch, steps, C, H, W]")
    if x.shape[0] == 0:
        raise InputError(f"input has shape {shape}: the batch is empty; expected at least one sample")
    flat = x.flatten(2) if x.dim() > 3 else x  # flatten: also where a frame has no pixels
    if flat.shape[2] != n_in:
        raise InputError(f"input has shape {shape}: {flat.shape[2]} input neurons per step, the network expects {n_in}")
    if flat.shape[1] != num_steps:
        raise InputError(
            f"input has shape {shape}: {flat.shape[1]} steps, the network was built for num_steps={num_steps}"
        )
    if not torch.is_floating_point(flat):
        flat = flat.to(dtype)
    if finite:
        check_finite_input(flat)
    return flat


def check_finite_input(flat: torch.Tensor) -> None:
    """Raise InputError when an entry of ``flat`` is NaN or inf. The sum is NaN or inf whenever an
    entry is (one cheap pass); the exact test runs only then, since a huge finite input could
    overflow the sum alone. Skipped inside :func:`~antlr_exp.engine.checks.values_checked`."""
    if not checks.reads_values():
        return
    if not bool(torch.isfinite(flat.sum())) and not bool(torch.isfinite(flat).all()):
        raise_non_finite(flat)
