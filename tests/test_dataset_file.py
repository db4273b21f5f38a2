"""Dataset files: the minimal form, the frictions of real users' files, and bad files.

Every bad file must give one `SpectraError` naming the dataset file (or the data file) and the
field, and leave the folder as it was.
"""

import os
import pathlib

import numpy as np
import pytest

from caltransfer_jax.data import bundled, dataset_file, grids
from caltransfer_jax.data.csv_export import write_csv_dataset
from caltransfer_jax.data.readers import CsvFormat, read_wide_csv
from caltransfer_jax.data.spectra import SpectraError

AXIS = np.arange(1100.0, 1140.0, 2.0)  # 20 points, nm


def _spectra_csv(path, values, axis=AXIS, ids=None, delimiter=",", decimal=".", id_header="ID"):
    def number(v):
        text = repr(float(v))
        return text.replace(".", ",") if decimal == "," else text

    header = ([id_header] if ids is not None else []) + [number(a) for a in axis]
    lines = [delimiter.join(header)]
    for i, row in enumerate(values):
        cells = ([ids[i]] if ids is not None else []) + [number(v) for v in row]
        lines.append(delimiter.join(cells))
    path.write_text("\n".join(lines) + "\n")
    return path


def _two_instruments(tmp_path, n=12, seed=0, **csv):
    rng = np.random.default_rng(seed)
    a = rng.normal(size=(n, AXIS.size))
    b = a + 0.1 + 0.01 * rng.normal(size=a.shape)
    ids = [f"s{i}" for i in range(n)]
    _spectra_csv(tmp_path / "a.csv", a, ids=ids, **csv)
    _spectra_csv(tmp_path / "b.csv", b, ids=ids, **csv)
    (tmp_path / "labels.csv").write_text(
        "ID,oil\n" + "".join(f"s{i},{1.0 + i}\n" for i in range(n))
    )
    return a, b


BASE = """name = "toy"
axis_unit = "nm"
pairing = "id"
id_column = "ID"
[instruments.a]
spectra = "a.csv"
[instruments.b]
spectra = "b.csv"
[labels]
file = "labels.csv"
units = { oil = "%" }
"""


def _load(tmp_path, text):
    path = tmp_path / "toy.toml"
    path.write_text(text)
    return dataset_file.read_dataset_file(path)


def test_minimal_form_reads_the_corn_csv_files(shared_data, tmp_path):
    corn = shared_data / "corn"
    path = tmp_path / "corn.toml"
    path.write_text(
        f"""name = "corn"
axis_unit = "nm"
pairing = "row"
[instruments.m5]
spectra = "{corn / "m5spec.csv"}"
[instruments.mp6]
spectra = "{corn / "mp6spec.csv"}"
[labels]
file = "{corn / "propvals.csv"}"
units = {{ Moisture = "%", Oil = "%", Protein = "%", Starch = "%" }}
"""
    )
    data = dataset_file.read_dataset_file(path)
    bundled_corn = bundled.load_corn()
    assert data.instruments == ("m5", "mp6") and data.properties[0] == "Moisture"
    for name in data.instruments:
        np.testing.assert_array_equal(
            data.spectra.on_instrument(name).values,
            bundled_corn.spectra.on_instrument(name).values,
        )
    np.testing.assert_array_equal(
        data.spectra.on_instrument("m5").label("Moisture"),
        bundled_corn.spectra.on_instrument("m5").label("moisture"),
    )


def test_csv_export_reads_back_exactly(tmp_path):
    corn = dataset_file.load("corn")
    back = dataset_file.read_dataset_file(write_csv_dataset(corn, tmp_path))
    for field in ("values", "wavenumber", "labels"):
        np.testing.assert_array_equal(getattr(back.spectra, field), getattr(corn.spectra, field))
    np.testing.assert_array_equal(back.spectra.sample_id, corn.spectra.sample_id)
    np.testing.assert_array_equal(back.standards.values, corn.standards.values)
    assert (back.name, back.instruments, back.properties) == (
        corn.name,
        corn.instruments,
        corn.properties,
    )
    assert back.spectra.label_units == corn.spectra.label_units


def test_semicolon_files_with_decimal_comma_and_row_names(tmp_path):
    a, _ = _two_instruments(tmp_path, delimiter=";", decimal=",", id_header="")
    (tmp_path / "labels.csv").write_text(";oil\n" + "".join(f"s{i};{i},5\n" for i in range(12)))
    text = BASE.replace('id_column = "ID"\n', 'delimiter = ";"\ndecimal = ","\n')
    data = _load(tmp_path, text)
    np.testing.assert_array_equal(data.spectra.on_instrument("a").values, a)
    assert data.spectra.sample_id[0] == "s0"
    np.testing.assert_array_equal(data.spectra.on_instrument("a").label("oil")[:2], [0.5, 1.5])


def test_wrong_delimiter_names_the_likely_one(tmp_path):
    _spectra_csv(tmp_path / "x.csv", np.ones((2, 3)), axis=AXIS[:3], delimiter=";")
    with pytest.raises(SpectraError, match=r"x.csv: .*separated by ';'.*set the delimiter"):
        read_wide_csv(tmp_path / "x.csv", axis_unit="nm", modality="NIR", instrument="a")
    with pytest.raises(SpectraError, match="not one of"):
        CsvFormat(delimiter="#").check("f.csv")


def test_missing_labels_leave_only_those_samples_out(tmp_path):
    _two_instruments(tmp_path)
    (tmp_path / "labels.csv").write_text(
        "ID,oil\n" + "".join(f"s{i},{'NA' if i in (3, 7) else i}\n" for i in range(12))
    )
    data = _load(tmp_path, BASE)
    assert sorted(data.labelled(["oil"]).tolist()) == sorted(
        f"s{i}" for i in range(12) if i not in (3, 7)
    )
    rows = np.flatnonzero(data.spectra.has_label("oil"))
    assert np.isfinite(data.spectra.label("oil", rows)).all()


def test_replicate_files_printed_with_fewer_decimals_share_the_axis(tmp_path):
    _two_instruments(tmp_path)
    axis = AXIS + 3e-5  # the same points printed with 4 instead of 5 decimals
    _spectra_csv(tmp_path / "a2.csv", np.zeros((2, AXIS.size)), axis=axis, ids=["t0", "t1"])
    _spectra_csv(tmp_path / "b2.csv", np.zeros((2, AXIS.size)), axis=axis, ids=["t0", "t1"])
    (tmp_path / "labels.csv").write_text(
        "ID,oil\n" + "".join(f"s{i},{i}\n" for i in range(12)) + "t0,1\nt1,2\n"
    )
    text = BASE.replace('spectra = "a.csv"', 'spectra = ["a.csv", "a2.csv"]').replace(
        'spectra = "b.csv"', 'spectra = ["b.csv", "b2.csv"]'
    )
    assert _load(tmp_path, text).spectra.n == 28


def test_replicates_are_refused_or_averaged(tmp_path):
    a, _ = _two_instruments(tmp_path)
    ids = [f"s{i // 2}" for i in range(12)]
    _spectra_csv(tmp_path / "a.csv", a, ids=ids)
    _spectra_csv(tmp_path / "b.csv", a, ids=ids)
    with pytest.raises(SpectraError, match=r"toy.toml: replicates: .*'s0' appears 2 times"):
        _load(tmp_path, BASE)
    (tmp_path / "labels.csv").write_text("ID,oil\n" + "".join(f"s{i},{i}\n" for i in range(6)))
    data = _load(tmp_path, 'replicates = "mean"\n' + BASE)
    np.testing.assert_allclose(data.spectra.on_instrument("a").values[0], a[:2].mean(0))


def test_instruments_on_different_ranges_meet_on_their_common_range(tmp_path):
    rng = np.random.default_rng(1)
    wide, narrow = np.arange(570.0, 1100.5, 2.0), np.arange(730.0, 1100.5, 3.0)
    ids = [f"s{i}" for i in range(10)]
    _spectra_csv(tmp_path / "a.csv", rng.normal(size=(10, wide.size)), axis=wide, ids=ids)
    _spectra_csv(tmp_path / "b.csv", rng.normal(size=(10, narrow.size)), axis=narrow, ids=ids)
    (tmp_path / "labels.csv").write_text("ID,oil\n" + "".join(f"s{i},{i}\n" for i in range(10)))
    data = _load(tmp_path, BASE)
    np.testing.assert_allclose(np.sort(data.spectra.axis), narrow, rtol=1e-12)
    assert data.native["a"].values.shape == (10, wide.size)
    assert "730–1099 nm" in data.overlap and "'b'" in data.overlap


def test_common_axis_refuses_ranges_that_do_not_overlap():
    from caltransfer_jax.data.spectra import Spectra

    def part(axis):
        return Spectra.from_axis(
            np.ones((1, axis.size)), axis, "nm", modality="NIR", instrument="x"
        )

    with pytest.raises(SpectraError, match="f.toml: the instruments' ranges do not overlap"):
        grids.common_axis({"a": part(AXIS), "b": part(AXIS + 100)}, "f.toml")
    with pytest.raises(SpectraError, match="f.toml: .*holds 3 point"):
        grids.common_axis({"a": part(AXIS), "b": part(AXIS + 34)}, "f.toml")


# Each bad file: (what to change in the valid BASE, the error expected).
BAD = {
    "missing spectra file": (
        lambda t: t.replace('spectra = "b.csv"', 'spectra = "gone.csv"'),
        r"toy.toml: instruments.b.spectra: 'gone.csv': no such file",
    ),
    "unknown field": (
        lambda t: t.replace("[labels]", "[labels]\nunit = 1"),
        r"toy.toml: unknown field 'labels.unit'; did you mean 'units'",
    ),
    "unknown top-level field": (
        lambda t: "pairng = 'id'\n" + t,
        r"toy.toml: unknown field 'pairng'; did you mean 'pairing'",
    ),
    "axis unit typo": (
        lambda t: t.replace('axis_unit = "nm"', 'axis_unit = "mn"'),
        r"toy.toml: axis_unit: unknown axis unit 'mn'",
    ),
    "implausible axis unit": (
        lambda t: t.replace('axis_unit = "nm"', 'axis_unit = "um"'),
        r"toy.toml: instruments.a.axis_unit: the axis runs 1100–1138 um.*is the axis unit wrong",
    ),
    "pairing typo": (
        lambda t: t.replace('pairing = "id"', 'pairing = "ids"'),
        r"toy.toml: pairing: 'ids' is not one of \['row', 'id'\] \(did you mean 'id'\?\)",
    ),
    "missing name": (
        lambda t: t.replace('name = "toy"\n', ""),
        r"toy.toml: name: missing \(required\)",
    ),
    "one instrument": (
        lambda t: t.replace('[instruments.b]\nspectra = "b.csv"\n', ""),
        r"toy.toml: instruments: a transfer data set needs at least two instruments",
    ),
    "labels for unknown samples": (
        lambda t: t.replace('file = "labels.csv"', 'file = "extra_labels.csv"'),
        r"toy.toml: labels.file: .*extra_labels.csv: labels for 1 sample\(s\) no instrument "
        r"measured, e.g. \['zz'\]",
    ),
    "units for an unknown property": (
        lambda t: t.replace('units = { oil = "%" }', 'units = { oyl = "%" }'),
        r"toy.toml: labels.units: units for unknown properties \['oyl'\]",
    ),
    "not TOML": (lambda t: t + "= broken", r"toy.toml: not valid TOML"),
    "wrong type": (
        lambda t: t.replace('id_column = "ID"', "id_column = 3"),
        r"toy.toml: id_column: must be a str, got 3",
    ),
    "row pairing with unequal counts": (
        lambda t: t.replace('pairing = "id"', 'pairing = "row"').replace(
            'spectra = "b.csv"', 'spectra = "short.csv"\nid_column = "ID"'
        ),
        r"toy.toml: pairing: pairing by row needs the same number of spectra",
    ),
    "bad split subset": (
        lambda t: t + '[split]\nfile = "split.csv"\ncolumn = "subset"\n',
        r"toy.toml: split.column: .*subsets \['train'\] are not among",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_dataset_files_name_file_and_field_and_write_nothing(tmp_path, case):
    _two_instruments(tmp_path)
    (tmp_path / "extra_labels.csv").write_text((tmp_path / "labels.csv").read_text() + "zz,3\n")
    _spectra_csv(tmp_path / "short.csv", np.ones((3, AXIS.size)), ids=["s0", "s1", "s2"])
    (tmp_path / "split.csv").write_text(
        "ID,subset\n" + "".join(f"s{i},{'train' if i else 'test'}\n" for i in range(12))
    )
    edit, message = BAD[case]
    before = sorted(os.listdir(tmp_path))
    with pytest.raises(SpectraError, match=message):
        _load(tmp_path, edit(BASE))
    assert sorted(os.listdir(tmp_path)) == sorted({*before, "toy.toml"})


def test_ids_that_differ_between_instruments_are_named(tmp_path):
    a, b = _two_instruments(tmp_path)
    _spectra_csv(tmp_path / "b.csv", b, ids=[f"s{i}" for i in range(11)] + ["x"])
    with pytest.raises(SpectraError, match=r"toy.toml: pairing: sample ids differ .*\['s11'\]"):
        _load(tmp_path, BASE)


def test_pairing_by_id_needs_an_id_column(tmp_path):
    _two_instruments(tmp_path)
    with pytest.raises(SpectraError, match=r"toy.toml: instruments.a.id_column: .*needs an id"):
        _load(tmp_path, BASE.replace('id_column = "ID"\n', ""))


def test_load_names_what_it_accepts(tmp_path):
    with pytest.raises(SpectraError, match="wheat: not a data set; give a bundled name"):
        dataset_file.load("wheat")
    assert dataset_file.load("tablets").original_split is not None


def test_a_saved_user_data_set_loads_through_a_bundle_file(tmp_path):
    corn = dataset_file.load("corn")
    bundled.save_dataset(corn, tmp_path / "mine.npz")
    (tmp_path / "mine.toml").write_text('name = "corn"\nbundle = "mine.npz"\n')
    back = dataset_file.read_dataset_file(tmp_path / "mine.toml")
    np.testing.assert_array_equal(back.spectra.values, corn.spectra.values)
    (tmp_path / "bad.toml").write_text('name = "corn"\nbundle = "mine.npz"\naxis_unit = "nm"\n')
    with pytest.raises(SpectraError, match=r"bad.toml: .*with 'bundle', only"):
        dataset_file.read_dataset_file(tmp_path / "bad.toml")


def test_unit_paths_are_relative_to_the_file(tmp_path):
    sub = tmp_path / "sub"
    sub.mkdir()
    _two_instruments(sub)
    (tmp_path / "toy.toml").write_text(
        BASE.replace('"a.csv"', '"sub/a.csv"')
        .replace('"b.csv"', f'"{pathlib.Path(sub, "b.csv")}"')
        .replace('"labels.csv"', '"sub/labels.csv"')
    )
    assert dataset_file.read_dataset_file(tmp_path / "toy.toml").spectra.n == 24


def test_matlab_instruments(tmp_path):
    scipy_io = pytest.importorskip("scipy.io")
    a, b = _two_instruments(tmp_path)
    for name, values in (("a", a), ("b", b)):
        scipy_io.savemat(tmp_path / f"{name}.mat", {"X": values, "axis": AXIS[None]})
    text = (
        BASE.replace('pairing = "id"', 'pairing = "row"')
        .replace('id_column = "ID"\n', "")
        .replace('spectra = "a.csv"', 'spectra = "a.mat"\nvariable = "X"\naxis_variable = "axis"')
        .replace('spectra = "b.csv"', 'spectra = "b.mat"\nvariable = "X"\naxis_variable = "axis"')
    )
    (tmp_path / "labels.csv").write_text("oil\n" + "".join(f"{i}\n" for i in range(12)))
    data = _load(tmp_path, text)
    np.testing.assert_array_equal(data.spectra.on_instrument("b").values, b)
    with pytest.raises(SpectraError, match=r"toy.toml: instruments.a.variable: missing"):
        _load(tmp_path, text.replace('variable = "X"\naxis_variable', "axis_variable", 1))


def test_csv_export_never_overwrites(tmp_path):
    (tmp_path / "m5.csv").write_text("mine")
    with pytest.raises(FileExistsError, match="is not empty"):
        write_csv_dataset(dataset_file.load("corn"), tmp_path)
    assert (tmp_path / "m5.csv").read_text() == "mine"


def test_a_pair_is_compared_on_its_own_overlap_not_that_of_every_instrument(tmp_path):
    import dataclasses

    from caltransfer_jax.simulate.pair import write_pair

    # A grating 1100–2498 nm, an InGaAs array 900–1700 nm and an FT-NIR 4000–10000 cm⁻¹.
    dataset = dataset_file.load(write_pair(tmp_path / "d", instruments=(0, 3, 6), num_samples=12))
    everyone = 1e7 / dataset.spectra.wavenumber
    assert everyone.max() < 1710  # the array's range cuts the common axis of all three
    source, target, sentence = dataset.pair("nir00", "nir06")
    nm = 1e7 / source.wavenumber
    assert nm.min() < 1110 and nm.max() > 2490  # this pair's own overlap
    np.testing.assert_array_equal(source.wavenumber, target.wavenumber)
    assert source.values.shape == (12, source.wavenumber.size) == target.values.shape
    assert "'nir00'" in sentence or "'nir06'" in sentence
    # The target is its own spectra resampled onto that axis (never extrapolated).
    resampled = dataset.own("nir06").resample(source.wavenumber)
    np.testing.assert_allclose(target.values, resampled.values, rtol=1e-12)
    # With transfer standards (kept on the common axis of all instruments only), that axis.
    with_standards = dataclasses.replace(dataset, standards=dataset.spectra)
    source, _, sentence = with_standards.pair("nir00", "nir06")
    np.testing.assert_array_equal(source.wavenumber, dataset.spectra.wavenumber)
    assert sentence == dataset.overlap
