"""Readers: wide CSV, label CSV, MATLAB .mat (plain and Eigenvector DataSet) and JCAMP-DX.

Real files are read where the shared development data are present; every bad-input case is a
small file written into tmp_path and must raise a SpectraError naming the file and the problem.
"""

import csv

import numpy as np
import pytest
import scipy.io
from scipy.io.matlab import MatlabObject

from caltransfer_jax.data.readers import (
    read_jcamp,
    read_jcamp_blocks,
    read_label_csv,
    read_mat,
    read_wide_csv,
)
from caltransfer_jax.data.spectra import SpectraError, concatenate

NIR = {"axis_unit": "nm", "modality": "NIR", "instrument": "a"}


def _write(tmp_path, text, name="f.csv"):
    path = tmp_path / name
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return path


def _refused(path, match, read):
    with pytest.raises(SpectraError, match=match) as error:
        read(path)
    assert str(path) in str(error.value)


# ---------------------------------------------------------------------------------------------
# CSV.

GOOD = "id,oil,1100,1102,1104\ns1,3.5,0.1,0.2,0.3\ns2,3.7,0.4,0.5,0.6\n"


def _wide(path, **kwargs):
    options = {**NIR, "label_columns": ("oil",), "sample_id_column": "id", **kwargs}
    return read_wide_csv(path, **options)


def test_wide_csv_reads_axis_labels_and_ids(tmp_path):
    s = _wide(_write(tmp_path, GOOD), label_units=["%"], value_unit="log(1/R)")
    np.testing.assert_array_equal(s.axis, [1100, 1102, 1104])
    np.testing.assert_array_equal(s.values, [[0.1, 0.2, 0.3], [0.4, 0.5, 0.6]])
    np.testing.assert_array_equal(s.label("oil"), [3.5, 3.7])
    assert s.sample_id.tolist() == ["s1", "s2"] and s.label_units == ("%",)
    assert s.value_unit == "log(1/R)" and s.modality == "NIR" and s.unit == "nm"


@pytest.mark.parametrize(
    "text, match",
    [
        ("id,oil,1100,1102,1104\ns1,3.5,0.1,nan,0.3\n", r"line 2, column 4 \('1102'\): missing"),
        ("id,oil,1100,1102,1104\ns1,3.5,0.1,inf,0.3\n", "non-finite value 'inf' in spectra"),
        ("id,oil,1100,1102,1104\ns1,3.5,0.1,,0.3\n", "missing value '' in spectra"),
        ("", "empty file"),
        ("\n  \n", "empty file"),
        ("id,oil,1100,1102,1104\n", "header only, no data rows"),
        ("id,oil,1100,1102,1104\ns1,3.5,0.1,0.2\n", "line 2 has 4 fields but the header has 5"),
        ("id,oil,1100,1102,1104\ns1,3.5,0.1,abc,0.3\n", r"column 4 \('1102'\): 'abc' is not a"),
        ("id,oil,1100,foo,1104\ns1,3.5,0.1,0.2,0.3\n", "column 4 header 'foo' is neither"),
        ("id,oil,1100,1104,1102\ns1,3.5,0.1,0.2,0.3\n", "not strictly monotonic"),
        (
            "id,oil,1100,1102,1102.0\ns1,3.5,0.1,0.2,0.3\n",
            r"duplicate axis value 1102 in columns \[4, 5\]",
        ),
        ("id,oil,1100,nan,1104\ns1,3.5,0.1,0.2,0.3\n", "axis has a non-finite value"),
        ("id,fat,1100,1102,1104\ns1,3.5,0.1,0.2,0.3\n", r"missing column\(s\) \['oil'\]"),
        ("id,oil,1100,1102,1104\ns1,,0.1,0.2,0.3\n", "missing value '' in labels"),
        ("id,oil,1100,1102,1104\ns1,NA,0.1,0.2,0.3\n", "missing value 'NA' in labels"),
        ("id,oil,1100,1102,1104\ns1,-inf,0.1,0.2,0.3\n", "non-finite value '-inf' in labels"),
        ("id,oil,1100,1100,1104\ns1,3.5,0.1,0.2,0.3\n", "duplicate column name '1100'"),
        ("id,oil,1100,,1104\ns1,3.5,0.1,0.2,0.3\n", "column 4 of the header has no name"),
        ("id,oil,1100,1102\n,3.5,0.1,0.2\n", "empty sample id"),
        ("id,oil,1100,1102\ns1,3.5,0.1,0.2\ns1,3.6,0.1,0.2\n", "'s1' repeats that of line 2"),
        ('id,oil,1100,1102\n"s1,3.5,0.1,0.2\n', "line 2 has 1 fields"),
    ],
)
def test_wide_csv_bad_input(tmp_path, text, match):
    _refused(_write(tmp_path, text), match, _wide)


def test_wide_csv_refuses_binary_garbage_wrong_encoding_and_bad_options(tmp_path):
    garbage = np.random.default_rng(0).integers(0, 256, 2000, dtype=np.uint8).tobytes()
    _refused(_write(tmp_path, garbage), "binary content", _wide)
    _refused(_write(tmp_path, "id,oil,1100\ns\xe9,1,2\n".encode("latin-1")), "not UTF-8", _wide)
    _refused(tmp_path / "absent.csv", "file not found", _wide)
    _refused(tmp_path, "is a directory", _wide)
    path = _write(tmp_path, GOOD)
    _refused(path, "unknown axis unit 'furlong'", lambda p: _wide(p, axis_unit="furlong"))
    _refused(path, "unknown modality 'UV'", lambda p: _wide(p, modality="UV"))
    _refused(path, "2 label units for 1 labels", lambda p: _wide(p, label_units=["%", "%"]))
    _refused(path, "no spectral columns", lambda p: _wide(p, meta_columns=("1100", "1102", "1104")))


def test_missing_labels_become_nan_only_when_allowed(tmp_path):
    path = _write(tmp_path, "id,oil,1100,1102\ns1,,0.1,0.2\ns2,N/A,0.1,0.2\ns3,3,0.1,0.2\n")
    s = _wide(path, allow_missing_labels=True)
    np.testing.assert_array_equal(s.labels[:, 0], [np.nan, np.nan, 3.0])
    with pytest.raises(SpectraError, match="missing for 2 of the requested spectra"):
        s.label("oil")


def test_two_instruments_with_different_axes_cannot_be_stacked(tmp_path):
    a = read_wide_csv(_write(tmp_path, "1100,1102\n1,2\n", "a.csv"), **NIR)
    b = read_wide_csv(_write(tmp_path, "1100,1104\n1,2\n", "b.csv"), **{**NIR, "instrument": "b"})
    with pytest.raises(SpectraError, match=r"b\.csv: axis does not match that of .*a\.csv"):
        concatenate([a, b])


def test_label_csv_attaches_by_row_or_by_sample_id(tmp_path):
    spectra = read_wide_csv(_write(tmp_path, "1100,1102\n1,2\n3,4\n", "s.csv"), **NIR)
    by_row = read_label_csv(_write(tmp_path, "Oil,Kind\n3.5,x\n3.7,y\n"), meta_columns=("Kind",))
    assert by_row.names == ("Oil",) and by_row.meta["Kind"].tolist() == ["x", "y"]
    np.testing.assert_array_equal(by_row.attach(spectra).label("Oil"), [3.5, 3.7])
    by_id = read_label_csv(
        _write(tmp_path, "id,oil\n1,3.7\n0,3.5\n"), sample_id_column="id", label_units={"oil": "%"}
    )
    attached = by_id.attach(spectra)
    np.testing.assert_array_equal(attached.label("oil"), [3.5, 3.7])
    assert attached.label_units == ("%",)
    short = read_label_csv(_write(tmp_path, "oil\n3.5\n", "short.csv"))
    with pytest.raises(SpectraError, match=r"short\.csv: 1 label rows but .*s\.csv has 2 spectra"):
        short.attach(spectra)
    other = read_label_csv(_write(tmp_path, "id,oil\n7,3.5\n", "o.csv"), sample_id_column="id")
    with pytest.raises(SpectraError, match=r"o\.csv: no labels for 2 sample\(s\)"):
        other.attach(spectra)
    _refused(
        _write(tmp_path, "oil\n3.5\n"),
        "units given for unknown label",
        lambda p: read_label_csv(p, label_units={"fat": "%"}),
    )


def test_real_wide_csv_files(shared_data):
    path = shared_data / "corn" / "m5spec.csv"
    s = read_wide_csv(path, axis_unit="nm", modality="NIR", instrument="m5")
    rows = list(csv.reader(path.open()))
    np.testing.assert_array_equal(s.values, [[float(x) for x in row] for row in rows[1:]])
    np.testing.assert_allclose(s.axis, np.arange(1100, 2499, 2), rtol=1e-15)
    tablets = read_wide_csv(
        shared_data / "idrc2002_tablets" / "Pharma_Instrument1.csv",
        axis_unit="nm",
        modality="NIR",
        instrument="spec1",
        label_columns=("weight", "hardness", "assay"),
        meta_columns=("SampleType",),
    )
    assert tablets.values.shape == (655, 650) and tablets.labels.shape == (655, 3)
    np.testing.assert_array_equal(tablets.axis[[0, -1]], [600, 1898])


# ---------------------------------------------------------------------------------------------
# MATLAB .mat.

X = np.arange(12.0).reshape(3, 4) / 10
WL = np.array([[1100.0, 1102, 1104, 1106]])


def _cell(rows):
    cell = np.empty((len(rows), len(rows[0])), dtype=object)
    for i, row in enumerate(rows):
        for j, item in enumerate(row):
            cell[i, j] = item
    return cell


def _dataset_fields(include_rows=(1, 2, 3), kind="data"):
    return {
        "name": "m5spec",
        "type": kind,
        "data": X,
        "axisscale": _cell([[np.zeros((1, 0)), ""], [WL, "Wavelength (nm)"]]),
        "label": _cell([[np.array(["s1", "s2", "s3"]), "Sample"], [np.zeros((0, 0)), ""]]),
        "include": _cell([[np.array([include_rows])], [np.array([[1, 2, 3, 4]])]]),
    }


def _as_object(fields):
    record = np.empty((1, 1), dtype=[(name, object) for name in fields])
    record[0, 0] = tuple(fields.values())
    return MatlabObject(record, "dataset")


def _mat(tmp_path, variables, name="f.mat"):
    path = tmp_path / name
    scipy.io.savemat(path, variables)
    return path


def test_mat_plain_matrix_with_axis_and_labels(tmp_path):
    y = np.array([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]])
    path = _mat(tmp_path, {"X": X, "wl": WL, "Y": y})
    s = read_mat(path, key="X", axis_key="wl", labels_key="Y", label_names=("a", "b"), **NIR)
    np.testing.assert_array_equal(s.values, X)
    np.testing.assert_array_equal(s.axis, WL.ravel())
    np.testing.assert_array_equal(s.labels, y)
    assert s.sample_id.tolist() == ["0", "1", "2"] and s.instrument[0] == "a"


@pytest.mark.parametrize("as_object", [True, False], ids=["dataset-object", "struct"])
def test_mat_eigenvector_dataset(tmp_path, as_object):
    fields = _dataset_fields(include_rows=(1, 3))
    labels = {**_dataset_fields(), "data": np.array([[10.0], [20.0], [30.0]])}
    labels["label"] = _cell([[np.zeros((0, 0)), ""], [np.array(["moisture"]), "Property"]])
    labels["include"] = _cell([[np.array([[1, 2, 3]])], [np.array([[1]])]])
    wrap = _as_object if as_object else dict
    path = _mat(tmp_path, {"m5spec": wrap(fields), "propvals": wrap(labels)})
    s = read_mat(path, key="m5spec", labels_key="propvals", axis_unit="nm", modality="NIR")
    np.testing.assert_array_equal(s.values, X[[0, 2]])
    np.testing.assert_array_equal(s.axis, WL.ravel())
    assert s.sample_id.tolist() == ["s1", "s3"] and s.instrument.tolist() == ["m5spec"] * 2
    assert s.label_names == ("moisture",)
    np.testing.assert_array_equal(s.labels.ravel(), [10.0, 30.0])


def _mat_v73(tmp_path):
    text = b"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: Mon Jan  1 00:00:00 2024 HDF5"
    header = text.ljust(116, b" ") + b"\0" * 8 + b"\x00\x02IM"
    return _write(tmp_path, header + b"\0" * 384 + b"\x89HDF\r\n\x1a\n" + b"\0" * 64, "v73.mat")


def test_mat_bad_input(tmp_path):
    def read(**kwargs):
        return lambda path: read_mat(path, **{"key": "X", "axis_key": "wl", **NIR, **kwargs})

    rng = np.random.default_rng(1)
    _refused(_write(tmp_path, rng.bytes(3000), "r.mat"), "not a MATLAB .mat file|corrupt", read())
    whole = _mat(tmp_path, {"X": X, "wl": WL}).read_bytes()
    _refused(_write(tmp_path, whole[: len(whole) // 2], "t.mat"), "corrupt .mat file", read())
    _refused(_write(tmp_path, b"", "e.mat"), "empty file", read())
    _refused(_mat_v73(tmp_path), r"v7\.3 \(HDF5\) \.mat files are not supported", read())
    path = _mat(tmp_path, {"X": X, "wl": WL})
    _refused(path, r"no variable 'Z'; the file has \['X', 'wl'\]", read(key="Z"))
    _refused(path, "has no axis; pass axis_key", read(axis_key=None))
    _refused(path, "unknown axis unit", read(axis_unit="Hz"))
    _refused(path, "label_names must name the 4 columns", read(labels_key="X"))
    cases = {
        "shape.mat": ({"X": np.ones((2, 3, 4)), "wl": WL}, "expected a 2-D matrix"),
        "text.mat": ({"X": "abc", "wl": WL}, "expected a real numeric matrix"),
        "axis.mat": ({"X": X, "wl": WL[:, :3]}, "the axis has 3 values but 'X' has 4 columns"),
        "order.mat": ({"X": X, "wl": WL[:, ::-1][:, [0, 2, 1, 3]]}, "not strictly monotonic"),
        "nan.mat": ({"X": np.where(X > 0.5, np.nan, X), "wl": WL}, "non-finite value nan"),
        "rows.mat": ({"X": X, "wl": WL, "Y": np.ones((2, 1))}, "'Y' has 2 rows but 'X' has 3"),
        "nanlabel.mat": ({"X": X, "wl": WL, "Y": np.array([[1.0], [np.nan], [2]])}, "NaN"),
    }
    for name, (variables, match) in cases.items():
        _refused(
            _mat(tmp_path, variables, name),
            match,
            read(**({"labels_key": "Y", "label_names": ["y"]} if "Y" in variables else {})),
        )
    datasets = {
        "image.mat": (_dataset_fields(kind="image"), "DataSet type 'image' is not supported"),
        "include.mat": (_dataset_fields(include_rows=(1, 9)), "indices in 1..3"),
        "nodata.mat": ({"name": "x", "axisscale": np.zeros(1)}, "with a 'data' field"),
        "labels.mat": (
            {**_dataset_fields(), "label": _cell([[np.array(["a", "b"]), ""], [np.zeros(0), ""]])},
            "mode-1 labels: 2 labels for 3 entries",
        ),
    }
    for name, (fields, match) in datasets.items():
        _refused(
            _mat(tmp_path, {"D": _as_object(fields)}, name), match, read(key="D", axis_key=None)
        )


# ---------------------------------------------------------------------------------------------
# JCAMP-DX.

Y = [100, 102, 102, 102, 98, -5, -5, 10, 11, 11]  # ordinates in units of YFACTOR = 0.001
ENCODED = {
    "AFFN": ["1000 100 102 102 102 98", "1005 -5 -5 10 11 11"],
    "PAC": ["1000+100+102+102+102+98", "1005-5-5+10+11+11"],
    "SQZ": ["1000A00A02A02A02I8", "1005eeA0A1A1"],
    "DIF": ["1000A00K%%m", "1004I8j03%J5J%"],  # the second line repeats y4 as its y-check
    "DIFDUP": ["1000A00K%Tm", "1004I8j03%J5J%"],
}


def _jcamp(data, form="(X++(Y..Y))", **header):
    fields = {
        "TITLE": "synthetic",
        "JCAMP-DX": "4.24",
        "DATA TYPE": "INFRARED SPECTRUM",
        "XUNITS": "1/CM",
        "YUNITS": "ABSORBANCE",
        "XFACTOR": "1",
        "YFACTOR": "0.001",
        "FIRSTX": "1000",
        "LASTX": "1009",
        "NPOINTS": "10",
        "FIRSTY": "0.1",
        **header,
    }
    lines = [f"##{k}={v}" for k, v in fields.items() if v is not None]
    return "\n".join([*lines, f"##XYDATA={form}", *data, "##END=", ""])


@pytest.mark.parametrize("form", ENCODED)
def test_jcamp_compressed_forms_decode_exactly(tmp_path, form):
    s = read_jcamp(_write(tmp_path, _jcamp(ENCODED[form]), "s.jdx"), instrument="ftir")
    np.testing.assert_array_equal(s.values[0], np.array(Y) * 0.001)
    np.testing.assert_array_equal(s.wavenumber, np.arange(1000.0, 1010.0))
    assert s.modality == "IR" and s.value_unit == "ABSORBANCE" and s.sample_id[0] == "synthetic"
    assert s.instrument[0] == "ftir"


def test_jcamp_xypoints_in_nanometres_is_near_infrared(tmp_path):
    pairs = ["1100, 0.5; 1102, 0.25", "1104, 0.125"]
    text = _jcamp(
        pairs,
        "(XY..XY)",
        XUNITS="NANOMETERS",
        FIRSTX="1100",
        LASTX="1104",
        YFACTOR="1",
        FIRSTY="0.5",
    )
    text = text.replace("##XYDATA=", "##XYPOINTS=").replace("NPOINTS=10", "NPOINTS=3")
    s = read_jcamp(_write(tmp_path, text, "s.jdx"))
    assert s.modality == "NIR" and s.unit == "nm"
    untyped = _write(tmp_path, text.replace("INFRARED SPECTRUM", "SPECTRUM"), "untyped.jdx")
    _refused(untyped, "'SPECTRUM' is not an infrared", read_jcamp)
    assert read_jcamp(untyped, modality="Raman").modality == "Raman"
    np.testing.assert_array_equal(s.values[0], [0.5, 0.25, 0.125])
    np.testing.assert_allclose(s.wavenumber, 1e7 / np.array([1100, 1102, 1104]), rtol=1e-15)


def test_jcamp_consecutive_blocks_stack_or_stay_apart(tmp_path):
    one = _jcamp(ENCODED["AFFN"])
    path = _write(tmp_path, one + one.replace("synthetic", "second"), "two.jdx")
    s = read_jcamp(path)
    assert s.n == 2 and s.sample_id.tolist() == ["synthetic", "second"]
    shifted = one.replace("FIRSTX=1000", "FIRSTX=1001").replace("LASTX=1009", "LASTX=1010")
    shifted = shifted.replace("1000 100", "1001 100").replace("1005 -5", "1006 -5")
    path = _write(tmp_path, one + shifted, "apart.jdx")
    with pytest.raises(SpectraError, match=r"\(block 2\): axis does not match .*read_jcamp_blocks"):
        read_jcamp(path)
    assert [b.origin for b in read_jcamp_blocks(path)] == [f"{path} (block {k})" for k in (1, 2)]


@pytest.mark.parametrize(
    "text, match",
    [
        (_jcamp(ENCODED["AFFN"])[:-20], r"has no ##END= \(truncated file\?\)"),
        (_jcamp(ENCODED["AFFN"], NPOINTS="12"), "decoded 10 ordinates .* ##NPOINTS=12"),
        (_jcamp(ENCODED["AFFN"][:1]), "decoded 5 ordinates"),
        (_jcamp(ENCODED["AFFN"], NPOINTS=None), r"no ##NPOINTS= in the header"),
        (_jcamp(ENCODED["AFFN"], NPOINTS="ten"), "'ten' is not a finite number"),
        (_jcamp(ENCODED["AFFN"], FIRSTY="0.150"), "disagrees with ##FIRSTY=0.150"),
        (_jcamp(ENCODED["AFFN"], XFACTOR="2"), "check XFACTOR"),
        (_jcamp(ENCODED["AFFN"], YFACTOR="0.002", FIRSTY="0.100"), "check YFACTOR=0.002"),
        (_jcamp(ENCODED["AFFN"], LASTX="1018"), "line check failed: X-Check"),
        (_jcamp(ENCODED["AFFN"], FIRSTY="nan"), "##FIRSTY='nan' is not a finite number"),
        (
            _jcamp(
                ["1100 0.5 1102 0.25 1104 0.125"],
                "(XY..XY)",
                FIRSTX="1100",
                LASTX="1110",
                NPOINTS="3",
                YFACTOR="1",
                FIRSTY="0.5",
            ),
            "decoded axis ends at 1104 but ##LASTX=1110",
        ),
        (_jcamp(ENCODED["AFFN"], XUNITS="HZ", **{"DATA TYPE": "RAMAN SPECTRUM"}), "unit 'HZ'"),
        (_jcamp(ENCODED["AFFN"], XUNITS=None), "no ##XUNITS="),
        (_jcamp(ENCODED["AFFN"], **{"DATA TYPE": "NMR SPECTRUM"}), "is not an infrared"),
        (_jcamp(["1000 100 1?2 102 102 98", "1005 -5 -5 10 11 11"]), "cannot decode the data"),
        (_jcamp(["1000A00K%%m", "1004I9j03%J5J%"]), "line check failed: Y-Check"),
        (_jcamp(["1000A00K%%m", "1007I8j03%J5J%"]), "line check failed: X-Check"),
        (
            "##TITLE=t\n##DATA TYPE=INFRARED PEAK TABLE\n##PEAK TABLE=(XY..XY)\n1,2\n##END=\n",
            r"no ##XYDATA= or ##XYPOINTS= table \(PEAKTABLE data are not supported\)",
        ),
        ("1100,1102\n0.1,0.2\n", "line 1 lies outside a ##TITLE="),
        (b"##TITLE=x\n\x00\x01\x02\x03", "binary content"),
        ("", "empty file"),
    ],
)
def test_jcamp_bad_input(tmp_path, text, match):
    _refused(_write(tmp_path, text, "bad.jdx"), match, read_jcamp)


def test_nist_ir_files_match_the_index(shared_data):
    folder = shared_data / "ir_raman_reference"
    index = {row["file"]: row for row in csv.DictReader((folder / "index.csv").open())}
    files = sorted((folder / "nist_ir_jcamp").glob("*.jdx"))
    assert len(files) == 68
    for path in files:
        spectra = read_jcamp(path)
        assert spectra.modality == "IR", path
        for k in range(spectra.n):
            row = index[f"nist_ir_jcamp/{path.name}"]
            x, y = spectra.axis, spectra.values[k]
            assert y.size == int(row["npoints"]), path
            # The index rounds some abscissae (e.g. 15.0145 µm to 15.014).
            np.testing.assert_allclose(
                [x.min(), x.max()], [float(row["x_min"]), float(row["x_max"])], rtol=5e-5
            )
            if spectra.n == 1:  # the index summarises single-block files
                np.testing.assert_allclose(
                    [y.min(), y.max()], [float(row["y_min"]), float(row["y_max"])], rtol=1e-9
                )
    sucrose = read_jcamp(folder / "nist_ir_jcamp" / "webbook_sucrose_solid_pnnl_iarpa.jdx")
    assert sucrose.n == 2 and sucrose.value_unit == "Reflectance"
    ethanol = read_jcamp(folder / "nist_ir_jcamp" / "webbook_ethanol_vapor_coblentz6986.jdx")
    assert ethanol.unit == "um" and ethanol.value_unit == "TRANSMITTANCE"
    np.testing.assert_allclose(ethanol.wavenumber[0], 1e4 / 2.02)
    raman = read_jcamp(folder / "raman_jcamp" / "tannic_acid.jdx")
    assert raman.modality == "Raman" and raman.values.shape == (1, 1949)
    np.testing.assert_allclose(raman.axis[[0, -1]], [100.595, 2854.713])


# Parser fixtures: IR files the jcamp package decodes, and why the others are refused.
READABLE = [
    "jcamp-dx.org_official/BRUKER1.JCM",
    "jcamp-dx.org_official/LABCALC.DX",
    "jcamp-dx.org_official/PE1800.DX",
    "lancashire/dupdec1.jdx",
    "lancashire/dupdec2.jdx",
    "lancashire/fixdec1.jdx",
    "lancashire/fixinc1.jdx",
    "lancashire/fixinc2.jdx",
    "lancashire/jtpolys.jdx",
    "lancashire/pacdec1.jdx",
    "lancashire/xyinc1.jdx",
    "misc/ethanol2.jdx",
    "misc/example_compound_file.jdx",
    "misc/example_multiline_datasets.jdx",
    "misc/isopropanol_ASDF.jdx",
]
REFUSED = {
    "jcamp-dx.org_official/BRUKER2.JCM": "decoded 3710 ordinates .* ##NPOINTS=3735",
    "lancashire/dupinc2.jdx": "decoded 3731 ordinates .* ##NPOINTS=3734",
    "jcamp-dx.org_official/SPECFILE.DX": "line check failed: Y-Check",
    "lancashire/jtpolysd.jdx": "check YFACTOR",
    "lancashire/sqzdupd1.jdx": "jcamp package cannot decode",
    "jcamp-dx.org_official/DX-DIR.TXT": "outside a ##TITLE=",
    "jcamp-dx.org_official/BRUKAFFN.DX": "'NMR Spectrum' is not an infrared",
    "lancashire/ofid1.jdx": "'NMR FID' is not an infrared",
    "jcamp-dx.org_official/ISAS_MS1.DX": "'MASS SPECTRUM' is not an infrared",
    "lancashire/blckpac1.jdx": r"\(block 1\): ##DATA TYPE='UV/VIS SPECTRUM'",
}


def test_parser_fixtures(shared_data):
    folder = shared_data / "ir_raman_reference" / "jcamp_parser_tests"
    for name in READABLE:
        for block in read_jcamp_blocks(folder / name):
            assert block.modality in ("IR", "NIR") and block.values.shape[0] == 1, name
    for name, match in REFUSED.items():
        _refused(folder / name, match, read_jcamp)
    compound = read_jcamp_blocks(folder / "lancashire" / "compound.jdx")
    assert [b.values.shape[1] for b in compound] == [1976, 1976, 3951, 1976, 3951]
    # Its wavenumber span lies above 4000 cm-1 but for 0.3 cm-1: near infrared.
    assert read_jcamp(folder / "misc" / "example_compound_file.jdx").modality == "NIR"
