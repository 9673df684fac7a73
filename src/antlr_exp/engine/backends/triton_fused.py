"""The fused network backward in Triton: the GPU counterpart of the C++ ``fused_adjoint``.

One layer of :class:`~antlr_exp.engine.fused.FusedNetworkFunction`'s backward in one kernel: the
adjoint of an SRM-based rule (activation, timing, antlr) whose dL/dS and dL/dt_hat are formed
inside the time loop from the layer above,

    dL/dS[t, r, n]     = ext_gs[t, r, n] + sum_j G_up[t, r, j] W_up[k, j, n]
    dL/dt_hat[t, r, n] = ext_gt[t, r, n] + sum_j H_up[t, r, j] W_up[k, j, n]   (at spikes only)

(r = k B + b: sample b of trial k), so that neither product is stored as a [T, B, N] tensor. As in
:mod:`.triton`, one program owns ``BLOCK`` columns m = r N + n, one per thread, and walks time
backwards; each step the thread sums its column's product over j, reading the weights' column n
(shared by the threads of one row, cached) and the row's G_up (one address for all of a row's
threads). The recurrence over the spike-free windows is the one of ``_srm_adjoint_kernel``.

Unlike the C++ kernel, this one always writes G, and the weight gradient is left to the caller's
product of G with the input rows: every input reaches a Triton network as dense rows.
"""

from __future__ import annotations

import torch
import triton.language as tl

from . import triton as _tk
from .triton import _adjoint_consts, _adjoint_step, _consts, _first_spikes, _kernel, _surrogate, _timing_part


@_kernel
def _fused_adjoint_kernel(
    V,
    S,
    EGS,
    EGT,
    GU,
    HU,
    WU,
    consts,
    G,
    H,
    LVS,
    T: tl.int64,
    M: tl.int64,
    N: tl.int64,
    N_UP: tl.int64,
    ROWS_PER_TRIAL: tl.int64,
    TRIAL_STRIDE: tl.int64,
    USE_EGS: tl.int32,
    USE_EGT: tl.int32,
    USE_H: tl.int32,
    HAS_S: tl.constexpr,
    HAS_T: tl.constexpr,
    SINGLE: tl.constexpr,
    KIND: tl.constexpr,
    BLOCK: tl.constexpr,
):
    cols = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = cols < M
    aI, aV, th, aw, tw, vmin, sa, sb, c = _adjoint_consts(consts)
    row = cols // N
    w_col = (row // ROWS_PER_TRIAL) * TRIAL_STRIDE + cols % N  # W_up[k, 0, n]; + j N for row j
    up_row = row * N_UP  # G_up[t, r, 0] at t (M / N) N_UP + r N_UP
    up_step = (M // N) * N_UP
    ext_s = mask & (USE_EGS != 0)
    nv = tl.zeros([BLOCK], aI.dtype)
    ni = tl.zeros([BLOCK], aI.dtype)
    sv = tl.zeros([BLOCK], aI.dtype)
    first = tl.full([BLOCK], T, tl.int32)
    if SINGLE:
        first = _first_spikes(S, cols, mask, first, T, M)
    for step in range(T):
        t = T - 1 - step
        offs = t * M + cols
        up = t * up_step + up_row
        st = tl.load(S + offs, mask=mask, other=0.0)
        vt = tl.load(V + offs, mask=mask, other=0.0)
        spiking = mask & (st != 0.0)
        from_above_s = tl.zeros([BLOCK], aI.dtype)
        from_above_t = tl.zeros([BLOCK], aI.dtype)
        for j in range(N_UP):  # N_UP = 0 at the output layer
            w = tl.load(WU + w_col + j * N, mask=mask if HAS_S else spiking, other=0.0)
            if HAS_S:
                from_above_s += tl.load(GU + up + j, mask=mask, other=0.0) * w
            if HAS_T:
                from_above_t += tl.load(HU + up + j, mask=spiking, other=0.0) * w
        d = tl.zeros([BLOCK], aI.dtype)
        if HAS_S:  # activation part, masked after the first spike in single-spike mode
            gs = tl.load(EGS + offs, mask=ext_s, other=0.0) + from_above_s
            d = aw * _surrogate(vt - th, sa, sb, KIND) * gs
            if SINGLE:
                d = tl.where(t <= first, d, 0.0)
        if HAS_T:  # timing part at the spikes only
            gt = tl.load(EGT + offs, mask=spiking & (USE_EGT != 0), other=0.0) + from_above_t
            d = _timing_part(V, S, offs, M, t, vt, st, gt, d, mask, tw, vmin)
        nv, ni, g, h = _adjoint_step(d, st, nv, ni, aI, aV, c)
        sv += nv
        tl.store(G + offs, g, mask=mask)
        tl.store(H + offs, h, mask=mask & (USE_H != 0))
    tl.store(LVS + cols, sv, mask=mask)


def fused_adjoint(inputs, constants, want_h: bool):
    """One layer of the fused network backward: ``[G, H (or empty), lam_V summed over t, empty]``
    for a :class:`~antlr_exp.engine.backends.base.FusedLayerInputs` and the rule's
    :class:`~antlr_exp.engine.backends.base.RuleConstants`, as the C++ ``fused_adjoint`` returns
    them with ``need_g`` (the weight gradient from input events is not summed here)."""
    potential, spikes = inputs.potential.contiguous(), inputs.spikes.contiguous()
    steps, columns = potential.shape
    rows = inputs.trials * inputs.batch_per_trial
    n = columns // rows if rows else 0
    act_w, tim_w = constants.act_weight, constants.tim_weight
    has_egs, has_egt = inputs.grad_s.numel() > 0, inputs.grad_t.numel() > 0
    has_up = inputs.g_up.numel() > 0 or inputs.h_up.numel() > 0
    has_s = act_w != 0.0 and (has_egs or inputs.g_up.numel() > 0)
    has_t = tim_w != 0.0 and (has_egt or inputs.h_up.numel() > 0)
    w_up = inputs.w_up.contiguous() if has_up else potential
    n_up = w_up.shape[-2] if has_up and (has_s or has_t) else 0
    g = torch.empty_like(potential)
    h = torch.empty_like(potential) if want_h else potential.new_empty(0)
    lam_v_sum = potential.new_empty(columns)
    if not (columns and steps):
        lam_v_sum.zero_()
        return [g, h, lam_v_sum, potential.new_empty(0)]

    def given(x, used):
        return x.contiguous() if used and x.numel() else potential  # a valid pointer the kernel never reads

    consts = _consts(
        [
            constants.alpha_I,
            constants.alpha_V,
            constants.theta,
            act_w,
            tim_w,
            constants.vstar_min,
            constants.surrogate_a,
            constants.surrogate_b,
            constants.kernel_scale,
        ],
        potential,
    )
    _tk._launch(  # looked up at the call: aot.py records the launches by replacing it
        _fused_adjoint_kernel,
        columns,
        potential,
        spikes,
        given(inputs.grad_s, has_s),
        given(inputs.grad_t, has_t),
        given(inputs.g_up, has_s),
        given(inputs.h_up, has_t),
        w_up,
        consts,
        g,
        h if want_h else g,
        lam_v_sum,
        steps,
        columns,
        n,
        n_up,
        inputs.batch_per_trial,
        n_up * n if w_up.dim() == 3 else 0,
        int(has_s and has_egs),
        int(has_t and has_egt),
        int(bool(want_h)),
        HAS_S=has_s,
        HAS_T=has_t,
        SINGLE=bool(constants.single_spike) and has_s,
        KIND=int(constants.surrogate_kind) if has_s else 0,
    )
    return [g, h, lam_v_sum, potential.new_empty(0)]
