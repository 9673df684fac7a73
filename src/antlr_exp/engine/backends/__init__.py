"""The one place where the kernels are chosen.

:func:`select` returns the backend for tensors on a device, given the ``kernels`` setting:

    auto     C++ on CPU where it builds, Triton on CUDA where triton imports, else plain PyTorch
    cpp      C++ on CPU (an error if it does not build)
    triton   Triton on every device (an error if triton does not import; CPU tensors only in
             Triton's interpreter, ``TRITON_INTERPRET=1`` set before the first use)
    python   plain PyTorch everywhere

``kernels=None`` (the config's default) means ``$ANTLR_EXP_KERNELS``, else ``auto``; no other
module reads that variable. A fallback from the requested backend to another (``auto`` on a
machine where the C++ kernels do not build, ``cpp`` on CUDA tensors) is logged as a warning
once, never silent. Backends are made once per (device type, setting) and cached.

``python -m antlr_exp.engine.backends --check`` builds the C++ kernels and says whether they work.
"""

from __future__ import annotations

import logging
import os
from typing import Optional

from ...errors import ConfigError
from . import cpp
from .base import SURROGATE_CODES, Backend, Capabilities, FusedLayerInputs, RuleConstants, rule_constants
from .python import PythonBackend

__all__ = [
    "KERNELS",
    "Backend",
    "Capabilities",
    "FusedLayerInputs",
    "RuleConstants",
    "SURROGATE_CODES",
    "check",
    "requested",
    "rule_constants",
    "select",
]

#: the accepted settings, config key ``kernels`` and ``$ANTLR_EXP_KERNELS``
KERNELS = ("auto", "cpp", "triton", "python")
ENV_VAR = "ANTLR_EXP_KERNELS"

log = logging.getLogger(__name__)
_PYTHON = PythonBackend()
_selected: dict = {}
_triton_state = {"tried": False, "module": None, "error": None}


def requested(kernels: Optional[str] = None) -> str:
    """The setting in force: ``kernels``, else ``$ANTLR_EXP_KERNELS``, else ``auto``."""
    if kernels is not None:
        if kernels not in KERNELS:
            raise ConfigError(f"kernels={kernels!r}: accepted are {', '.join(KERNELS)}")
        return kernels
    mode = os.environ.get(ENV_VAR, "auto")
    if mode not in KERNELS:
        raise ConfigError(f"{ENV_VAR}={mode!r}: accepted are {', '.join(KERNELS)}")
    return mode


def select(device="cpu", kernels: Optional[str] = None) -> Backend:
    """The backend for tensors on ``device`` (a torch.device or its name) under ``kernels``."""
    mode = requested(kernels)
    kind = device.type if hasattr(device, "type") else str(device).split(":")[0]
    backend = _selected.get((kind, mode))
    if backend is None:
        backend = _selected[(kind, mode)] = _resolve(kind, mode)
    return backend


def _resolve(kind: str, mode: str) -> Backend:
    if mode == "python" or (mode == "auto" and kind not in ("cpu", "cuda")):
        return _PYTHON
    if mode == "cpp" or (mode == "auto" and kind == "cpu"):
        if kind != "cpu":
            return _fall_back(mode, f"the C++ kernels run on CPU tensors only, and these are on {kind}")
        module = cpp.load()
        if module is not None:
            return cpp.CppBackend(module)
        if mode == "cpp":
            raise RuntimeError(f"kernels=cpp but the C++ kernels did not build: {cpp.build_error()}")
        return _fall_back(mode, f"the C++ kernels are unavailable ({cpp.build_error()})")
    module = _load_triton()
    if module is None:
        if mode == "triton":
            raise RuntimeError(f"kernels=triton but triton did not import: {_triton_state['error']}")
        return _fall_back(mode, f"the Triton kernels are unavailable ({_triton_state['error']})")
    backend = module.TritonBackend(module)
    if not backend.capabilities.runs_on(kind):
        raise RuntimeError(
            f"kernels=triton with tensors on {kind}: Triton runs only on CUDA tensors, or on CPU tensors in its "
            "interpreter (set TRITON_INTERPRET=1 before antlr_exp.engine.backends.triton is imported)"
        )
    return backend


def _fall_back(mode: str, reason: str) -> Backend:
    log.warning("kernels=%s: %s; using the python backend (plain PyTorch, slower)", mode, reason)
    return _PYTHON


def _load_triton():
    if not _triton_state["tried"]:
        _triton_state["tried"] = True
        try:
            from . import triton as module

            _triton_state["module"] = module
        except Exception as exc:  # triton missing or broken
            _triton_state["error"] = cpp._summary(exc)
    return _triton_state["module"]


def check(strict: bool = False) -> int:
    """Build the C++ kernels and print one line saying whether they work. Returns the exit
    status: 1 where they did not build and ``strict``, else 0."""
    module = cpp.load()
    print("C++ kernels:", "built" if module else f"unavailable ({cpp.build_error()}), PyTorch path")
    return 1 if module is None and strict else 0
