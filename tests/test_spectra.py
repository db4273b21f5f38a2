"""The spectra container: exact unit conversion, validation, resampling without extrapolation."""

import numpy as np
import pytest

from caltransfer_jax.data.spectra import Spectra, SpectraError, concatenate, paired


def _nir(values=None, axis=None, **kw):
    axis = np.arange(1100.0, 1110.0, 2.0) if axis is None else axis
    values = np.ones((2, axis.size)) if values is None else values
    return Spectra.from_axis(values, axis, "nm", modality="NIR", instrument="m5", **kw)


def test_units_convert_exactly_and_round_trip():
    s = _nir()
    np.testing.assert_allclose(s.wavenumber, 1e7 / np.arange(1100.0, 1110.0, 2.0), rtol=0)
    np.testing.assert_allclose(s.axis, np.arange(1100.0, 1110.0, 2.0), rtol=1e-15)
    um = Spectra.from_axis(
        np.ones((1, 3)), [2.5, 5.0, 10.0], "micrometers", modality="IR", instrument="a"
    )
    np.testing.assert_allclose(um.wavenumber, [4000.0, 2000.0, 1000.0])
    assert um.unit == "um"


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (
            {"values": np.array([[1.0, np.nan, 1, 1, 1]])},
            "non-finite value nan in spectrum 0, point 1",
        ),
        ({"values": np.ones((2, 4))}, "axis has 5 points but spectra have 4 columns"),
        ({"axis": np.array([1100.0, 1102, 1101, 1104, 1106])}, "not strictly monotonic"),
        ({"axis": np.array([1100.0, 1102, 1102, 1104, 1106])}, "not strictly monotonic"),
        ({"values": np.ones((0, 5))}, "no spectra"),
        ({"labels": np.ones((2, 1)), "label_names": ("a", "b")}, "1 label columns but 2 names"),
        ({"labels": np.array([[np.inf], [1.0]]), "label_names": ("a",)}, "infinite label"),
    ],
)
def test_bad_input_is_refused_with_origin_and_problem(kwargs, match):
    with pytest.raises(SpectraError, match=match) as error:
        _nir(origin="lab/file.csv", **kwargs)
    assert "lab/file.csv" in str(error.value)


def test_unknown_unit_and_modality():
    with pytest.raises(SpectraError, match="unknown axis unit 'furlong'"):
        Spectra.from_axis(np.ones((1, 2)), [1, 2], "furlong", modality="NIR", instrument="a")
    with pytest.raises(SpectraError, match="unknown modality"):
        Spectra.from_axis(np.ones((1, 2)), [1, 2], "nm", modality="UV", instrument="a")


def test_missing_label_names_the_row_and_sample():
    s = _nir(labels=np.array([[1.0], [np.nan]]), label_names=("moisture",), sample_id=["a", "b"])
    with pytest.raises(
        SpectraError, match="missing for 1 of the requested spectra .*row 1, sample 'b'"
    ):
        s.label("moisture")
    with pytest.raises(SpectraError, match="no label 'oil'"):
        s.label("oil")


def test_resampling_interpolates_and_refuses_to_extrapolate():
    axis = np.linspace(1100, 1200, 51)
    s = _nir(values=np.stack([axis, axis**2]), axis=axis)
    inner = 1e7 / np.linspace(1110, 1190, 9)
    out = s.resample(inner)
    np.testing.assert_allclose(out.axis, np.linspace(1110, 1190, 9))
    np.testing.assert_allclose(out.values[0], np.interp(inner, s.wavenumber[::-1], axis[::-1]))
    with pytest.raises(SpectraError, match="refusing to extrapolate"):
        s.resample(1e7 / np.linspace(1090, 1150, 5))
    np.testing.assert_allclose(s.resample(s.wavenumber).values, s.values)


def test_values_are_read_only_and_pairing_follows_sample_ids():
    a = _nir(values=np.arange(10.0).reshape(2, 5), sample_id=["x", "y"])
    b = _nir(values=np.arange(10.0).reshape(2, 5)[::-1], sample_id=["y", "x"])
    with pytest.raises(ValueError):
        a.values[0, 0] = 1.0
    pa, pb = paired(a, b)
    np.testing.assert_array_equal(pa.values, pb.values)
    both = concatenate([a, b])
    assert both.n == 4
    with pytest.raises(SpectraError, match="axis does not match"):
        concatenate([a, _nir(axis=np.arange(1102.0, 1112.0, 2.0))])


def test_labels_of_requested_rows_may_be_present_where_others_are_missing():
    s = _nir(np.ones((3, 5)), labels=np.array([[1.0], [np.nan], [3.0]]), label_names=("moisture",))
    np.testing.assert_array_equal(s.label("moisture", rows=[0, 2]), [1.0, 3.0])
    np.testing.assert_array_equal(s.has_label("moisture"), [True, False, True])
