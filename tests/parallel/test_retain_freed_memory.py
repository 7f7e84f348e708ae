"""retain_freed_memory: a worker's freed memory is reused without new page faults."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

CHILD = r"""
import resource, sys
import numpy as np
from dicomml.parallel import retain_freed_memory

def faults():
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(20):  # three 4 MB temporaries at once, touched and freed, per "item"
        a, b, c = (np.ones(1 << 20, np.float32) for _ in range(3))
        del a, b, c
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before

faults()
plain = faults()
ok = retain_freed_memory()
faults()
kept = faults()
print(ok, plain, kept, retain_freed_memory())
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_freed_memory_is_reused_without_page_faults():
    # 4 KiB pages: NumPy asks for huge pages on big arrays (madvise), and whether the kernel
    # finds one depends on how fragmented memory is; with them the fault counts say little
    # and glibc's defaults: Dask's nanny leaves MALLOC_* tunables in this process's
    # environment once a test has started a LocalCluster, and a child inherits them
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    env["NUMPY_MADVISE_HUGEPAGE"] = "0"
    r = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True,
                       timeout=120, env=env)
    assert r.returncode == 0, r.stderr
    ok, plain, kept, again = r.stdout.split()
    assert ok == "True" and again == "True"  # applied once, the answer remembered
    thp = Path("/sys/kernel/mm/transparent_hugepage/enabled")
    if not (thp.exists() and "[always]" in thp.read_text()):
        # default malloc: the freed 12 MB go back to the kernel, ~3,000 faults per item
        assert int(plain) >= 20 * 1000, (plain, kept)
    assert int(kept) < 200  # retained: the same pages, reused
