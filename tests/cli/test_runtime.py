"""tune_malloc (antlr_exp.cli.runtime): large buffers that a step frees are reused by the next
steps' buffers of the same size, with no fresh pages to fault in. A process of its own allocates,
fills and frees a 64 MiB buffer 30 times, as 30 steps would, and counts (getrusage) the page
faults of each fill, with and without the setting. With it, the heap first grows by a few
buffers (a freed buffer is a little short of the next one's aligned request until freed
neighbours coalesce); after that no fill faults."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

#: 30 x (allocate a 64 MiB buffer, fill it, free it): the minor page faults of each fill
PROGRAM = """
import json, resource, sys, torch
if sys.argv[1] == "tuned":
    from antlr_exp.cli.runtime import tune_malloc
    assert tune_malloc()
n = 64 * 1024 * 1024 // 4  # above glibc's 32 MiB ceiling on the mmap threshold
faults = []
for _ in range(30):
    buffer = torch.empty(n)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    buffer.fill_(1.0)
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
    del buffer
print(json.dumps(faults))
"""


def fill_faults(mode: str) -> list:
    result = subprocess.run([sys.executable, "-c", PROGRAM, mode], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.split("\n")[-2])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's allocator settings")
def test_freed_buffers_above_32_mib_are_reused_without_page_faults():
    pages = 64 * 1024 * 1024 // 4096
    plain = fill_faults("plain")
    assert all(count > pages // 2 for count in plain)  # glibc's default: each mapped afresh, faulted in
    tuned = fill_faults("tuned")
    assert sum(tuned[-10:]) < pages // 10, tuned  # the last 10 steps: reused
