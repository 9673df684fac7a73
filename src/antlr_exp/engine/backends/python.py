"""The plain PyTorch backend: the functions of :mod:`antlr_exp.engine.lif` as they are.

It runs on every device and is the twin the kernels are checked against. Its time loops are
one PyTorch call per step, so on CPU it is several times slower than the C++ backend.
"""

from __future__ import annotations

from typing import Optional

from .. import lif, synapses
from ..lif import LIFState
from ..neuron import NeuronParams
from ..rules import RuleConfig
from .base import Backend, Capabilities


class PythonBackend(Backend):
    name = "python"
    capabilities = Capabilities(devices=("any",))

    def flatten_input(self, spikes_in):
        return synapses.flatten_input(spikes_in)

    def transpose_gradient(self, grad_t):
        return synapses.plain_transpose(grad_t)

    def simulate_lif(
        self, drive, bias, params: NeuronParams, state: Optional[LIFState] = None, keep_current: bool = False
    ):
        return lif.simulate_lif(drive, bias, params, state, keep_current)

    def run_layer(
        self,
        inp,
        weight,
        bias,
        params: NeuronParams,
        steps: int,
        batch: int,
        state: Optional[LIFState] = None,
        keep_current: bool = False,
        emit_events: bool = False,
        store_times: bool = True,
    ):
        drive = synapses.synaptic_input(inp, weight, steps).view(steps, batch, -1)
        return (*self.simulate_lif(drive, bias, params, state, keep_current), None)

    def adjoint(self, grad_s, grad_t, potential, spikes, current, params: NeuronParams, rule: RuleConfig, want_h: bool):
        return lif.adjoint(grad_s, grad_t, potential, spikes, current, params, rule, want_h)
