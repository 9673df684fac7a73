"""Optional fused kernels for the LIF time recurrences: C++ on CPU, Triton on CUDA.

The C++ kernels are compiled on first use with ``torch.utils.cpp_extension`` (gcc and ninja;
about a minute once, then cached in torch's extension folder). The Triton kernels
(:mod:`antlr_exp.triton_kernels`) are compiled by Triton on first use. Where neither applies,
the layer uses its plain PyTorch path, which computes the same numbers (the tests check all
three).

``ANTLR_EXP_KERNELS``: ``auto`` (default: C++ on CPU if it builds, Triton on CUDA if triton
imports, else PyTorch), ``python`` (PyTorch everywhere), ``cpp`` (C++ on CPU, failing loudly
if it does not build; PyTorch on CUDA) or ``triton`` (Triton on every device, failing loudly
if triton does not import; on CPU tensors only in Triton's interpreter, ``TRITON_INTERPRET=1``
set before the first use).
"""

from __future__ import annotations

import os
import sys
import warnings
from pathlib import Path

_SOURCE = Path(__file__).with_name("csrc") / "lif_kernels.cpp"
_MODES = ("auto", "python", "cpp", "triton")
_state = {"tried": False, "module": None, "error": None}
_triton_state = {"tried": False, "module": None, "error": None}


def kernel_mode() -> str:
    mode = os.environ.get("ANTLR_EXP_KERNELS", "auto")
    if mode not in _MODES:
        raise ValueError(f"ANTLR_EXP_KERNELS={mode!r}: accepted are {', '.join(_MODES)}")
    return mode


def cpp_kernels():
    """The compiled module, or None where the PyTorch path is to be used."""
    mode = kernel_mode()
    if mode in ("python", "triton"):
        return None
    if not _state["tried"]:
        _state["tried"] = True
        try:
            _state["module"] = _build()
        except Exception as exc:  # compiler, ninja or headers missing
            _state["error"] = _summary(exc)
            if mode == "cpp":
                raise RuntimeError(f"ANTLR_EXP_KERNELS=cpp but the C++ kernels did not build: {_state['error']}") from exc
            warnings.warn(
                f"antlr_exp: C++ kernels unavailable ({_state['error']}); using the PyTorch path (slower on CPU)",
                RuntimeWarning,
                stacklevel=2,
            )
    return _state["module"]


def triton_kernels(device):
    """:mod:`antlr_exp.triton_kernels` for tensors on ``device``, or None where another path runs.

    ``auto``: on CUDA when triton imports (else a warning and PyTorch); ``triton``: on any device.
    Its functions take the C++ module's arguments and return its tuples (``lif_forward`` on a
    dense drive, ``srm_adjoint``, ``rnn_adjoint``).
    """
    mode = kernel_mode()
    kind = device.type if hasattr(device, "type") else str(device).split(":")[0]
    if mode in ("python", "cpp") or (mode == "auto" and kind != "cuda"):
        return None
    if not _triton_state["tried"]:
        _triton_state["tried"] = True
        try:
            from . import triton_kernels as module

            _triton_state["module"] = module
        except Exception as exc:  # triton missing or broken
            _triton_state["error"] = _summary(exc)
    module = _triton_state["module"]
    if module is None:
        if mode == "triton":
            raise RuntimeError(f"ANTLR_EXP_KERNELS=triton but triton did not import: {_triton_state['error']}")
        if not _triton_state.get("warned"):
            _triton_state["warned"] = True
            warnings.warn(f"antlr_exp: Triton kernels unavailable ({_triton_state['error']}); using the PyTorch path",
                          RuntimeWarning, stacklevel=2)
        return None
    if kind != "cuda" and not module.INTERPRETED:
        raise RuntimeError(
            f"ANTLR_EXP_KERNELS=triton with tensors on {kind}: Triton runs only on CUDA tensors, or on CPU "
            "tensors in its interpreter (set TRITON_INTERPRET=1 before antlr_exp.triton_kernels is imported)"
        )
    return module


def _summary(exc: Exception) -> str:
    """One line: the compiler's first error where there is one, else the exception's last line."""
    text = "\n".join(str(e) for e in (exc, exc.__cause__) if e is not None)
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    errors = [line for line in lines if "error:" in line]
    return f"{type(exc).__name__}: {(errors or lines or [''])[0 if errors else -1]}"


def _module_name(source: Path, flags: list, capability: str) -> str:
    """The compiled module's name, which is also its build folder's: one per source (its bytes and
    its path), flags, torch installation and Python, so that other checkouts and environments
    never rebuild this one's module."""
    import hashlib

    import torch

    key = hashlib.sha256()
    key.update(source.read_bytes())
    # torch's location too: torch's own versioning hashes each environment's include paths, so
    # two environments sharing one folder would rebuild it in turn
    key.update(" ".join(flags + [torch.__version__, os.path.dirname(torch.__file__), sys.version, capability]).encode())
    # and the source's own path: the build file names it, so two checkouts of one source sharing
    # a folder would also rebuild it in turn
    key.update(str(source.resolve()).encode())
    return f"antlr_exp_lif_kernels_{key.hexdigest()[:16]}"


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
    name = _module_name(_SOURCE, flags, capability)
    from .data.common import default_cache_dir  # $ANTLR_EXP_CACHE or ~/.cache/antlr-exp, as for the data

    cache = default_cache_dir() / "kernels" / name
    cache.mkdir(parents=True, exist_ok=True)
    lock = cache / "lock"
    if lock.exists() and time.time() - lock.stat().st_mtime > 900:
        lock.unlink(missing_ok=True)  # left by a build that was killed (a build takes about a minute)
    return cpp_extension.load(
        name=name,
        sources=[str(_SOURCE)],
        extra_cflags=flags,
        extra_ldflags=["-fopenmp"],
        build_directory=str(cache),
        verbose=False,
    )


#: surrogate shapes as numbered in csrc/lif_kernels.cpp
SURROGATE_CODES = {"exponential": 0, "fast_sigmoid": 1, "triangle": 2, "sigmoid": 3}
