"""The Triton backend: kernels for the three LIF time loops (the GPU counterpart of ``csrc/``).

Every tensor is time-major [T, M] and contiguous, with M = columns: the flattened (sample,
neuron) pairs, whatever dimensions the caller folded into them. One program owns a block of
``BLOCK`` columns and walks time inside, keeping the state in registers. The arithmetic is that
of the C++ kernels, term for term, and the functions take the same arguments and return the
same tuples as the C++ module's ``lif_forward``, ``srm_adjoint`` and ``rnn_adjoint``, so the layer
calls either one alike (:mod:`antlr_exp.engine.backends.calls`). The fused network backward is in
:mod:`.triton_fused`. The input is always taken as dense rows (a dense product on a GPU; a list
of events would need the host to learn its length) and everything else is the plain PyTorch
backend's: this backend has no event-driven forward.

The scalar parameters travel in a small tensor of the data's dtype (a Python float argument
would be rounded to float32 on a GPU), made once per set of values and device, and
floating-point contraction into fused multiply-adds is switched off, as in the C++ build.
No kernel is specialized on its arguments' values (``do_not_specialize``; ``T`` and ``M`` are
int64): what is compiled depends only on the dtype and the ``tl.constexpr`` flags of a launch,
and :mod:`.aot` compiles every one of those ahead of time for sm_80 and sm_90.

With ``TRITON_INTERPRET=1`` set before this module is imported, Triton runs the kernels on CPU
tensors (slowly): that is how the tests check them on a machine without a GPU.
"""

from __future__ import annotations

import functools
import inspect

import torch
import triton
import triton.language as tl
from triton import knobs

from ..synapses import dense_input
from . import calls
from .base import Capabilities
from .python import PythonBackend

#: whether the kernels below run in Triton's interpreter (decided when they were defined)
INTERPRETED = bool(knobs.runtime.interpret)

#: columns per program: one column per thread (``BLOCK = 32 * num_warps``), whose state stays in
#: registers through the time loop; at this size no kernel spills on sm_80 or sm_90 (see
#: ``python -m antlr_exp.engine.backends.aot --table`` and tests/engine/test_triton_aot.py)
BLOCK = 32

#: compile options of every launch on a GPU: no contraction into fused multiply-adds (as the C++ build)
COMPILE_OPTIONS = {"num_warps": 1, "enable_fp_fusion": False}


def _kernel(fn):
    """``triton.jit`` without specialization on argument values: pointers are not specialized on
    their alignment nor integers on being 1 or a multiple of 16, so that a kernel's compiled
    variants are exactly its dtypes times its ``tl.constexpr`` flags (all compiled ahead of time
    by :mod:`.aot`)."""
    names = [n for n, p in inspect.signature(fn).parameters.items() if "constexpr" not in str(p.annotation)]
    return triton.jit(do_not_specialize=names)(fn)


@triton.jit
def _surrogate(u, a, b, KIND: tl.constexpr):
    """sigma(u), u = V - theta; KIND numbered as in backends.base.SURROGATE_CODES."""
    au = tl.abs(u)
    if KIND == 0:  # exponential
        out = a * tl.exp(-b * au)
    elif KIND == 1:  # fast_sigmoid
        d = 1.0 + b * au
        out = a / (d * d)
    elif KIND == 2:  # triangle
        v = 1.0 - b * au
        out = tl.where(v > 0.0, a * v, 0.0)
    else:  # sigmoid
        sg = 1.0 / (1.0 + tl.exp(-b * u))
        out = 4.0 * a * sg * (1.0 - sg)
    return out.to(u.dtype)


@triton.jit
def _first_spikes(S, cols, mask, first, T, M):
    """First spike step of each column (``first``, T, where it never fires)."""
    for t in range(T):
        s = tl.load(S + tl.cast(t, tl.int64) * M + cols, mask=mask, other=0.0)
        first = tl.where((s != 0.0) & (first == T), t, first).to(first.dtype)
    return first


@_kernel
def _lif_forward_kernel(
    drive,
    bias,
    cur0,
    pot0,
    keep0,
    allowed0,
    consts,
    V,
    S,
    TM,
    I_all,
    cur_f,
    pot_f,
    keep_f,
    allowed_f,
    T: tl.int64,
    M: tl.int64,
    SINGLE: tl.constexpr,
    STORE_I: tl.constexpr,
    BLOCK: tl.constexpr,
):
    cols = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = cols < M
    aI = tl.load(consts + 0)
    aV = tl.load(consts + 1)
    bI = tl.load(consts + 2)
    bV = tl.load(consts + 3)
    th = tl.load(consts + 4)
    c = tl.load(cur0 + cols, mask=mask, other=0.0)
    p = tl.load(pot0 + cols, mask=mask, other=0.0)
    kk = tl.load(keep0 + cols, mask=mask, other=0.0)
    bb = tl.load(bias + cols, mask=mask, other=0.0)
    one = tl.full([BLOCK], 1.0, c.dtype)
    zero = tl.zeros([BLOCK], c.dtype)
    a = one
    if SINGLE:
        a = tl.load(allowed0 + cols, mask=mask, other=0.0)
    for t in range(T):
        offs = tl.cast(t, tl.int64) * M + cols
        x = tl.load(drive + offs, mask=mask, other=0.0)
        i = aI * kk * c + bI * x
        v = aV * kk * p + bV * i + bb
        s = tl.where(v >= th, one, zero)
        if SINGLE:
            s = s * a
            a = a * (1.0 - s)
        c = i
        p = v
        kk = 1.0 - s
        tl.store(V + offs, v, mask=mask)
        tl.store(S + offs, s, mask=mask)
        tl.store(TM + offs, s * tl.cast(t, c.dtype), mask=mask)
        if STORE_I:
            tl.store(I_all + offs, i, mask=mask)
    tl.store(cur_f + cols, c, mask=mask)
    tl.store(pot_f + cols, p, mask=mask)
    tl.store(keep_f + cols, kk, mask=mask)
    if SINGLE:
        tl.store(allowed_f + cols, a, mask=mask)


@_kernel
def _srm_adjoint_kernel(
    V,
    S,
    GS,
    GT,
    consts,
    G,
    H,
    LVS,
    T: tl.int64,
    M: tl.int64,
    HAS_S: tl.constexpr,
    HAS_T: tl.constexpr,
    SINGLE: tl.constexpr,
    WANT_H: tl.constexpr,
    KIND: tl.constexpr,
    BLOCK: tl.constexpr,
):
    cols = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = cols < M
    aI, aV, th, aw, tw, vmin, sa, sb, c = _adjoint_consts(consts)
    nv = tl.zeros([BLOCK], aI.dtype)
    ni = tl.zeros([BLOCK], aI.dtype)
    sv = tl.zeros([BLOCK], aI.dtype)
    first = tl.full([BLOCK], T, tl.int32)
    if SINGLE:
        if HAS_S:
            first = _first_spikes(S, cols, mask, first, T, M)
    for step in range(T):
        t = T - 1 - step
        offs = tl.cast(t, tl.int64) * M + cols
        st = tl.load(S + offs, mask=mask, other=0.0)
        d = tl.zeros([BLOCK], aI.dtype)
        if HAS_S:  # activation part, masked after the first spike in single-spike mode
            vt = tl.load(V + offs, mask=mask, other=0.0)
            gs = tl.load(GS + offs, mask=mask, other=0.0)
            d = aw * _surrogate(vt - th, sa, sb, KIND) * gs
            if SINGLE:
                d = tl.where(t <= first, d, 0.0)
        if HAS_T:  # timing part at the spikes only
            vt = tl.load(V + offs, mask=mask, other=0.0)
            gt = tl.load(GT + offs, mask=mask, other=0.0)
            d = _timing_part(V, S, offs, M, t, vt, st, gt, d, mask, tw, vmin)
        nv, ni, g, h = _adjoint_step(d, st, nv, ni, aI, aV, c)
        sv += nv
        tl.store(G + offs, g, mask=mask)
        if WANT_H:
            tl.store(H + offs, h, mask=mask)
    tl.store(LVS + cols, sv, mask=mask)


@triton.jit
def _adjoint_consts(consts):
    """The SRM adjoints' constants, as :func:`srm_adjoint` packs them: alpha_I, alpha_V, theta,
    the activation and timing weights, vstar_min, the surrogate's two parameters and the current's
    kernel scale."""
    return (
        tl.load(consts + 0),
        tl.load(consts + 1),
        tl.load(consts + 2),
        tl.load(consts + 3),
        tl.load(consts + 4),
        tl.load(consts + 5),
        tl.load(consts + 6),
        tl.load(consts + 7),
        tl.load(consts + 8),
    )


@triton.jit
def _timing_part(V, S, offs, M, t, vt, st, gt, d, mask, tw, vmin):
    """``d`` plus the timing part of dL/dV at step t, ``-tim_w dL/dt_hat / V*`` at the spikes
    (V* = V[t] less what the reset left of V[t-1], at least vstar_min)."""
    earlier = mask & ((tl.zeros_like(offs) + t) > 0)  # a tensor in both modes
    v_before = tl.load(V + offs - M, mask=earlier, other=0.0)
    s_before = tl.load(S + offs - M, mask=earlier, other=0.0)
    before = v_before * (1.0 - s_before)
    vstar = vt - before
    vstar = tl.where(vstar < vmin, vmin, vstar)
    return tl.where(st != 0.0, d - tw * gt / vstar, d)


@triton.jit
def _adjoint_step(d, st, nv, ni, aI, aV, c):
    """One reverse step over the spike-free windows from dL/dV[t] = d and lam_V, lam_I of t+1:
    ``(lam_V[t], lam_I[t], G[t], H[t])``."""
    keep = 1.0 - st
    g_later = c * ni  # G[t+1] (0 at the last step)
    lv = d + aV * keep * nv
    li = lv + aI * keep * ni
    g = c * li
    return lv, li, g, 0.5 * (keep * g_later - aI * g - c * aV * lv)


@_kernel
def _rnn_adjoint_kernel(
    V,
    S,
    I_all,
    SG,
    GS,
    consts,
    G,
    LVS,
    T: tl.int64,
    M: tl.int64,
    HAS_S: tl.constexpr,
    SINGLE: tl.constexpr,
    BLOCK: tl.constexpr,
):
    cols = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = cols < M
    aI = tl.load(consts + 0)
    aV = tl.load(consts + 1)
    bV = tl.load(consts + 2)
    c = tl.load(consts + 3)
    nv = tl.zeros([BLOCK], aI.dtype)
    ni = tl.zeros([BLOCK], aI.dtype)
    sv = tl.zeros([BLOCK], aI.dtype)
    first = tl.full([BLOCK], T, tl.int32)
    if SINGLE:
        first = _first_spikes(S, cols, mask, first, T, M)
    for step in range(T):
        t = T - 1 - step
        offs = tl.cast(t, tl.int64) * M + cols
        st = tl.load(S + offs, mask=mask, other=0.0)
        vt = tl.load(V + offs, mask=mask, other=0.0)
        it = tl.load(I_all + offs, mask=mask, other=0.0)
        sigma = tl.load(SG + offs, mask=mask, other=0.0)
        g = tl.zeros([BLOCK], aI.dtype)
        if HAS_S:
            g = tl.load(GS + offs, mask=mask, other=0.0)
        keep = 1.0 - st
        total_s = g - aI * bV * it * ni - aV * vt * nv  # dL/dS[t] through the resets of I[t+1], V[t+1]
        if SINGLE:
            sigma = tl.where(t > first, 0.0, sigma)
        lv = sigma * total_s + aV * keep * nv
        li = lv + aI * keep * ni
        nv = lv
        ni = li
        sv += lv
        tl.store(G + offs, c * li, mask=mask)
    tl.store(LVS + cols, sv, mask=mask)


def _consts(values, like: torch.Tensor) -> torch.Tensor:
    """The scalars ``values`` as a tensor of ``like``'s dtype on its device: made once per values,
    dtype and device, since a tensor made from host data is a copy that waits for the device."""
    return _constant_tensor(tuple(float(v) for v in values), like.dtype, like.device)


@functools.lru_cache(maxsize=256)
def _constant_tensor(values: tuple, dtype, device) -> torch.Tensor:
    return torch.tensor(values, dtype=dtype, device=device)


#: columns per program in Triton's interpreter, which runs the programs one after another: the
#: arithmetic of a column does not depend on BLOCK, and fewer, wider programs run the tests faster
INTERPRETER_BLOCK = 128


def _launch(kernel, columns: int, *args, **meta):
    """One program per ``BLOCK`` columns; ``meta`` are the kernel's ``tl.constexpr`` flags (every
    combination the wrappers below pass is compiled ahead of time by :mod:`.aot`, which records
    them by calling the wrappers with this function replaced)."""
    block, options = (INTERPRETER_BLOCK, {}) if INTERPRETED else (BLOCK, COMPILE_OPTIONS)
    kernel[(triton.cdiv(columns, block),)](*args, BLOCK=block, **meta, **options)


def lif_forward(
    drive,
    bias_term,
    current0,
    potential0,
    keep0,
    allowed0,
    alpha_I,
    alpha_V,
    beta_I,
    beta_V,
    theta,
    keep_current,
    B,
    emit_events=False,
):
    """The LIF forward over a dense drive [T, M] (beta_I not applied); arguments and returns as the
    C++ ``lif_forward``. Output events are not produced (``emit_events`` must be False): the three
    event tensors come back empty."""
    if emit_events:
        raise ValueError("the Triton lif_forward makes no output events; call it with emit_events=False")
    if drive.dim() != 2:
        raise ValueError(f"drive has shape {tuple(drive.shape)}: expected [T, M]")
    steps, columns = drive.shape
    single = allowed0.numel() > 0
    drive = drive.contiguous()
    flat = [x.contiguous().clone() for x in (current0, potential0, keep0)]
    potential, spikes, times = (torch.empty_like(drive) for _ in range(3))
    currents = torch.empty_like(drive) if keep_current else drive.new_empty(0)
    allowed = allowed0.contiguous().clone() if single else drive.new_empty(0)
    if columns and steps:
        _launch(
            _lif_forward_kernel,
            columns,
            drive,
            bias_term.contiguous(),
            *flat,
            allowed if single else drive,
            _consts([alpha_I, alpha_V, beta_I, beta_V, theta], drive),
            potential,
            spikes,
            times,
            currents if keep_current else drive,
            *flat,
            allowed if single else drive,
            steps,
            columns,
            SINGLE=single,
            STORE_I=bool(keep_current),
        )
    none = torch.empty(0, dtype=torch.int64, device=drive.device)
    return [potential, spikes, times, *flat, allowed, currents, none, none, none]


def srm_adjoint(
    potential,
    spikes,
    grad_s,
    grad_t,
    alpha_I,
    alpha_V,
    theta,
    act_w,
    tim_w,
    vstar_min,
    surrogate_kind,
    surrogate_a,
    surrogate_b,
    single,
    kernel_scale,
    want_h,
):
    """Reverse-time adjoint of the SRM-based rules; arguments and returns as the C++ ``srm_adjoint``."""
    steps, columns = potential.shape
    has_s = grad_s.numel() > 0 and act_w != 0.0
    has_t = grad_t.numel() > 0 and tim_w != 0.0
    potential, spikes = potential.contiguous(), spikes.contiguous()
    g = torch.empty_like(potential)
    h = torch.empty_like(potential) if want_h else potential.new_empty(0)
    lam_v_sum = potential.new_empty(columns)
    if columns and steps:
        consts = _consts(
            [alpha_I, alpha_V, theta, act_w, tim_w, vstar_min, surrogate_a, surrogate_b, kernel_scale], potential
        )
        _launch(
            _srm_adjoint_kernel,
            columns,
            potential,
            spikes,
            grad_s.contiguous() if has_s else potential,
            grad_t.contiguous() if has_t else potential,
            consts,
            g,
            h if want_h else g,
            lam_v_sum,
            steps,
            columns,
            HAS_S=has_s,
            HAS_T=has_t,
            SINGLE=bool(single) and has_s,  # the mask applies to the activation part only
            WANT_H=bool(want_h),
            KIND=int(surrogate_kind) if has_s else 0,  # sigma only in the activation part
        )
    else:
        lam_v_sum.zero_()
    return [g, h, lam_v_sum]


def rnn_adjoint(potential, spikes, currents, sigma_all, grad_s, alpha_I, alpha_V, beta_V, single, kernel_scale):
    """Plain BPTT with the reset paths (activation_rnn); arguments and returns as the C++ ``rnn_adjoint``."""
    steps, columns = potential.shape
    has_s = grad_s.numel() > 0
    potential, spikes = potential.contiguous(), spikes.contiguous()
    g = torch.empty_like(potential)
    lam_v_sum = potential.new_empty(columns)
    if columns and steps:
        _launch(
            _rnn_adjoint_kernel,
            columns,
            potential,
            spikes,
            currents.contiguous(),
            sigma_all.contiguous(),
            grad_s.contiguous() if has_s else potential,
            _consts([alpha_I, alpha_V, beta_V, kernel_scale], potential),
            g,
            lam_v_sum,
            steps,
            columns,
            HAS_S=has_s,
            SINGLE=bool(single),
        )
    else:
        lam_v_sum.zero_()
    return [g, potential.new_empty(0), lam_v_sum]


class TritonBackend(PythonBackend):
    """The plain PyTorch backend with the time loops in the Triton kernels above, and the fused
    network backward of :mod:`.triton_fused`."""

    name = "triton"
    capabilities = Capabilities(devices=("cuda", "cpu") if INTERPRETED else ("cuda",), has_fused=True)

    def __init__(self, ops):
        self.ops = ops  # this module (its functions are looked up at each call)

    def flatten_input(self, spikes_in):
        """Always dense rows: the product is dense on a GPU, and sizing a list of events would make
        the host wait for the device at every layer."""
        return dense_input(spikes_in.transpose(0, 1))

    def fused_adjoint(self, inputs, constants, need_g, want_h):
        from . import triton_fused

        return triton_fused.fused_adjoint(inputs, constants, want_h)

    def simulate_lif(self, drive, bias, params, state=None, keep_current=False):
        return calls.simulate_drive(self.ops, drive, bias, params, state, keep_current)

    def adjoint(self, grad_s, grad_t, potential, spikes, current, params, rule, want_h):
        return calls.adjoint(self.ops, grad_s, grad_t, potential, spikes, current, params, rule, want_h)
