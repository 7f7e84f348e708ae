"""Fuzzing: mutated copies of real sample files through scan, read_image and read_series.

Mutations (hypothesis, ``derandomize=True``: the same examples on every run): bit flips,
truncation, bytes of the pixel stream, corrupted element lengths (the 2/4-byte length field
of a real element, found from pydicom's ``value_tell``), huge declared lengths, wrong VRs
(explicit VR files),
duplicated chunks. Every outcome must be a result or an error of dicomml's own family
(:class:`DicommlError`) naming the file — never another exception type, a hang (SIGALRM for
the in-process parts, ``item_timeout`` for the decoding workers) or a crash (pixel decoding
runs in worker processes: a C-level abort is reported as DecoderCrashedError). Memory stays
bounded whatever the file declares (tracemalloc in this process, the peak RSS of the
decoding workers). Counts are printed (``pytest -s``) and recorded in bench/README.md.
"""

from __future__ import annotations

import collections
import io
import signal
import tracemalloc
import warnings
from pathlib import Path

import pydicom
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydicom.data import get_testdata_file

from dicomml.errors import DecoderCrashedError, DicommlError
from dicomml.io import read_images, read_series, scan
from dicomml.io.types import Image, Volume

SOURCES = ["CT_small.dcm", "MR_small.dcm", "MR_small_bigendian.dcm", "MR_small_implicit.dcm",
           "SC_rgb_jpeg_dcmtk.dcm", "SC_rgb_rle.dcm", "MR_small_jp2klossless.dcm",
           "MR_small_RLE.dcm", "MR_small_jpeg_ls_lossless.dcm", "JPEG2000.dcm",
           "rtdose.dcm", "SC_rgb_small_odd.dcm"]
VRS = [b"UL", b"OB", b"SQ", b"UN", b"US", b"DS", b"OW", b"UT", b"AE", b"FD", b"XX"]
HUGE = [0xFFFFFFFF, 0xFFFFFFFE, 0x7FFFFFFF, 0x40000000, 0x0FFFFFF0, 0x00FFFFFF, 0xFFFF]
#: per-example time limit (s) for the in-process parts and for each decoding worker item
TIME_LIMIT = 20
#: memory bound: no input here is over 110 kB; 64 MiB is generous, gigabytes are a bug
MAX_TRACED = 64 * 2 ** 20
MAX_WORKER_RSS_KIB = 1024 * 1024
MAX_EXAMPLES = int(__import__("os").environ.get("DICOMML_FUZZ_EXAMPLES", "800"))


def _layout(raw: bytes):
    """(value_tell, VR, explicit) of every top-level element of the meta and the data set."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = pydicom.dcmread(io.BytesIO(raw), defer_size=None)
    out = []
    for d, explicit in ((ds.file_meta, True), (ds, not ds.original_encoding[0])):
        for tag in list(d._dict):
            raw_elem = d._dict[tag]
            tell = getattr(raw_elem, "value_tell", None)
            if tell is not None:
                out.append((int(tell), raw_elem.VR, explicit))
    return out


def _source(i: int):
    cache = _source.__dict__.setdefault("cache", {})
    if i not in cache:
        raw = Path(get_testdata_file(SOURCES[i], download=False)).read_bytes()
        cache[i] = (raw, _layout(raw))
    return cache[i]


def _length_offset(tell: int, vr, explicit: bool) -> tuple[int, int]:
    """Offset and size of the length field of the element whose value starts at ``tell``."""
    if explicit and str(vr) not in {"OB", "OD", "OF", "OL", "OV", "OW", "SQ", "SV", "UC",
                                    "UN", "UR", "UT", "UV"}:
        return tell - 2, 2
    return tell - 4, 4


def mutate(raw: bytes, layout, kind: str, a: int, b: int, c: int) -> bytes:
    """Apply one mutation; ``a``, ``b``, ``c`` are free integers the strategy draws."""
    data = bytearray(raw)
    n = len(data)
    if kind == "bitflip":
        for k in range(1 + c % 8):
            pos = (a + k * (b + 1) * 7919) % n
            data[pos] ^= 1 << ((c + k) % 8)
    elif kind == "truncate":
        return bytes(data[:a % n])
    elif kind in ("length", "huge_length"):
        tell, vr, explicit = layout[a % len(layout)]
        off, size = _length_offset(tell, vr, explicit)
        value = (b % (1 << (8 * size))) if kind == "length" else HUGE[c % len(HUGE)]
        value &= (1 << (8 * size)) - 1
        data[off:off + size] = value.to_bytes(size, "little")
    elif kind == "wrong_vr":
        cands = [e for e in layout if e[2]]
        tell, vr, explicit = cands[a % len(cands)]
        off, size = _length_offset(tell, vr, explicit)
        vr_at = off - 2 if size == 2 else off - 4
        data[vr_at:vr_at + 2] = VRS[b % len(VRS)]
    elif kind == "stream":  # the compressed / native pixel stream, as in _crashers.py
        start = raw.rfind(b"\xe0\x7f\x10\x00") + 12
        for k in range(1 + c % 5):
            pos = start + (a + k * 7919 * (b + 1)) % max(1, n - start)
            data[pos % n] = (b >> (k % 4 * 8)) & 0xFF
    elif kind == "duplicate":
        start = a % n
        length = 1 + b % 512
        at = c % n
        data[at:at] = data[start:start + length]
    return bytes(data)


class _Alarm(Exception):
    pass


def _on_alarm(signum, frame):
    raise _Alarm()


@pytest.fixture(scope="module")
def decoding_pool():
    from dicomml.parallel import get_executor

    with get_executor("processes", workers=2, item_timeout=TIME_LIMIT) as ex:
        yield ex


COUNTS: collections.Counter = collections.Counter()
PEAK_RSS_KIB = [0]


def _check_error(err, path: str, where: str):
    assert isinstance(err, DicommlError), f"{where}: {type(err).__name__}: {err}"
    assert path in str(err), f"{where}: the error does not name the file: {err}"
    assert "unexpected " not in str(err), f"{where}: an unhandled error was wrapped: {err}"


@pytest.mark.slow
@settings(derandomize=True, max_examples=MAX_EXAMPLES, deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture,
                                 HealthCheck.too_slow])
@given(src=st.integers(0, len(SOURCES) - 1),
       kind=st.sampled_from(["bitflip", "truncate", "length", "huge_length", "wrong_vr",
                             "duplicate", "stream"]),
       a=st.integers(0, 2 ** 31), b=st.integers(0, 2 ** 31), c=st.integers(0, 2 ** 31))
def test_fuzz_scan_read_image_read_series(tmp_path_factory, decoding_pool, src, kind, a, b, c):
    raw, layout = _source(src)
    folder = tmp_path_factory.mktemp("fuzz")
    path = folder / "x.dcm"
    path.write_bytes(mutate(raw, layout, kind, a, b, c))
    spath = str(path)
    COUNTS["files"] += 1
    COUNTS[f"kind:{kind}"] += 1

    old = signal.signal(signal.SIGALRM, _on_alarm)
    tracemalloc.start()
    signal.alarm(TIME_LIMIT)
    try:
        # scan: header only, in this process
        res = scan(folder, folder / "index.sqlite", progress=False, workers=0)
        with res.index() as idx:
            n_rows = len(idx.instances())
        assert res.files_seen == 1
        assert n_rows + len(res.skipped) == 1
        for p, reason in res.skipped:
            assert p == spath and reason
        COUNTS["scan:indexed" if n_rows else "scan:skipped"] += 1
        # read_series: headers here, compressed pixel data in the workers
        try:
            vol = read_series([spath], isolate=True, executor=decoding_pool, workers=1)
            assert isinstance(vol, Volume)
            COUNTS["read_series:volume"] += 1
        except DicommlError as e:
            _check_error(e, spath, "read_series")
            COUNTS[f"read_series:{type(e).__name__}"] += 1
    except _Alarm:
        pytest.fail(f"hang: scan/read_series still running after {TIME_LIMIT} s "
                    f"({SOURCES[src]}, {kind}, {a}, {b}, {c})")
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    assert peak < MAX_TRACED, f"{peak / 2**20:.0f} MiB traced ({SOURCES[src]}, {kind})"

    # read_image: decoded in a worker process (crash / hang detected and attributed)
    [(p, result)] = list(read_images([spath], executor=decoding_pool))
    assert p == spath
    if isinstance(result, Image):
        COUNTS["read_image:image"] += 1
    else:
        _check_error(result, spath, "read_image")
        if isinstance(result, DecoderCrashedError):
            assert "decoder crashed" in str(result)
        COUNTS[f"read_image:{type(result).__name__}"] += 1
    for pid in decoding_pool.worker_pids():
        PEAK_RSS_KIB[0] = max(PEAK_RSS_KIB[0], _hwm_kib(pid))
    assert PEAK_RSS_KIB[0] < MAX_WORKER_RSS_KIB, f"a decoding worker reached " \
        f"{PEAK_RSS_KIB[0]} KiB ({SOURCES[src]}, {kind}, {a}, {b}, {c})"


def _hwm_kib(pid: int) -> int:
    """Peak resident set size (VmHWM) of a live process, in KiB (0 if it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


@pytest.mark.slow
def test_fuzz_counts(decoding_pool):
    """Runs after the fuzz test: it really ran, and its counts go to the output."""
    print(f"\nfuzz counts: {dict(sorted(COUNTS.items()))}; "
          f"peak decoding-worker RSS {PEAK_RSS_KIB[0]} KiB")
    assert COUNTS["files"] >= MAX_EXAMPLES
    assert 0 < PEAK_RSS_KIB[0] < MAX_WORKER_RSS_KIB
