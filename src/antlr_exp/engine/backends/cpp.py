"""The C++ backend: the LIF time loops as compiled CPU kernels (``csrc/``), built on first use.

The kernels are compiled with ``torch.utils.cpp_extension`` (gcc and ninja; about a minute once,
then cached in ``$ANTLR_EXP_CACHE/kernels``, default ``~/.cache/antlr-exp/kernels``). Besides the
forward and the adjoints, this backend has the event-driven forward (sparse input feeds the
recurrence directly, and output spikes leave as events) and the fused network backward.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Optional

from .. import synapses
from ..lif import initial_state
from ..synapses import SynapticInput, dense_input, raise_non_finite, synaptic_input
from . import calls
from .base import Backend, Capabilities

CSRC = Path(__file__).with_name("csrc")
#: the build's state: tried once per process; ``module`` or ``error`` (one line) after the try
_build_state = {"tried": False, "module": None, "error": None}


def sources() -> list:
    """The C++ sources compiled into the module (the headers beside them are included)."""
    return sorted(CSRC.glob("*.cpp"))


def load():
    """The compiled module, building it on first use; None where it did not build (see :func:`build_error`)."""
    if not _build_state["tried"]:
        _build_state["tried"] = True
        try:
            _build_state["module"] = _build()
        except Exception as exc:  # compiler, ninja or headers missing
            _build_state["error"] = _summary(exc)
    return _build_state["module"]


def build_error() -> Optional[str]:
    """Why the module did not build (one line), or None."""
    return _build_state["error"]


class CppBackend(Backend):
    name = "cpp"
    capabilities = Capabilities(devices=("cpu",), has_fused=True, has_events=True, checks_input=True)

    def __init__(self, ops):
        self.ops = ops  # the compiled module

    def flatten_input(self, spikes_in):
        """Dense rows or events, by the C++ scan (which also checks that every entry is finite)."""
        time_major = spikes_in.transpose(0, 1)
        found = self.ops.csr_events(time_major, synapses.SPARSE_DENSITY)
        if not bool(found[-1]):
            raise_non_finite(spikes_in)
        if len(found) > 2:
            offsets, rows, cols, values, all_ones, _ = found
            return SynapticInput(None, rows, cols, None if bool(all_ones) else values, offsets)
        return dense_input(time_major)

    def transpose_gradient(self, grad_t):
        # a contiguous [N_out, N_in] gradient spares autograd a copy into the parameter's layout
        return self.ops.transpose_contiguous(grad_t)

    def simulate_lif(self, drive, bias, params, state=None, keep_current=False):
        return calls.simulate_drive(self.ops, drive, bias, params, state, keep_current)

    def run_layer(
        self,
        inp,
        weight,
        bias,
        params,
        steps,
        batch,
        state=None,
        keep_current=False,
        emit_events=False,
        store_times=True,
    ):
        """With sparse input the input events feed the recurrence directly (no [T, B, N] drive)."""
        n = weight.shape[-2]
        if state is None:
            state = initial_state(batch, n, params, weight.dtype, weight.device)
        source = (
            (inp, weight.detach()) if inp.dense is None else synaptic_input(inp, weight, steps).view(steps, batch, -1)
        )
        return calls.simulate(
            self.ops, source, bias, params, state, keep_current, steps, batch, emit_events, store_times
        )

    def adjoint(self, grad_s, grad_t, potential, spikes, current, params, rule, want_h):
        return calls.adjoint(self.ops, grad_s, grad_t, potential, spikes, current, params, rule, want_h)

    def fused_adjoint(self, inputs, constants, need_g, want_h):
        return self.ops.fused_adjoint(*inputs, *constants, need_g, want_h)


def _summary(exc: Exception) -> str:
    """One line: the compiler's first error where there is one, else the exception's last line."""
    text = "\n".join(str(e) for e in (exc, exc.__cause__) if e is not None)
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    errors = [line for line in lines if "error:" in line]
    return f"{type(exc).__name__}: {(errors or lines or [''])[0 if errors else -1]}"


def _module_name(files: list, flags: list, capability: str) -> str:
    """The compiled module's name, which is also its build folder's: one per source set (the
    bytes and paths of the sources and headers), flags, torch installation and Python, so that
    other checkouts and environments never rebuild this one's module."""
    import hashlib

    import torch

    key = hashlib.sha256()
    for path in files:
        key.update(path.read_bytes())
    # torch's location too: torch's own versioning hashes each environment's include paths, so
    # two environments sharing one folder would rebuild it in turn
    key.update(" ".join(flags + [torch.__version__, os.path.dirname(torch.__file__), sys.version, capability]).encode())
    # and the sources' own paths: the build file names them, so two checkouts of one source
    # sharing a folder would also rebuild it in turn
    for path in files:
        key.update(str(Path(path).resolve()).encode())
    return f"antlr_exp_lif_kernels_{key.hexdigest()[:16]}"


def _cache_root() -> Path:
    """``$ANTLR_EXP_CACHE``, else ``~/.cache/antlr-exp`` (the folder the data cache uses too)."""
    configured = os.environ.get("ANTLR_EXP_CACHE")
    return Path(configured).expanduser() if configured else Path.home() / ".cache" / "antlr-exp"


def _build():
    import logging
    import time

    logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)  # its "No CUDA runtime" notice
    import torch
    from torch.utils import cpp_extension

    bin_dir = os.path.dirname(sys.executable)  # ninja from PyPI lives beside the interpreter
    if bin_dir not in os.environ.get("PATH", "").split(os.pathsep):
        os.environ["PATH"] = bin_dir + os.pathsep + os.environ.get("PATH", "")
    # vector instructions only where this CPU has them
    capability = torch.backends.cpu.get_cpu_capability()
    # -ffp-contract=off: no fused multiply-adds, so the arithmetic rounds as the PyTorch path does;
    # -fno-trapping-math lets the compiler if-convert the clamps and selects (a 7x faster surrogate
    # loop); neither changes any result. -fopenmp: at::parallel_for is an inline `#pragma omp
    # parallel` under torch's OpenMP backend; the module links libgomp.so.1, which resolves to the
    # copy torch has already loaded.
    flags = ["-O3", "-ffp-contract=off", "-fno-trapping-math", "-fopenmp"]
    flags += ["-mavx2", "-mfma"] if capability in ("AVX2", "AVX512") else []
    files = sources() + sorted(CSRC.glob("*.h"))
    name = _module_name(files, flags, capability)
    cache = _cache_root() / "kernels" / name
    cache.mkdir(parents=True, exist_ok=True)
    lock = cache / "lock"
    if lock.exists() and time.time() - lock.stat().st_mtime > 900:
        lock.unlink(missing_ok=True)  # left by a build that was killed (a build takes about a minute)
    return cpp_extension.load(
        name=name,
        sources=[str(path) for path in sources()],
        extra_cflags=flags,
        extra_ldflags=["-fopenmp"],
        build_directory=str(cache),
        verbose=False,
    )
