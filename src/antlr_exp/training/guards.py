"""What stops a run before it saves something bad: a non-finite loss, weight or Adam moment
(NonFiniteError, naming the step and the last good checkpoint), and a stop signal (``last.pt``
saved at the step reached, then StopSignal).

Every training step records its loss and the sum of its weights on the device
(:class:`StepValues`), without the host waiting for them; they are read before anything is
saved (at evaluation points, a stop signal and the end), and the first step at which either was
inf or NaN is named.

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


class StepValues:
    """Each training step's loss and sum of weights since the last read, kept where they were
    computed: :meth:`add` copies them into a row of a device buffer (no host read), :meth:`first_bad`
    reads them all in one copy."""

    ROWS = 1024  # rows per buffer

    def __init__(self):
        self.buffers: list = []
        self.steps: list = []  # the optimizer step of each row

    def add(self, step: int, loss: torch.Tensor, weight_sum: torch.Tensor) -> None:
        row = len(self.steps) % self.ROWS
        if row == 0:
            self.buffers.append(torch.empty(self.ROWS, 2, dtype=torch.float64, device=loss.device))
        self.buffers[-1][row, 0].copy_(loss.detach())
        self.buffers[-1][row, 1].copy_(weight_sum.detach())
        self.steps.append(step)

    def first_bad(self):
        """``(step, loss, loss_is_bad)`` of the first recorded step whose loss or weight sum is inf
        or NaN, or None; then forgets every row."""
        if not self.steps:
            return None
        values = torch.cat(self.buffers)[: len(self.steps)].cpu()
        steps, self.buffers, self.steps = self.steps, [], []
        bad = ~torch.isfinite(values)
        rows = bad.any(dim=1).nonzero()
        if not rows.numel():
            return None
        row = int(rows[0, 0])
        return steps[row], float(values[row, 0]), bool(bad[row, 0])


class RunGuards:
    """The trainer's checks for non-finite values, and its stop on a signal."""

    def _check_weights(self, step: int) -> None:
        """NonFiniteError when a weight is inf or NaN (named as made at optimizer step ``step``)."""
        for name, parameter in self.net.named_parameters():
            self._check_finite(f"the weight {name}", parameter, step)

    def _check_recorded_steps(self) -> None:
        """NonFiniteError for the first step since the last check whose training loss or sum of
        weights was inf or NaN. A weight that became inf or NaN stays so under Adam, so it is
        found and named among today's weights; where none is, the sum of finite huge weights
        overflowed, and the run goes on."""
        found = self.step_values.first_bad()
        if found is None:
            return
        step, loss, loss_is_bad = found
        if loss_is_bad:
            self._raise_non_finite("the training loss", loss, step)
        self._check_weights(step)

    def _check_saveable(self) -> None:
        """Before last.pt is written: every step since the last check, its weights and Adam's
        moments must be finite."""
        self._check_recorded_steps()
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
            self._raise_non_finite(what, value.detach()[~torch.isfinite(value.detach())].flatten()[0].item(), step)

    def _raise_non_finite(self, what: str, bad: float, step: int) -> None:
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
