"""Process-level settings for the command-line entry points (not applied on import).

PyTorch's CPU allocator returns every large buffer to glibc, which unmaps it; the next
step then maps and page-faults a fresh one. Raising glibc's mmap and trim thresholds keeps
freed buffers in the heap for reuse, which removes a large share of a training step's time on
CPU. The entry points call :func:`tune_malloc` once at start.
"""

from __future__ import annotations

import ctypes
import ctypes.util

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_MMAP_THRESHOLD_MAX = 32 * 1024 * 1024  # glibc's ceiling on 64-bit systems


def tune_malloc() -> bool:
    """Keep buffers up to 32 MiB in the heap and stop returning freed heap memory to the OS.

    Returns True where glibc accepted both settings (False on other C libraries: harmless).
    """
    name = ctypes.util.find_library("c")
    if not name:
        return False
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    ok = mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD_MAX) == 1
    ok = mallopt(_M_TRIM_THRESHOLD, 1 << 30) == 1 and ok
    return ok
