"""Files that crash a C pixel decoder (made in a temporary folder, never committed).

Reproduction (pydicom 3.0.2, python-gdcm 3.0.x): pydicom's default plugin chain for JPEG
Baseline (1.2.840.10008.1.2.4.50) tries GDCM first; with the sample
``SC_rgb_jpeg_dcmtk.dcm`` and one byte of its compressed stream changed, GDCM calls
``abort()``: the Python process ends with SIGABRT, no exception. The mutation was found
with the seeded search below (``numpy.random.default_rng(seed)``, 1-5 random bytes set to
random values after the start of the (7FE0,0010) element): seeds 65 (SIGABRT), 245
(SIGABRT) and 265 (SIGSEGV) out of the first 300.
"""

from __future__ import annotations

import io
import os
import signal
import warnings
from pathlib import Path

import numpy as np

SAMPLE = "SC_rgb_jpeg_dcmtk.dcm"
#: Seeds of :func:`mutate` that crash GDCM on :data:`SAMPLE`, with the signal.
CRASH_SEEDS = {65: signal.SIGABRT, 245: signal.SIGABRT, 265: signal.SIGSEGV}


def sample_bytes(name: str = SAMPLE) -> bytes:
    from pydicom.data import get_testdata_file

    return Path(get_testdata_file(name, download=False)).read_bytes()


def mutate(raw: bytes, seed: int) -> bytes:
    """1-5 random bytes of the pixel data stream set to random values (seeded)."""
    rng = np.random.default_rng(seed)
    start = raw.rfind(b"\xe0\x7f\x10\x00") + 40  # past the (7FE0,0010) header and offsets
    out = bytearray(raw)
    n = int(rng.integers(1, 6))
    offsets = sorted(int(x) for x in rng.integers(start, len(raw), n))
    for o in offsets:
        out[o] = int(rng.integers(0, 256))
    return bytes(out)


def make_crasher(folder, seed: int = 65, name: str = "crasher.dcm") -> Path:
    """Write the mutated JPEG Baseline file that crashes GDCM into ``folder``."""
    path = Path(folder) / name
    path.write_bytes(mutate(sample_bytes(), seed))
    return path


def crashes_default_chain(path) -> int | None:
    """Decode ``path`` with pydicom's default plugin chain (``ds.pixel_array``) in a forked
    child; return the signal that killed it, or None if it exited normally."""
    data = Path(path).read_bytes()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        try:
            import faulthandler

            faulthandler.disable()  # pytest's handler would print the expected crash
            os.dup2(os.open(os.devnull, os.O_WRONLY), 2)
            import pydicom

            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                pydicom.dcmread(io.BytesIO(data)).pixel_array
        except BaseException:
            os._exit(1)
        os._exit(0)
    _, status = os.waitpid(pid, 0)
    return os.WTERMSIG(status) if os.WIFSIGNALED(status) else None
