"""Kept for one release: moved to :mod:`antlr_exp.engine.layer` (the autograd Function and
module), :mod:`antlr_exp.engine.lif` (the time loops), :mod:`antlr_exp.engine.synapses` (the
synaptic input) and :mod:`antlr_exp.engine.rules`. ``simulate_lif``, ``run_layer`` and
``adjoint`` here run on the backend that :func:`antlr_exp.engine.backends.select` gives for
their tensors' device, as they did before."""

from .engine.backends import select
from .engine.layer import SpikingLinear, SpikingLinearFunction  # noqa: F401
from .engine.lif import (  # noqa: F401
    LIFState,
    allowed_mask,
    dv_from_rule,
    initial_state,
    surrogate_derivative,
    timing_kernel_sum,
)
from .engine.rules import RULES, RuleConfig  # noqa: F401
from .engine.synapses import (  # noqa: F401
    SPARSE_DENSITY,
    SynapticInput,
    bias_rows,
    offset_for_trials,
    raise_non_finite,
    stacked_weight_t,
    synaptic_input,
    weight_gradient,
)


def simulate_lif(drive, bias, params, state=None, keep_current=False):
    """See :meth:`antlr_exp.engine.backends.base.Backend.simulate_lif`."""
    return select(drive.device).simulate_lif(drive, bias, params, state, keep_current)


def run_layer(
    inp, weight, bias, params, steps, batch, state=None, keep_current=False, emit_events=False, store_times=True
):
    """See :meth:`antlr_exp.engine.backends.base.Backend.run_layer`."""
    return select(weight.device).run_layer(
        inp, weight, bias, params, steps, batch, state, keep_current, emit_events, store_times
    )


def adjoint(grad_s, grad_t, potential, spikes, current, params, rule, want_h):
    """See :meth:`antlr_exp.engine.backends.base.Backend.adjoint`."""
    return select(potential.device).adjoint(grad_s, grad_t, potential, spikes, current, params, rule, want_h)
