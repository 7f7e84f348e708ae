"""Window.function is the (0028,1056) VOI LUT Function enum (PS3.3 C.11.2.1.3) of io.types:
strings are converted, unknown values refused (ConfigError from the caller, InvalidDicomError
from a file), and the file's own function applied equals pydicom's apply_windowing."""

from __future__ import annotations

import numpy as np
import pydicom
import pytest
from pydicom.pixels import apply_windowing as pd_apply_windowing

import dicomml.io
import dicomml.preprocess
from dicomml.errors import ConfigError, InvalidDicomError
from dicomml.io import VOILUTFunction, Window, read_image
from dicomml.preprocess import resolve_window
from tests.conftest import testdata as sample_file


def test_one_enum_for_io_and_preprocess():
    assert dicomml.preprocess.VOILUTFunction is VOILUTFunction
    assert dicomml.io.VOILUTFunction is VOILUTFunction
    assert [m.value for m in VOILUTFunction] == ["LINEAR", "LINEAR_EXACT", "SIGMOID"]


@pytest.mark.parametrize("given, member", [
    ("LINEAR", VOILUTFunction.LINEAR), ("sigmoid", VOILUTFunction.SIGMOID),
    (" Linear_Exact ", VOILUTFunction.LINEAR_EXACT), (VOILUTFunction.SIGMOID,
                                                      VOILUTFunction.SIGMOID),
    (None, VOILUTFunction.LINEAR), ("", VOILUTFunction.LINEAR)])
def test_a_string_is_converted(given, member):
    w = Window(40.0, 80.0, None, given)
    assert w.function is member
    assert w.function == member.value  # still compares equal to its DICOM string
    assert f"{w.function}" == str(w.function) == member.value


def test_the_default_is_linear():
    assert Window(40.0, 80.0).function is VOILUTFunction.LINEAR


@pytest.mark.parametrize("bad", ["LINEARX", "SIGMOIDAL", 3, "LINEAR EXACT"])
def test_an_unknown_value_names_the_tag_and_the_allowed_values(bad):
    with pytest.raises(ConfigError) as exc:
        Window(40.0, 80.0, None, bad)
    msg = str(exc.value)
    assert "(0028,1056)" in msg
    assert "['LINEAR', 'LINEAR_EXACT', 'SIGMOID']" in msg
    assert f"Received: function={bad!r}" in msg


def test_a_typo_gets_a_suggestion():
    with pytest.raises(ConfigError, match="Did you mean 'SIGMOID'"):
        Window(40.0, 80.0, None, "SIGMOIDD")


def _with_function(tmp_path, function: str):
    ds = pydicom.dcmread(sample_file("CT_small.dcm"))
    ds.WindowCenter, ds.WindowWidth, ds.VOILUTFunction = 40, 400, function
    path = tmp_path / f"{function or 'none'}.dcm"
    ds.save_as(path)
    return path, ds


@pytest.mark.parametrize("function", ["LINEAR", "LINEAR_EXACT", "SIGMOID"])
def test_the_files_function_as_read_and_applied_equals_pydicom(tmp_path, function):
    path, ds = _with_function(tmp_path, function)
    img = read_image(path)
    (w,) = img.windows
    assert w.function is VOILUTFunction(function)
    # pydicom's windowing of the same modality values, rescaled to [0, 1]
    values = img.pixels[0].astype(np.float64)
    ref = pd_apply_windowing(values.copy(), ds)
    lo_hi = pd_apply_windowing(np.array([-1e4, 1e4]), ds)  # the limits (no exp overflow)
    ref01 = (ref - lo_hi[0]) / (lo_hi[1] - lo_hi[0])
    ours = resolve_window("file:0", file_windows=img.windows).apply(values)
    np.testing.assert_allclose(ours, ref01, atol=1e-5)


def test_a_files_unknown_function_is_a_file_defect(tmp_path):
    path, _ = _with_function(tmp_path, "GAMMA")
    with pytest.raises(InvalidDicomError) as exc:
        read_image(path)
    msg = str(exc.value)
    assert "(0028,1056)" in msg and "'GAMMA'" in msg and str(path) in msg
    assert "SIGMOID" in msg
