"""utils/allocator.keep_freed_memory: freed activation buffers are reused without page faults."""

from __future__ import annotations

import subprocess
import sys

import pytest

# a CPU conv forward on an mr-sized (3 x 128) MNIST batch, 20 times: its output buffers (~3 MiB
# each) are freed and allocated again every iteration, as in a training step
_PROBE = """
import resource, sys, torch
if sys.argv[1] == "keep":
    from robustbench_mr.utils.allocator import keep_freed_memory
    assert keep_freed_memory()
torch.set_num_threads(1)
x = torch.randn(384, 1, 28, 28)
conv = torch.nn.Conv2d(1, 16, 4, 2, 1)
for _ in range(3):
    conv(x).relu().sum()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(20):
    y = conv(x).relu()
    z = y * 2
    del y, z
print((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 20)
"""


def _faults_per_step(policy: str) -> float:
    out = subprocess.run([sys.executable, "-c", _PROBE, policy], capture_output=True, text=True, check=True, timeout=120)
    return float(out.stdout.strip())


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="mallopt is glibc's (Linux)")
def test_keeping_freed_memory_removes_most_page_faults() -> None:
    # glibc's mmap threshold is dynamic: now and then (seen once in a CI run, 2026-12-07: 119 faults
    # per step) the heap keeps the buffers under the default policy too and the probe shows
    # nothing; up to 3 probes for a default run that does page-fault
    default = 0.0
    for _ in range(3):
        default = max(default, _faults_per_step("default"))
        if default > 200:
            break
    keep = _faults_per_step("keep")
    # measured: ~1160 minor faults per iteration with glibc's policy, ~120 with freed memory kept
    assert default > 200, f"the probe no longer page-faults with glibc's default policy ({default:.0f} per step): it tests nothing"
    assert keep < 0.5 * default, f"{keep:.0f} page faults per step with freed memory kept, {default:.0f} without"
