"""tune_malloc (antlr_exp.cli.runtime): a large buffer that a step frees is reused by the next
step's buffer of the same size, with no fresh pages to fault in. The page faults of filling the
second buffer are counted (getrusage) in a process of its own, with and without the setting."""

from __future__ import annotations

import subprocess
import sys

import pytest

#: fill a 64 MiB buffer, free it, allocate the same size again: minor page faults of the second fill
PROGRAM = """
import resource, sys, torch
if sys.argv[1] == "tuned":
    from antlr_exp.cli.runtime import tune_malloc
    assert tune_malloc()
n = 64 * 1024 * 1024 // 4  # above glibc's 32 MiB ceiling on the mmap threshold
a = torch.empty(n); a.fill_(1.0); del a
b = torch.empty(n)
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
b.fill_(1.0)
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def second_fill_faults(mode: str) -> int:
    result = subprocess.run([sys.executable, "-c", PROGRAM, mode], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return int(result.stdout.split()[-1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's allocator settings")
def test_a_freed_buffer_above_32_mib_is_reused_without_page_faults():
    pages = 64 * 1024 * 1024 // 4096
    assert second_fill_faults("plain") > pages // 2  # glibc's default: mapped afresh, faulted in again
    assert second_fill_faults("tuned") < pages // 100
