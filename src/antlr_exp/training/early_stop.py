"""The training early stop: whether a run may stop simulating a step once every output of every
sample has fired, and whether a whole-window pass would have stopped before its end."""

from __future__ import annotations

import torch
from omegaconf import DictConfig

from ..engine.spikes import NetworkOutput, first_spike_times

#: steps simulated at a time by the training early stop
EARLY_STOP_CHUNK = 10


class DeviceFlag:
    """A boolean computed on the device, on its way to the host: on a GPU it is copied to pinned
    memory behind the kernels that compute it, and :meth:`get` waits for those kernels only, not
    for the ones queued after them (on CPU it is there at once)."""

    def __init__(self, value: torch.Tensor):
        self.event = None
        if value.device.type == "cuda":
            self.host = torch.empty((), dtype=torch.bool, pin_memory=True)
            self.host.copy_(value, non_blocking=True)
            self.event = torch.cuda.Event()
            self.event.record()
        else:
            self.host = value

    def get(self) -> bool:
        if self.event is not None:
            self.event.synchronize()
        return bool(self.host)


def stop_flag(out: NetworkOutput) -> DeviceFlag:
    """:func:`would_stop_early` as a :class:`DeviceFlag`, read when the next step needs it."""
    # a silent output's first spike time is the window's length, so it never stops early
    last_first = first_spike_times(out.output_spikes.detach()).max()
    return DeviceFlag((last_first // EARLY_STOP_CHUNK + 1) * EARLY_STOP_CHUNK < out.num_steps)


def would_stop_early(out: NetworkOutput) -> bool:
    """Whether a whole-window pass would have stopped at a chunk before the end: every output of
    every sample fired before the last chunk."""
    return stop_flag(out).get()


def train_early_stop(cfg: DictConfig) -> bool:
    """Whether training stops simulating once every output of every sample has fired: exact for
    the latency loss (with or without the no-spike count term), whose gradient is 0 after every
    output's first spike; not with the timing rule's no-spike penalty counted over the whole
    window (``method.penalty_window=full``), which needs the whole window's silence."""
    if not cfg.trainer.get("train_early_stop", False) or cfg.loss.name != "latency":
        return False
    if cfg.method.get("no_spike_penalty") and cfg.method.get("penalty_window", "full") == "full":
        return False
    return True
