"""``dicomml show``: enhanced objects, LUT sequences, geometry warnings, honest codecs, --all.

References are read independently with pydicom (functional groups, LUT sequences) and
pydicom's own decoders (which plugins really decode a file).
"""

from __future__ import annotations

import warnings
from pathlib import Path

import pydicom
import pytest

from dicomml.cli import main
from tests.conftest import testdata

ROOT = Path(__file__).resolve().parents[2]


def _show(capsys, *argv) -> str:
    assert main(["show", *map(str, argv)]) == 0
    return capsys.readouterr().out


def _line(out: str, label: str) -> str:
    return next(ln for ln in out.splitlines() if ln.startswith(label))


def test_show_enhanced_ct_uses_the_functional_groups(capsys):
    path = next(p for p in (ROOT / "sample_dicom").rglob("IM*") if p.is_file()
                and _is_enhanced(p))
    out = _show(capsys, path)
    ds = pydicom.dcmread(path, stop_before_pixels=True)
    shared = ds.SharedFunctionalGroupsSequence[0]
    per = ds.PerFrameFunctionalGroupsSequence[0]

    def item(kw):
        return (per.get(kw) or shared.get(kw))[0]

    pvt, pm = item("PixelValueTransformationSequence"), item("PixelMeasuresSequence")
    assert f"intercept {float(pvt.RescaleIntercept):g}" in _line(out, "rescale:")
    assert "functional groups" in _line(out, "rescale:")
    spacing = _line(out, "pixel spacing:")
    assert all(f"{float(v):g}" in spacing for v in pm.PixelSpacing)
    voi = item("FrameVOILUTSequence")
    centers = voi.WindowCenter if voi["WindowCenter"].VM > 1 else [voi.WindowCenter]
    for k, c in enumerate(centers):
        assert f"center {float(c):g}," in _line(out, f"window {k + 1}:")
    assert "none in the header" not in out


def _is_enhanced(p) -> bool:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            ds = pydicom.dcmread(p, stop_before_pixels=True)
        except Exception:  # noqa: BLE001 - the export's broken files
            return False
    return "SharedFunctionalGroupsSequence" in ds


def test_show_modality_lut_sequence(capsys):
    path = testdata("mlut_18.dcm")
    out = _show(capsys, path)
    desc = pydicom.dcmread(path).ModalityLUTSequence[0].LUTDescriptor
    line = _line(out, "modality LUT:")
    assert f"{desc[0]} entries from {desc[1]}, {desc[2]} bits" in line


def test_show_voi_lut_sequence(capsys):
    path = testdata("vlut_04.dcm")
    out = _show(capsys, path)
    item = pydicom.dcmread(path).VOILUTSequence[0]
    n = item.LUTDescriptor[0] or 65536
    assert f"{n} entries from {item.LUTDescriptor[1]}" in _line(out, "VOI LUT 1:")
    assert "voilut:0" in out


@pytest.mark.parametrize("name", ["JPGExtended.dcm", "JPEG-lossy.dcm", "JPEG-LL.dcm"])
def test_show_names_only_plugins_that_decode(name, capsys):
    from pydicom.pixels import get_decoder, pixel_array

    path = testdata(name)
    out = _show(capsys, path)
    codec = _line(out, "codec:")
    ds = pydicom.dcmread(path)
    works, fails = [], []
    for plugin in sorted(get_decoder(ds.file_meta.TransferSyntaxUID).available_plugins):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                pixel_array(ds, index=0, decoding_plugin=plugin)
            works.append(plugin)
        except Exception:  # noqa: BLE001 - the reference: whatever pydicom raises
            fails.append(plugin)
    if works:
        head = codec.split("(failed:")[0]
        assert head.split("plugin(s): ")[1].strip() == ", ".join(works), codec
        for plugin in fails:
            assert plugin not in head
    else:
        assert "NOT decodable" in codec and all(p in codec for p in fails)


def test_show_flags_zero_pixel_spacing(tmp_path, capsys):
    ds = pydicom.dcmread(testdata("CT_small.dcm"))
    ds.PixelSpacing = [0, 0]
    path = tmp_path / "zero.dcm"
    ds.save_as(path)
    assert "ZERO spacing" in _line(_show(capsys, path), "pixel spacing:")


def test_show_series_flags_duplicate_positions(tmp_path, capsys):
    from dicomml.testing import write_ct_series

    paths = write_ct_series(tmp_path / "ct", n_slices=4, rows=16, columns=16, seed=9)
    a = pydicom.dcmread(paths[0])
    b = pydicom.dcmread(paths[2])
    b.ImagePositionPatient = a.ImagePositionPatient
    b.save_as(paths[2])
    db = tmp_path / "i.sqlite"
    assert main(["scan", str(tmp_path / "ct"), "--db", str(db), "--no-progress"]) == 0
    out = _show(capsys, a.SeriesInstanceUID, "--db", db)
    assert "duplicate position x1" in _line(out, "geometry:")
    assert main(["series", "--db", str(db)]) == 0
    assert "duplicate position x1" in capsys.readouterr().out


def test_show_all_dumps_the_header_with_identifiers_masked(capsys):
    path = testdata("CT_small.dcm")
    out = _show(capsys, path, "--all")
    ds = pydicom.dcmread(path, stop_before_pixels=True)
    dump = out.split("header (identifying attributes masked):", 1)[1]
    assert f"(0028,0010) Rows US: {ds.Rows}" in dump
    assert f"(0020,000D) StudyInstanceUID UI: {ds.StudyInstanceUID}" in dump
    assert "(0010,0010) PatientName PN: <masked>" in dump
    for value in (str(ds.PatientName), str(ds.PatientID)):
        assert value and value not in out
    assert "(0008,0020) StudyDate DA: <masked>" in dump  # (its digits may recur inside UIDs)
    # every top-level attribute appears once
    for el in ds:
        assert f"({el.tag.group:04X},{el.tag.element:04X})" in dump
