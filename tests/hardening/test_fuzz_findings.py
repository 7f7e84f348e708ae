"""What ``bench/bench_fuzz.py --mutated 10000`` found in show and read_series (issue 14).

* ``dicomml show --all``: the dump converted every element in this process, so a corrupt
  value or an unknown VR (``NotImplementedError``, ``BytesLengthException``) escaped as a
  traceback, a sequence whose items never end a bare ``OSError`` that did not name the
  file (one line without the path through the CLI), and the 2.3 GB sparse
  private element of :func:`dicomml.testing.hostile.huge_private_element` was read whole
  (2.3 GB RSS). Now such an element is one line and the dump goes on; large values are not
  read.
* ``read_series``: a slice with a position but a malformed (0020,0037) Image Orientation
  (Patient) (one value corrupted by a bit flip) raised a bare ``ValueError`` from a reshape;
  a bit flip in (0002,0010) Transfer Syntax UID ("1.2.840.10008.1.2\xae1") pydicom's
  ``ValueError: UID is not a transfer syntax`` (``isolate=True``, or more than one worker).
* ``dicomml preview``: (0008,0060) Modality with a wrong VR (US) became an ``int`` in
  ``Image.modality`` (and ``Volume.modality``) and ``default_windows`` raised
  ``AttributeError`` on ``.upper()``.
"""

from __future__ import annotations

import resource
from pathlib import Path

import pydicom
import pytest
from pydicom.data import get_testdata_file

from dicomml.cli import main
from dicomml.cli.show import summary
from dicomml.errors import InvalidDicomError, SeriesError
from dicomml.io import read_image, read_series
from dicomml.testing.hostile import huge_private_element, items_without_delimiters
from tests.hardening._export import write_export


def _wrong_vr(tmp_path):
    """CT_small.dcm with the VR of (0008,0021) Series Date replaced by 'XX' (explicit VR)."""
    raw = bytearray(Path(get_testdata_file("CT_small.dcm", download=False)).read_bytes())
    at = raw.index(b"\x08\x00\x21\x00DA")
    raw[at + 4:at + 6] = b"XX"
    path = tmp_path / "wrong_vr.dcm"
    path.write_bytes(bytes(raw))
    return path


def test_show_all_survives_an_unknown_vr(tmp_path, capsys):
    path = _wrong_vr(tmp_path)
    assert main(["show", str(path), "--all"]) == 0
    out, err = capsys.readouterr()
    assert "(0008,0021) SeriesDate: <cannot be parsed: NotImplementedError>" in out
    assert "(0028,0010) Rows US: 128" in out  # the dump goes on after the bad element
    assert "Traceback" not in err


def test_show_names_the_file_whose_items_never_end(tmp_path):
    path = items_without_delimiters(tmp_path)
    with pytest.raises(InvalidDicomError, match=f"{path}: cannot parse the DICOM data set "
                       r"\(OSError: No tag to read"):
        summary(str(path), all_attributes=True)


def test_show_all_does_not_read_a_huge_private_element(tmp_path, capsys):
    path = huge_private_element(tmp_path)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    assert main(["show", str(path), "--all"]) == 0
    grown_mib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    out = capsys.readouterr().out
    assert "(7FDF,1010) Unknown OB: <2300000000 bytes, not read>" in out
    assert grown_mib < 512


def test_read_series_malformed_orientation_is_an_issue(tmp_path):
    write_export(tmp_path / "s", 3)
    files = sorted(str(p) for p in (tmp_path / "s").rglob("*.dcm"))
    ds = pydicom.dcmread(files[1])
    ds.ImageOrientationPatient = [1, 0, 0, 0, 1]  # five values: unusable
    ds.save_as(files[1])
    vol = read_series([files[1]])  # alone: stacked without geometry, and said so
    assert vol.pixels.shape[0] == 1
    assert [i.kind for i in vol.issues] == ["no_position"]
    vol = read_series(files)  # among good slices: left out by name
    assert vol.pixels.shape[0] == 2 and files[1] not in vol.paths
    assert any("f000001" in i.detail for i in vol.issues)


def test_read_series_corrupt_transfer_syntax_uid_is_named(tmp_path):
    raw = Path(get_testdata_file("CT_small.dcm", download=False)).read_bytes()
    ts = b"1.2.840.10008.1.2.1\x00"
    assert raw.count(ts) == 1
    path = tmp_path / "ts_flipped.dcm"
    path.write_bytes(raw.replace(ts, b"1.2.840.10008.1.2\xae1\x00"))
    for kwargs in ({"isolate": True, "workers": 1}, {"workers": 2}):
        with pytest.raises(SeriesError, match=f"{path}: cannot decode .*transfer syntax"):
            read_series([str(path)], **kwargs)


def test_modality_with_a_wrong_vr_is_text(tmp_path):
    # an RLE file: read by pydicom (the fast native-file parser keeps the text)
    raw = bytearray(Path(get_testdata_file("MR_small_RLE.dcm",
                                           download=False)).read_bytes())
    at = raw.index(b"\x08\x00\x60\x00CS")
    raw[at + 4:at + 6] = b"US"  # "MR" read as an unsigned short
    path = tmp_path / "modality_us.dcm"
    path.write_bytes(bytes(raw))
    assert isinstance(read_image(path).modality, str)
    assert isinstance(read_series([str(path)]).modality, str)
    assert main(["preview", str(path), "-o", str(tmp_path / "p.png")]) == 0
    assert (tmp_path / "p.png").stat().st_size > 0
