"""Checks that read tensor values on the host, and how a caller that has checked already skips them.

Reading a value of a tensor on a GPU (``bool(t)``, ``t.item()``, ``t.tolist()``) makes the host
wait until the device has computed it, which drains the queue of kernels the host is ahead by.
Two checks of the engine read values: the network's check that its input is finite and the
losses' check that labels are class indices of the output layer. A caller whose data are known
to be good runs its steps inside :func:`values_checked`, where those two are skipped; the checks
of shapes and dtypes, which read no values, stay. The trainer does so: its datasets hold 0/1
spikes and labels checked when they were loaded.
"""

from __future__ import annotations

import threading
from contextlib import contextmanager

_local = threading.local()


@contextmanager
def values_checked():
    """Inside: the network's input and the losses' labels are taken as checked by the caller."""
    previous = getattr(_local, "checked", False)
    _local.checked = True
    try:
        yield
    finally:
        _local.checked = previous


def reads_values() -> bool:
    """Whether the checks that read tensor values run here (False inside :func:`values_checked`)."""
    return not getattr(_local, "checked", False)
