"""The compiled walk of the functional groups (numba) against the Python walk it replaces.

:func:`dicomml.io.functional_groups.parse_sequence` walks a :data:`WANTED` sequence with
:mod:`dicomml.io._groups_kernel` where numba imports (it is a dependency: in CI it must be
used) and with its Python walk where not, or where the kernel refuses the bytes. Both must
give the same items, the same end and the same exception, on every enhanced file of
dcm2niix's XA30 dataset, in other encodings, on mutated and truncated bytes, and on
structures built to reach the kernel's limits (nesting, a table of events that must grow).
(The Python walk itself is held against pydicom in ``test_functional_groups.py``.)
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest

import dicomml.io.functional_groups as fg
from dicomml.io.functional_groups import PARSE_ERRORS, parse_sequence, read_groups
from dicomml.io.walker import UNDEFINED, NestingTooDeep
from dicomml.testing.enhanced import write_enhanced_ct
from tests.io.encodings import rewrite_encoding
from tests.io.test_functional_groups import _check_equal, _enhanced_files


def _outcome(fn, *args):
    try:
        return "ok", fn(*args)
    except PARSE_ERRORS as exc:
        return type(exc).__name__, getattr(exc, "offset", None)


def _both(fn, *args):
    """(compiled outcome, Python outcome) of ``fn(*args)``."""
    saved = fg.COMPILED, fg.COMPILE_AFTER
    try:
        fg.COMPILED, fg.COMPILE_AFTER = True, 0
        fast = _outcome(fn, *args)
        fg.COMPILED = False
        slow = _outcome(fn, *args)
    finally:
        fg.COMPILED, fg.COMPILE_AFTER = saved
    return fast, slow


@pytest.fixture(scope="module")
def xa30_files():
    files = _enhanced_files()
    assert len(files) >= 60
    return files


def test_the_compiled_walk_is_there():
    """numba is a dependency of dicomml: the compiled walk must be in use."""
    assert fg.compiled() and fg.COMPILED


def test_a_process_imports_the_kernel_only_after_its_first_frames(tmp_path):
    """A fresh process that walks a few frames does not import numba; one that has walked
    COMPILE_AFTER frames does, and then uses the kernel (the same items)."""
    import subprocess
    import sys

    path = tmp_path / "ect.dcm"
    write_enhanced_ct(path, n_frames=6, rows=8, columns=8, shared=False)
    code = (
        "import sys\n"
        "import dicomml.io.functional_groups as fg\n"
        f"fg.COMPILE_AFTER = {{after}}\n"
        f"g = [fg.groups_of_file({str(path)!r}) for _ in range(3)]\n"
        "assert g[0] == g[1] == g[2]\n"
        "print('numba' in sys.modules)\n")
    root = Path(__file__).resolve().parents[2]
    out = [subprocess.run([sys.executable, "-c", code.format(after=after)], cwd=root,
                          capture_output=True, text=True, check=True).stdout.split()
           for after in (10_000, 6)]
    assert out == [["False"], ["True"]]


def test_every_xa30_enhanced_file_equals_the_python_walk(xa30_files):
    frames = 0
    for p in xa30_files:
        data = Path(p).read_bytes()
        fast, slow = _both(read_groups, data)
        assert fast[0] == "ok" and fast == slow, p
        frames += len(fast[1][0].per_frame)
    assert frames > 3000


@pytest.mark.parametrize("implicit", [False, True])
@pytest.mark.parametrize("defined", [False, True])
def test_encodings_equal_the_python_walk(xa30_files, tmp_path, implicit, defined):
    for src in xa30_files[:3]:
        dst = rewrite_encoding(src, tmp_path / "copy.dcm", implicit=implicit, defined=defined)
        fast, slow = _both(read_groups, dst.read_bytes())
        assert fast[0] == "ok" and fast == slow, src
        assert _check_equal(dst) > 1          # and pydicom's values, through the kernel


def test_mutated_and_truncated_bytes_give_the_python_walks_outcome(xa30_files, tmp_path):
    """Single-byte mutations and truncations inside the groups (explicit, implicit, defined
    lengths): the same items, or the same exception at the same offset."""
    rng = np.random.default_rng(29)
    outcomes = set()
    sources = [Path(xa30_files[0]),
               rewrite_encoding(xa30_files[1], tmp_path / "i.dcm", implicit=True, defined=False),
               rewrite_encoding(xa30_files[2], tmp_path / "d.dcm", implicit=False, defined=True)]
    for src in sources:
        data = src.read_bytes()
        _, (start, end) = read_groups(data)
        for at in rng.integers(start, end, 120):
            mutated = bytearray(data)
            mutated[at] = int(rng.integers(0, 256))
            fast, slow = _both(read_groups, bytes(mutated))
            assert fast == slow, (src.name, int(at))
            outcomes.add(fast[0])
        for at in rng.integers(start, end, 15):
            fast, slow = _both(read_groups, data[:at])
            assert fast == slow, (src.name, int(at))
            outcomes.add(fast[0])
    assert {"ok", "Fallback", "Truncated"} <= outcomes


def _el(tag: int, vr: bytes, value: bytes) -> bytes:
    g, e = tag >> 16, tag & 0xFFFF
    return struct.pack("<HH2sH", g, e, vr, len(value)) + value


def _sq(tag: int, body: bytes) -> bytes:
    """An undefined-length explicit-VR sequence holding ``body`` (its items)."""
    g, e = tag >> 16, tag & 0xFFFF
    return struct.pack("<HH2sHI", g, e, b"SQ", 0, UNDEFINED) + body + \
        struct.pack("<HHI", 0xFFFE, 0xE0DD, 0)


def _item(body: bytes) -> bytes:
    return struct.pack("<HHI", 0xFFFE, 0xE000, UNDEFINED) + body + \
        struct.pack("<HHI", 0xFFFE, 0xE00D, 0)


def test_many_small_items_grow_the_table_of_events():
    """Items of one short value each need more event rows than the first guess."""
    body = b"".join(_item(_el(0x00180050, b"DS", f"{i % 97:<2d}".encode()[:2]))
                    for i in range(3000))
    data = _sq(0x52009230, body)
    fast, slow = _both(parse_sequence, data, 12, UNDEFINED, True)
    assert fast[0] == "ok" and fast == slow
    items, end = fast[1]
    assert end == len(data) and len(items) == 3000
    assert [it["SliceThickness"] for it in items[:3]] == [0.0, 1.0, 2.0]


@pytest.mark.parametrize("wanted", [True, False])
def test_nesting_too_deep_is_the_python_walks_error(wanted):
    """70 nested sequences (wanted ones, or a private one nobody reads) inside a frame."""
    tag = 0x00209113 if wanted else 0x00211010
    body = _el(0x00200032, b"DS", b"1\\2\\3 ")
    for _ in range(70):
        body = _item(_sq(tag, body))
    fast, slow = _both(parse_sequence, body, 0, len(body), True)
    assert fast == slow and fast[0] == NestingTooDeep.__name__
    shallow = _item(_sq(tag, _item(_sq(tag, _item(_el(0x00200032, b"DS", b"1\\2\\3 "))))))
    fast, slow = _both(parse_sequence, shallow, 0, len(shallow), True)
    assert fast[0] == "ok" and fast == slow


def test_a_repeated_group_is_shared_only_when_its_bytes_are_the_same(tmp_path):
    """The kernel's SAME rows: byte-identical groups of consecutive frames are one object,
    a group that changes is parsed anew (defined and undefined lengths)."""
    path = tmp_path / "ect.dcm"
    write_enhanced_ct(path, n_frames=4, rows=16, columns=16, shared=False)
    for defined in (False, True):
        dst = rewrite_encoding(path, tmp_path / f"c{defined}.dcm", implicit=False,
                               defined=defined)
        fast, slow = _both(read_groups, dst.read_bytes())
        assert fast == slow
        per = fast[1][0].per_frame
        assert per[0]["PixelMeasuresSequence"] is per[1]["PixelMeasuresSequence"]
        assert per[0]["PlanePositionSequence"] != per[1]["PlanePositionSequence"]
