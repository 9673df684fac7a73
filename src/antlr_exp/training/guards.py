"""What stops a run before it steps on or saves something bad: a non-finite loss, weight or Adam
moment (NonFiniteError, naming the step and the last good checkpoint), and a stop signal
(``last.pt`` saved at the step reached, then StopSignal).

:class:`RunGuards` is a part of :class:`~antlr_exp.training.trainer.Trainer` and reads its
attributes (``net``, ``optimizer``, ``state``, ``run_dir``, ...).
"""

from __future__ import annotations

import signal
import time

import torch

from ..errors import NonFiniteError, StopSignal
from . import checkpoint as ckpt
from . import stopping


def signal_name(signum: int) -> str:
    return signal.Signals(signum).name


class RunGuards:
    """The trainer's checks for non-finite values, and its stop on a signal."""

    def _check_weights(self, step: int) -> None:
        """NonFiniteError when a weight is inf or NaN at optimizer step ``step``."""
        for name, parameter in self.net.named_parameters():
            self._check_finite(f"the weight {name}", parameter, step)

    def _check_saveable(self) -> None:
        """Before last.pt is written: its weights and Adam's moments must be finite."""
        self._check_weights(self.state.step)
        names = {id(p): name for name, p in self.net.named_parameters()}
        for parameter, moments in self.optimizer.state.items():
            for key, value in moments.items():
                if key != "step" and torch.is_tensor(value):
                    self._check_finite(
                        f"Adam's {key} of the weight {names.get(id(parameter), '?')}", value, self.state.step
                    )

    def _last_checkpoint_note(self) -> str:
        last = ckpt.checkpoint_dir(self.run_dir) / ckpt.LAST
        if last.is_file() and self.saved_step is not None:
            return f"the last good checkpoint is {last} (step {self.saved_step})"
        return "no checkpoint was written before"

    def _check_finite(self, what: str, value: torch.Tensor, step: int) -> None:
        """Stop before a non-finite loss or weight (at optimizer step ``step``) is stepped on or
        saved (NonFiniteError)."""
        if not bool(torch.isfinite(value.detach()).all()):
            bad = value.detach()[~torch.isfinite(value.detach())].flatten()[0].item()
            # Adam's step is about lr whatever the gradients' scale: a smaller lr is the remedy; clipping
            # helps only where it is off
            clip = (
                " or set optimizer.grad_clip_value"
                if self.grad_clip_value is None
                else f" (the gradients are already clipped to optimizer.grad_clip_value={self.grad_clip_value})"
            )
            raise NonFiniteError(
                f"{what} became {bad} at step {step}; the run stopped without saving it and "
                f"{self._last_checkpoint_note()}; try a smaller optimizer.lr (now {self.cfg.optimizer.lr}){clip}"
            )

    def _stop_on_signal(self, started: float) -> None:
        """A stop signal arrived: save ``last.pt`` at this step and raise StopSignal."""
        elapsed = time.perf_counter() - started
        for state in self.states:
            state.train_time_s += elapsed
        self._check_saveable()
        self._save_last()
        signum = stopping.requested()
        raise StopSignal(
            f"stopped by {signal_name(signum)} at step {self.state.step}; the checkpoint "
            f"{ckpt.checkpoint_dir(self.run_dir) / ckpt.LAST} holds this step",
            signum,
        )
