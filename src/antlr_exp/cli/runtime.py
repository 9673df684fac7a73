"""Process-level settings for the command-line entry points (not applied on import).

PyTorch's CPU allocator returns every large buffer to glibc, which by default maps each one
afresh and unmaps it when freed; the next step then page-faults a new one. Keeping every buffer
in the heap (no mmap, a high trim threshold) lets a step reuse the memory the previous step
freed, which removes a large share of a training step's time on CPU: raising the mmap threshold
alone stops at glibc's 32 MiB ceiling, and above it (16 stacked trials of the 784-800-10 MNIST
network: 82 MB per layer state) a step took twice as long per trial as with four. The entry
points call :func:`tune_malloc` once at start.
"""

from __future__ import annotations

import ctypes
import ctypes.util

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_M_MMAP_MAX = -4
_MMAP_THRESHOLD_MAX = 32 * 1024 * 1024  # glibc's ceiling on 64-bit systems


def tune_malloc() -> bool:
    """Serve every allocation from the heap (glibc's mmap off) and stop returning freed heap
    memory to the OS, so that freed buffers are reused.

    Returns True where glibc accepted the settings (False on other C libraries: harmless).
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
    ok = mallopt(_M_MMAP_MAX, 0) == 1 and ok  # above the threshold too: no buffer is mapped afresh
    ok = mallopt(_M_TRIM_THRESHOLD, 1 << 30) == 1 and ok
    return ok
