"""Kept for one release: moved to :mod:`antlr_exp.engine.losses`."""

from .engine.losses import (  # noqa: F401
    LOSSES,
    check_rule_loss,
    count_loss,
    count_targets,
    exponential_filter,
    first_spike_time_tensor,
    label_spike_trains,
    latency_loss,
    no_spike_count_term,
    no_spike_weight_penalty,
    spike_train_loss,
)
