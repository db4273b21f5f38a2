"""Bundled corn and tablet data: contents, the exact file format, and the sha256-checked build.

Only `test_rebuild_from_csv_reproduces_the_bundled_files_exactly` needs the shared development
data; everything else runs on the files shipped in the package or on files made in tmp_path.
"""

import csv
import hashlib
import importlib.resources
import io

import numpy as np
import pytest

from caltransfer_jax.data import bundled
from caltransfer_jax.data.spectra import Spectra, SpectraError
from data_prep import build_bundled, download


def test_corn():
    corn = bundled.load_corn()
    s = corn.spectra
    assert corn.name == "corn" and corn.instruments == ("m5", "mp5", "mp6")
    assert corn.properties == ("moisture", "oil", "protein", "starch")
    assert s.values.shape == (240, 700) and s.modality == "NIR" and s.unit == "nm"
    assert s.label_units == ("%",) * 4 and s.value_unit == "log(1/R)"
    np.testing.assert_allclose(s.axis, np.arange(1100, 2499, 2), rtol=1e-15)
    ids = [f"corn-{i:02d}" for i in range(80)]
    for instrument in corn.instruments:
        part = s.on_instrument(instrument)
        assert part.sample_id.tolist() == ids
        # Reference values belong to the sample, whatever the instrument.
        np.testing.assert_array_equal(part.labels, s.on_instrument("m5").labels)
    assert [corn.standards.on_instrument(i).n for i in corn.instruments] == [3, 4, 4]
    assert corn.standards.labels.shape == (11, 0) and corn.standards.sample_id[0] == "nbs-m5-0"
    assert corn.original_split is None and "Eigenvector" in corn.citation
    np.testing.assert_allclose(s.labels[0], [10.448, 3.687, 8.746, 64.838])


def test_tablets_labels_are_weight_hardness_assay():
    tablets = bundled.load_tablets()
    s = tablets.spectra
    assert tablets.instruments == ("spec1", "spec2") and tablets.standards is None
    assert tablets.properties == ("weight", "hardness", "assay")
    assert s.label_units == ("mg", "", "mg") and s.values.shape == (1310, 650)
    np.testing.assert_allclose(s.axis[[0, -1]], [600, 1898])
    ids = [f"tablet-{i:03d}" for i in range(655)]
    assert s.on_instrument("spec2").sample_id.tolist() == ids
    # Ranges and means of the Eigenvector .mat's Y columns, in the order weight, hardness, assay.
    labels = s.on_instrument("spec1").labels
    np.testing.assert_allclose(labels.min(0), [363.9, 13.8, 151.6], atol=0.01)
    np.testing.assert_allclose(labels.max(0), [391.0, 23.5, 239.1], atol=0.01)
    np.testing.assert_allclose(labels.mean(0), [378.89, 19.38, 189.85], atol=0.01)
    np.testing.assert_array_equal(labels, labels.astype(np.float32))  # float32 in the source
    split = tablets.original_split
    assert set(split) == set(ids)
    assert [sum(v == k for v in split.values()) for k in ("calibrate", "validate", "test")] == [
        155,
        40,
        460,
    ]
    assert split["tablet-154"] == "calibrate" and split["tablet-155"] == "validate"
    assert split["tablet-195"] == "test"


def test_files_are_small_and_hold_no_pickled_objects():
    folder = importlib.resources.files("caltransfer_jax.data") / "bundled"
    sizes = [(folder / f"{name}.npz").stat().st_size for name in ("corn", "tablets")]
    assert sum(sizes) < 3.5e6
    for name in ("corn", "tablets"):
        with np.load(folder / f"{name}.npz", allow_pickle=False) as npz:
            assert all(npz[key].dtype.kind in "iufU" for key in npz.files)
    assert "sha256" in (folder / "README.md").read_text()


def _toy(values, name="toy"):
    spectra = Spectra.from_axis(
        values,
        [1100.0, 1102.0, 1104.0],
        "nm",
        modality="NIR",
        instrument=["a", "b"],
        sample_id=["s", "s"],
        labels=[[1.5], [1.5]],
        label_names=["oil"],
        label_units=["%"],
        value_unit="log(1/R)",
    )
    return bundled.Dataset(name, spectra, ("a", "b"), ("oil",), None, {"s": "test"}, "cite")


def test_format_round_trips_exactly(tmp_path):
    values = np.array([[0.1234567, -0.0000001, 2.5], [1e-7, 0.3, -7.0]])
    path = tmp_path / "toy.npz"
    arrays = bundled.to_arrays(_toy(values), {"toy.csv": "0" * 64})
    assert int(arrays["decimals"]) == 7 and arrays["values"].dtype == np.int32
    np.savez_compressed(path, **arrays)
    back = bundled.read_bundle(path)
    np.testing.assert_array_equal(back.spectra.values, values)
    np.testing.assert_array_equal(back.spectra.wavenumber, 1e7 / np.array([1100, 1102, 1104.0]))
    assert back.original_split == {"s": "test"} and back.spectra.label_units == ("%",)
    assert back.spectra.value_unit == "log(1/R)" and back.citation == "cite"


def test_any_data_set_saves_and_reads_back_exactly(tmp_path):
    # Values that are no short decimals (a user's data) are kept as float64, in format 2.
    values = np.random.default_rng(0).normal(size=(2, 3)) / 3
    bundled.save_dataset(_toy(values), tmp_path / "user.npz")
    back = bundled.read_bundle(tmp_path / "user.npz")
    np.testing.assert_array_equal(back.spectra.values, values)
    assert back.original_split == {"s": "test"} and back.native is None


def test_format_refusals(tmp_path):
    arrays = bundled.to_arrays(_toy(np.ones((2, 3))), {})
    np.savez_compressed(tmp_path / "old.npz", **{**arrays, "format_version": np.array(0)})
    with pytest.raises(SpectraError, match=r"old.npz: format version 0, expected one of \(1, 2\)"):
        bundled.read_bundle(tmp_path / "old.npz")
    (tmp_path / "bad.npz").write_bytes(b"not a zip file")
    with pytest.raises(SpectraError, match="bad.npz: not a readable data set file"):
        bundled.read_bundle(tmp_path / "bad.npz")


def test_build_refuses_changed_or_missing_sources_and_writes_nothing(tmp_path):
    source, out = tmp_path / "source", tmp_path / "out"
    (source / "idrc2002_tablets").mkdir(parents=True)
    (source / "idrc2002_tablets" / "Pharma_Instrument1.csv").write_text("changed\n")
    with pytest.raises(SystemExit, match=r"Pharma_Instrument1\.csv: sha256 .* differs"):
        build_bundled.main([f"--source={source}", f"--out={out}", "--datasets", "tablets"])
    with pytest.raises(SpectraError, match=r"Pharma_Instrument2\.csv: missing"):
        build_bundled.build(source, out, ("tablets",))
    assert not out.exists()


def test_atomic_write_leaves_nothing_behind_on_failure(tmp_path):
    def fail(file):
        file.write(b"half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        download.write_atomic(tmp_path / "corn.npz", fail)
    assert list(tmp_path.iterdir()) == []


def test_download_verifies_sha256_before_saving(tmp_path, monkeypatch):
    content = b"1100,1102\n0.1,0.2\n"
    good = build_bundled.Source("toy/a.csv", hashlib.sha256(content).hexdigest(), "https://x/a")
    bad = build_bundled.Source("toy/b.csv", "0" * 64, "https://x/b")
    monkeypatch.setitem(build_bundled.SOURCES, "toy", (good, bad))

    class Response(io.BytesIO):
        def __init__(self, url, timeout):
            assert timeout > 0
            super().__init__(content)
            self.headers = {"Content-Length": str(len(content))}

    monkeypatch.setattr(download.urllib.request, "urlopen", Response)
    with pytest.raises(SpectraError, match=r"https://x/b: sha256 .* differs .* not saved"):
        build_bundled.download(tmp_path, ("toy",))
    assert (tmp_path / "toy" / "a.csv").read_bytes() == content
    assert sorted(p.name for p in (tmp_path / "toy").iterdir()) == ["a.csv"]


def _csv_floats(path, first_column=0):
    rows = list(csv.reader(path.open()))
    return np.array([[float(x) for x in row[first_column:]] for row in rows[1:]])


def test_rebuild_from_csv_reproduces_the_bundled_files_exactly(shared_data, tmp_path, capsys):
    build_bundled.main([f"--source={shared_data}", f"--out={tmp_path}"])
    assert capsys.readouterr().out.count("wrote") == 2
    paths = [tmp_path / "corn.npz", tmp_path / "tablets.npz"]
    corn, tablets = (bundled.read_bundle(p) for p in paths)
    for name in ("m5", "mp5", "mp6"):
        np.testing.assert_array_equal(
            corn.spectra.on_instrument(name).values,
            _csv_floats(shared_data / f"corn/{name}spec.csv"),
        )
        np.testing.assert_array_equal(
            corn.standards.on_instrument(name).values,
            _csv_floats(shared_data / f"corn/{name}nbs.csv"),
        )
        np.testing.assert_array_equal(
            corn.spectra.on_instrument(name).labels, _csv_floats(shared_data / "corn/propvals.csv")
        )
    for k, name in enumerate(("spec1", "spec2")):
        table = _csv_floats(shared_data / f"idrc2002_tablets/Pharma_Instrument{k + 1}.csv", 1)
        part = tablets.spectra.on_instrument(name)
        np.testing.assert_array_equal(part.values, table[:, 3:])
        np.testing.assert_array_equal(part.labels, table[:, :3])
    shipped = importlib.resources.files("caltransfer_jax.data") / "bundled"
    for path in paths:
        with np.load(path) as rebuilt, np.load(shipped / path.name) as packaged:
            assert sorted(rebuilt.files) == sorted(packaged.files)
            for key in rebuilt.files:
                np.testing.assert_array_equal(rebuilt[key], packaged[key], err_msg=key)
