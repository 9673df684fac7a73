"""Kept for one release: moved to :mod:`antlr_exp.engine.neuron`."""

from .engine.neuron import NeuronParams, Scale, eps_kernel, eps_time_derivative, unit_kernel  # noqa: F401
