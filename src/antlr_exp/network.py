"""Kept for one release: moved to :mod:`antlr_exp.engine.network` (the network),
:mod:`antlr_exp.engine.spikes` (its output, decisions, counts) and :mod:`antlr_exp.engine.fused`."""

from .engine.fused import FusedNetworkFunction, HiddenTimes  # noqa: F401
from .engine.network import SpikingNetwork  # noqa: F401
from .engine.spikes import (  # noqa: F401
    DECISIONS,
    NetworkOutput,
    decide,
    decision_steps,
    first_spike_times,
    spike_counts,
)
