"""A layer's synaptic input: presynaptic spikes as dense rows or as a list of events, and their
products with the weights (forward drive, weight gradient, gradient to the layer below).

Rows are time-major, ``row = t * B + b``. Trials: a layer of K stacked trials has ``weight``
[K, N_out, N_in] and a batch of K blocks of B samples (row ``k * B + b`` of each step is sample b
of trial k); dense input takes batched matrix products, and events a block-diagonal lookup (the
event of trial k at input i reads row ``k * N_in + i`` of the stacked ``W^T`` [K*N_in, N_out]).
"""

from __future__ import annotations

from typing import Callable, NamedTuple, Optional

import torch
import torch.nn.functional as F

from ..errors import InputError

#: Inputs whose fraction of nonzero entries is below this use the event-driven product.
SPARSE_DENSITY = 0.1


class SynapticInput(NamedTuple):
    """Presynaptic spikes as given to the matrix product, kept for the weight gradient.

    Rows are time-major, ``row = t * B + b``. Dense: ``dense`` [T*B, N_in]. Event-driven: one
    entry per nonzero, sorted by row, with CSR offsets ``row_offsets`` [T*B + 1].
    """

    dense: Optional[torch.Tensor]
    rows: Optional[torch.Tensor]
    cols: Optional[torch.Tensor]
    values: Optional[torch.Tensor]  # None when every nonzero is 1
    row_offsets: Optional[torch.Tensor]


def raise_non_finite(spikes: torch.Tensor):
    """The error for input spikes holding NaN or inf."""
    bad = "NaN" if bool(torch.isnan(spikes).any()) else "inf"
    raise InputError(f"input contains {bad} values: spikes must be finite (0/1)")


def flatten_input(spikes_in: torch.Tensor) -> SynapticInput:
    """Time-major form of spikes [B, T, N_in]: dense rows, or on CPU the list of events when
    sparse (fewer than ``SPARSE_DENSITY`` of the entries nonzero). On a GPU always dense rows: the
    product is dense there, and counting the events would make the host wait for the device. The
    C++ backend has its own scan."""
    batch, steps, n_in = spikes_in.shape
    time_major = spikes_in.transpose(0, 1)
    if spikes_in.device.type != "cpu":
        return dense_input(time_major)
    if int(torch.count_nonzero(spikes_in)) < SPARSE_DENSITY * spikes_in.numel():
        t, b, i = time_major.nonzero(as_tuple=True)  # lexicographic: sorted by row t*B + b
        values = time_major[t, b, i]
        if bool((values == 1).all()):
            values = None
        rows = t * batch + b
        counts = torch.bincount(rows, minlength=steps * batch)
        offsets = torch.zeros(steps * batch + 1, dtype=torch.int64, device=spikes_in.device)
        torch.cumsum(counts, 0, out=offsets[1:])
        return SynapticInput(None, rows, i, values, offsets)
    return dense_input(time_major)


def dense_input(time_major: torch.Tensor) -> SynapticInput:
    """Spikes [T, B, N_in] (time-major) as dense rows [T*B, N_in]."""
    steps, batch, n_in = time_major.shape
    return SynapticInput(time_major.reshape(steps * batch, n_in), None, None, None, None)


def _by_trial(rows: torch.Tensor, trials: int, steps: int) -> torch.Tensor:
    """Time-major rows [T*K*B, N] (row ``t*K*B + k*B + b``) as one block per trial, [K, T*B, N]."""
    n = rows.shape[-1]
    batch = rows.shape[0] // (steps * trials)
    return rows.view(steps, trials, batch, n).transpose(0, 1).reshape(trials, steps * batch, n)


def _from_trial(blocks: torch.Tensor, steps: int) -> torch.Tensor:
    """Inverse of :func:`_by_trial`: [K, T*B, N] -> [T*K*B, N]."""
    trials, rows, n = blocks.shape
    batch = rows // steps
    return blocks.view(trials, steps, batch, n).transpose(0, 1).reshape(steps * trials * batch, n)


def stacked_weight_t(weight: torch.Tensor) -> torch.Tensor:
    """``W^T`` as the event lookup reads it: [N_in, N_out], or [K*N_in, N_out] for stacked trials."""
    if weight.dim() == 2:
        return weight.t()
    return weight.transpose(1, 2).reshape(-1, weight.shape[1])


def offset_for_trials(inp: SynapticInput, trials: int, n_in: int, batch: int) -> SynapticInput:
    """Events of a K-trial batch (``batch`` = K*B rows per step) with each column moved to its
    trial's block, ``i -> k*N_in + i``. Dense input and a single trial are returned unchanged."""
    if trials == 1 or inp.dense is not None:
        return inp
    trial = torch.remainder(inp.rows, batch).div_(batch // trials, rounding_mode="floor")
    return inp._replace(cols=inp.cols + trial * n_in)


def synaptic_input(inp: SynapticInput, weight: torch.Tensor, steps: Optional[int] = None) -> torch.Tensor:
    """sum_i w_ji S_i[row] for every row, shape [T*B, N_out] (stacked trials: [T*K*B, N_out],
    events already moved by :func:`offset_for_trials`; ``steps`` needed for dense input)."""
    if inp.dense is not None:
        if weight.dim() == 3:
            return _from_trial(torch.bmm(_by_trial(inp.dense, weight.shape[0], steps), weight.transpose(1, 2)), steps)
        return inp.dense @ weight.t()
    return F.embedding_bag(
        inp.cols,
        stacked_weight_t(weight),
        inp.row_offsets,
        mode="sum",
        per_sample_weights=inp.values,
        include_last_offset=True,
    )


def plain_transpose(grad_t: torch.Tensor) -> torch.Tensor:
    """A weight gradient [N_in, N_out] (or [K, N_in, N_out]) in the parameter's orientation."""
    return grad_t.t() if grad_t.dim() == 2 else grad_t.transpose(1, 2).contiguous()


def weight_gradient(
    inp: SynapticInput,
    grad_rows: torch.Tensor,
    n_in: int,
    trials: int = 1,
    steps: Optional[int] = None,
    transpose: Callable = plain_transpose,
) -> torch.Tensor:
    """sum over rows of grad_rows[row, j] * S[row, i], shape [N_out, N_in] ([K, N_out, N_in] for
    stacked trials, each trial summing over its own rows). ``transpose`` turns the event path's
    [N_in, N_out] sums around (a backend's contiguous transpose spares autograd a copy)."""
    if trials > 1:
        if inp.dense is not None:
            g = _by_trial(grad_rows, trials, steps)
            return torch.bmm(g.transpose(1, 2), _by_trial(inp.dense, trials, steps))
        grad_t = _event_weight_gradient_t(inp, grad_rows, trials * n_in)  # [K*N_in, N_out]
        return transpose(grad_t.view(trials, n_in, -1))
    if inp.dense is not None:
        return grad_rows.t() @ inp.dense
    return transpose(_event_weight_gradient_t(inp, grad_rows, n_in))


def _event_weight_gradient_t(inp: SynapticInput, grad_rows: torch.Tensor, n_in: int) -> torch.Tensor:
    """sum over events of grad_rows[row] grouped by column, [n_in, N_out]."""
    order = torch.argsort(inp.cols, stable=True)
    counts = torch.bincount(inp.cols, minlength=n_in)
    offsets = torch.zeros(n_in + 1, dtype=torch.int64, device=grad_rows.device)
    torch.cumsum(counts, 0, out=offsets[1:])
    values = inp.values[order] if inp.values is not None else None
    return F.embedding_bag(
        inp.rows[order], grad_rows, offsets, mode="sum", per_sample_weights=values, include_last_offset=True
    )


def bias_rows(bias: torch.Tensor, batch: int) -> torch.Tensor:
    """The bias of every row of a batch, [batch, N]: ``bias`` [N], or [K, N] for K stacked trials
    (rows ``k * B + b``)."""
    if bias.dim() == 1:
        return bias.expand(batch, bias.shape[0])
    trials, n = bias.shape
    return bias.view(trials, 1, n).expand(trials, batch // trials, n).reshape(batch, n)


def rows_times_weight(rows: torch.Tensor, weight: torch.Tensor, steps: int) -> torch.Tensor:
    """``rows @ W`` per row, [T*B, N_in] from [T*B, N_out]; each trial's rows with its own W."""
    if weight.dim() == 2:
        return rows @ weight
    return _from_trial(torch.bmm(_by_trial(rows, weight.shape[0], steps), weight), steps)


def times_gradient_at_events(inp: SynapticInput, h_rows, weight, batch, steps, n_in) -> torch.Tensor:
    """dL/dt_hat_i[t] = sum_j w_ji H_j[t] at the presynaptic spikes (0 elsewhere), [B, T, N_in]."""
    if inp.dense is not None:
        full = rows_times_weight(h_rows, weight, steps) * (inp.dense != 0)
        return full.view(steps, batch, n_in).transpose(0, 1)
    at_events = (h_rows[inp.rows] * stacked_weight_t(weight)[inp.cols]).sum(dim=1)
    cols = inp.cols if weight.dim() == 2 else torch.remainder(inp.cols, n_in)
    out = torch.zeros(steps * batch * n_in, dtype=h_rows.dtype, device=h_rows.device)
    out[inp.rows * n_in + cols] = at_events
    return out.view(steps, batch, n_in).transpose(0, 1)
