"""Public corpora: physical-axis conversion of real reference files and of files written here,
computed line lists, the no-pickle SQLite reader, parquet, safe archive extraction, checksummed
downloads (mocked `urlopen`), tfds builds read through tfds and the input pipeline."""

import hashlib
import io
import json
import pathlib
import re
import sqlite3
import sys
import tarfile
import urllib.error
import zipfile
import zlib

import numpy as np
import pytest
import tensorflow_datasets as tfds

from caltransfer_jax.data.readers import read_jcamp_blocks
from caltransfer_jax.data.spectra import SpectraError
from caltransfer_jax.pretrain.input_pipeline import InputPipeline, SimulatedSource, TfdsSource
from caltransfer_jax.simulate import SimulatorConfig
from data_prep import download
from data_prep.public_corpora import archives, builder, chembl, lines, mpx, nist, rruff, uspto
from data_prep.public_corpora.__main__ import main
from data_prep.public_corpora.common import (
    CorpusSpectrum,
    Options,
    Report,
    Skipped,
    bin_average,
    physical_spectrum,
    read_two_columns,
)

OPTIONS = Options()
PACKAGE = pathlib.Path(builder.__file__).parent


def converted(module, raw_dir, options=OPTIONS):
    """(spectra, skipped) of a source's conversion of `raw_dir`."""
    items = list(module.convert(pathlib.Path(raw_dir), options, Report(pathlib.Path(raw_dir))))
    return (
        [i for i in items if isinstance(i, CorpusSpectrum)],
        [i for i in items if isinstance(i, Skipped)],
    )


def assert_physical(spectrum):
    assert spectrum.wavenumber.ndim == 1 and spectrum.wavenumber.size == spectrum.values.size
    assert np.all(np.diff(spectrum.wavenumber) > 0) and np.all(np.isfinite(spectrum.values))


# ---------------------------------------------------------------------------------------------
# Conversion of the real reference spectra.


def test_nist_jcamp_keeps_each_axis_and_converts_transmittance(shared_data):
    folder = shared_data / "ir_raman_reference" / "nist_ir_jcamp"
    spectra, skipped = converted(nist, folder)
    assert len(spectra) == 69 and not skipped  # 68 files, the sucrose file has two blocks
    by_name = {s.name: s for s in spectra}
    for s in spectra:
        assert_physical(s)
        assert s.modality == "IR" and 100 < s.wavenumber[0] < s.wavenumber[-1] < 8000
    # Its own axis, exactly: the reader's wavenumbers in ascending order, nothing resampled.
    (methane,) = read_jcamp_blocks(folder / "methane.jdx")
    order = np.argsort(methane.wavenumber)
    got = by_name["methane.jdx"]
    np.testing.assert_array_equal(got.wavenumber, methane.wavenumber[order])
    expected = -np.log10(np.clip(methane.values[0][order], OPTIONS.transmittance_floor, None))
    np.testing.assert_allclose(got.values, expected)
    assert got.value_unit.startswith("absorbance") and got.instrument == "DOW KBr FOREPRISM"
    # Micrometres converted exactly (1e4 / µm); absorption coefficients kept as given.
    ethanol = by_name["webbook_ethanol_vapor_coblentz6986.jdx"]
    (raw,) = read_jcamp_blocks(folder / "webbook_ethanol_vapor_coblentz6986.jdx")
    np.testing.assert_allclose(ethanol.wavenumber, np.sort(1e4 / raw.axis), rtol=1e-12)
    acetone = by_name["acetone.jdx"]
    assert acetone.value_unit == "(micromol/mol)-1m-1 (base 10)"
    assert {"webbook_sucrose_solid_pnnl_iarpa.jdx (block 1)"} <= set(by_name)
    assert by_name["webbook_sucrose_solid_pnnl_iarpa.jdx (block 2)"].value_unit.startswith(
        "log(1/R)"
    )


def test_raman_jcamp_is_raman(shared_data):
    spectra, _ = converted(nist, shared_data / "ir_raman_reference" / "raman_jcamp")
    (tannic,) = spectra
    assert tannic.modality == "Raman" and tannic.wavenumber[0] == pytest.approx(100.595)
    assert tannic.value_unit == "ARBITRARY UNITS" and tannic.wavenumber.size == 1949


def test_mpx_raman_from_absolute_wavelength_and_atr(shared_data):
    folder = shared_data / "ir_raman_reference" / "mpx_polymers"
    spectra, skipped = converted(mpx, folder)
    assert len(spectra) == 113 and len(skipped) == 7
    # The 791–1068 nm files do not fit a 532 nm laser: skipped with the reason, naming the file.
    for s in skipped:
        assert "VLFR_04-PP" in s.record or "VLFR_07-PET" in s.record
        assert s.reason.startswith(str(folder)) and "does not fit" in s.reason
    by_name = {s.name: s for s in spectra}
    ps = by_name["raman/VLFR_05-PS_nobio_Raman_01ddbf31.csv"]
    assert ps.modality == "Raman" and ps.wavenumber[0] >= OPTIONS.raman_min_shift
    window = (ps.wavenumber > 900) & (ps.wavenumber < 1100)
    ring = ps.wavenumber[window][np.argmax(ps.values[window])]
    assert 995 < ring < 1015  # polystyrene's ring-breathing band (1001 cm⁻¹)
    table = read_two_columns(folder / ps.name)
    np.testing.assert_allclose(ps.wavenumber[-1], 1e7 / 532.0 - 1e7 / table.x.max())
    atr = by_name["atr_ftir/LCG_01-LDPE_nobio_ATR_00f95e21.csv"]
    table = read_two_columns(folder / atr.name)
    assert atr.modality == "IR" and atr.value_unit == "absorbance"
    np.testing.assert_array_equal(atr.wavenumber, table.x[::-1])
    np.testing.assert_array_equal(atr.values, table.y[::-1])


# ---------------------------------------------------------------------------------------------
# Conversion of files written here.

RRUFF_RAMAN = """##NAMES=Quartz
##RRUFFID=R040031
##IDEAL CHEMISTRY=SiO_2_
##LOCALITY=Hot Springs, Arkansas, USA
##RAMAN WAVELENGTH=532
{data}
##END=

junk after the end, ignored
"""


def _rruff_data(lo=100.0, n=40):
    x = lo + 5.0 * np.arange(n)
    y = 10 + np.exp(-0.5 * ((x - 200) / 8) ** 2)
    return x, y, "\n".join(f"{a:.4f}, {b:.6f}" for a, b in zip(x, y, strict=True))


def test_rruff_archive_and_text(tmp_path):
    x, y, data = _rruff_data()
    raw = tmp_path / "raw"
    (raw / "raman").mkdir(parents=True)
    with zipfile.ZipFile(raw / "raman" / "excellent_unoriented.zip", "w") as archive:
        archive.writestr(
            "Quartz__R040031__Raman__532__0__unoriented__Processed__1.txt",
            RRUFF_RAMAN.format(data=data),
        )
        archive.writestr("Bad__R1__Raman__785__x.txt", "##NAMES=Bad\n100, 1\n101, one\n")
    (raw / "infrared").mkdir()
    ir = "\n".join(f"{a}\t{b}" for a, b in zip(400 + 10.0 * np.arange(30), range(30), strict=True))
    (raw / "infrared" / "Calcite__R050128__Infrared.txt").write_text("##NAMES=Calcite\n" + ir)
    (raw / "loose.txt").write_text("##NAMES=x\n" + "\n".join(f"{i}, 1" for i in range(100, 130)))
    report = Report(raw)
    items = list(rruff.convert(raw, OPTIONS, report))
    spectra = {i.name: i for i in items if isinstance(i, CorpusSpectrum)}
    skipped = {i.record: i.reason for i in items if isinstance(i, Skipped)}
    quartz = spectra[
        "raman/excellent_unoriented/Quartz__R040031__Raman__532__0__unoriented__Processed__1.txt"
    ]
    assert quartz.modality == "Raman" and quartz.instrument == "RRUFF Raman 532 nm"
    np.testing.assert_allclose(quartz.wavenumber, x)
    np.testing.assert_allclose(quartz.values, y, rtol=1e-6)
    calcite = spectra["infrared/Calcite__R050128__Infrared.txt"]
    assert calcite.modality == "IR" and calcite.wavenumber[0] == 400
    bad = skipped["raman/excellent_unoriented/Bad__R1__Raman__785__x.txt"]
    assert "Bad__R1__Raman__785__x.txt: line 3: expected two numbers" in bad
    assert "cannot tell Raman from infrared" in skipped["loose.txt"]
    # The archive is the recorded input; its members are not listed again.
    assert set(report.inputs) == {
        "raman/excellent_unoriented.zip",
        "infrared/Calcite__R050128__Infrared.txt",
        "loose.txt",
    }
    assert (raw / "raman" / "excellent_unoriented").is_dir()  # extracted once, reused
    assert len(list(rruff.convert(raw, OPTIONS, Report(raw)))) == len(items)
    # A new version of the archive replaces the extracted files.
    (raw / "raman" / "excellent_unoriented.zip").unlink()
    with zipfile.ZipFile(raw / "raman" / "excellent_unoriented.zip", "w") as archive:
        archive.writestr("New__R2__Raman__785__1.txt", RRUFF_RAMAN.format(data=data))
    spectra, _ = converted(rruff, raw / "raman")
    assert [s.name for s in spectra] == ["excellent_unoriented/New__R2__Raman__785__1.txt"]


@pytest.mark.parametrize(
    "content, message",
    [
        (b"", "empty file"),
        (b"##NAMES=x\n\x00\x01binary", "binary content"),
        (b"##NAMES=x\n##END=\n", "no data lines"),
        (b"1, 2\n2, 3\n2, 4\n" + b"".join(b"%d, 1\n" % i for i in range(3, 30)), "appears twice"),
        (b"1, 2\n2, nan\n" + b"".join(b"%d, 1\n" % i for i in range(3, 30)), "non-finite"),
        (b"100, 1\n101, 2\n", "2 points"),
    ],
)
def test_corrupt_text_is_refused_naming_the_file(tmp_path, content, message):
    path = tmp_path / "raman" / "broken.txt"
    path.parent.mkdir()
    path.write_bytes(content)
    (item,) = rruff.convert(tmp_path, OPTIONS, Report(tmp_path))
    assert isinstance(item, Skipped) and str(path) in item.reason and message in item.reason


def test_physical_spectrum_rules():
    x = np.linspace(4000, 10000, 50)  # cm⁻¹, descending order handled below
    nir = physical_spectrum(
        "f", "n", x[::-1], np.ones(50), unit="cm-1", modality="IR", instrument="i", options=OPTIONS
    )
    assert nir.modality == "NIR" and np.all(np.diff(nir.wavenumber) > 0)
    nm = np.linspace(1100, 2500, 100)
    from_nm = physical_spectrum(
        "f", "n", nm, nm, unit="nm", modality="IR", instrument="i", options=OPTIONS
    )
    np.testing.assert_allclose(from_nm.wavenumber, 1e7 / nm[::-1])
    np.testing.assert_array_equal(from_nm.values, nm[::-1])  # each value stays at its point
    percent = physical_spectrum(
        "f",
        "n",
        np.arange(400.0, 450),
        np.full(50, 10.0),
        unit="cm-1",
        modality="IR",
        instrument="i",
        options=OPTIONS,
        value_unit="%TRANSMITTANCE",
    )
    np.testing.assert_allclose(percent.values, 1.0)  # 10 % -> A = 1
    with pytest.raises(SpectraError, match="f: non-positive wavenumber"):
        physical_spectrum(
            "f",
            "n",
            np.arange(-5.0, 45),
            np.ones(50),
            unit="cm-1",
            modality="IR",
            instrument="i",
            options=OPTIONS,
        )


def test_bin_average_preserves_area_and_position():
    x = np.arange(1000.0, 1200.0, 0.25)
    y = np.exp(-0.5 * ((x - 1100.3) / 6.0) ** 2)
    grid, means = bin_average("f", x, y, 2.0)
    assert np.all(np.mod(grid, 2.0) == 0) and grid[0] - 1 >= x[0] and grid[-1] + 1 <= x[-1]
    assert means.sum() * 2.0 == pytest.approx(np.trapezoid(y, x), rel=1e-6)
    assert grid[np.argmax(means)] == 1100.0
    np.testing.assert_allclose(bin_average("f", x, 3 * x + 1, 2.0)[1], 3 * grid + 1)  # exact


# ---------------------------------------------------------------------------------------------
# Computed line lists.


def test_lorentzian_is_area_normalised_on_a_fixed_grid():
    axis = lines.grid(400.0, 4000.0, 2.0)
    assert axis.size == 1801 and axis[0] == 400 and axis[-1] == 4000
    wide = np.arange(-1e5, 1e5, 0.5) + 1000.0  # symmetric about the mode: tails cancel out
    spectrum = lines.lorentzian_spectrum(np.array([1000.0]), np.array([50.0]), wide, 10.0)
    assert np.trapezoid(spectrum, wide) == pytest.approx(50.0, rel=1e-4)
    peak = lines.lorentzian_spectrum(np.array([1000.0]), np.array([50.0]), axis, 10.0)
    assert axis[np.argmax(peak)] == 1000 and peak.max() == pytest.approx(50 / (np.pi * 10))
    half = lines.lorentzian_spectrum(np.array([1000.0]), np.array([1.0]), np.array([1010.0]), 10)
    assert half[0] == pytest.approx(0.5 / (np.pi * 10))  # half maximum at ν ± HWHM


def test_check_lines_and_raman_cross_section():
    freq, inten = lines.check_lines("f", [-50.0, 1000.0, 2000.0], [1.0, 2.0, 3.0])
    np.testing.assert_array_equal(freq, [1000.0, 2000.0])  # the imaginary mode is dropped
    for bad, message in (
        ([1.0], "2 frequencies but 1"),
        ([1.0, -1.0], "negative intensity"),
        ([1.0, np.nan], "non-finite"),
    ):
        with pytest.raises(SpectraError, match=f"f: {message}"):
            lines.check_lines("f", [1000.0, 2000.0], bad)
    nu, laser, t = np.array([500.0, 3000.0, 19000.0]), 532.0, 298.15
    got = lines.raman_cross_section(nu, np.ones(3), laser, t)
    nu0 = 1e7 / laser
    expected = ((nu0 - nu[:2]) / nu0) ** 4 / nu[:2] / (1 - np.exp(-lines.C2 * nu[:2] / t))
    np.testing.assert_allclose(got[:2], expected)
    assert got[2] == 0  # beyond the laser wavenumber: no Stokes scattering


# ---------------------------------------------------------------------------------------------
# ChEMBL SQLite: plain columns only, never pickles.

# The leading bytes of a protocol-4 pickle, written out so that no pickle is ever made here.
PICKLE_BYTES = b"\x80\x04\x95\x10\x00\x00\x00\x00\x00\x00\x00}\x94(\x8c\x04freq\x94]\x94u."


def _database(path, columns, rows):
    with sqlite3.connect(path) as connection:
        connection.execute(f"CREATE TABLE molecules ({', '.join(columns)})")
        marks = ", ".join("?" * len(columns))
        connection.executemany(f"INSERT INTO molecules VALUES ({marks})", rows)
    connection.close()


def test_chembl_text_columns_become_ir_and_raman_spectra(tmp_path):
    rows = [
        ("CHEMBL1", "[1000.0, 1600.0, 3000.0]", "[10, 0, 30]", "1.5 2.5 0"),
        ("CHEMBL2", "1200,2900", "[5, 5]", "[1, 2]"),
        ("CHEMBL3", "[1000.0, 2000.0]", "[1]", "[1, 1]"),
    ]
    _database(
        tmp_path / "part.db",
        ['"chembl_id" TEXT', '"freq" TEXT', '"IR Inten" TEXT', '"Raman Activ" TEXT'],
        rows,
    )
    spectra, skipped = converted(chembl, tmp_path)
    names = [(s.name, s.modality) for s in spectra]
    assert names[:4] == [
        ("part.db:molecules:CHEMBL1", "IR"),
        ("part.db:molecules:CHEMBL1", "Raman"),
        ("part.db:molecules:CHEMBL2", "IR"),
        ("part.db:molecules:CHEMBL2", "Raman"),
    ]
    ir, raman = spectra[0], spectra[1]
    np.testing.assert_array_equal(ir.wavenumber, lines.grid(400, 4000, 2))
    np.testing.assert_array_equal(raman.wavenumber, lines.grid(100, 4000, 2))
    expected = lines.lorentzian_spectrum(
        np.array([1000.0, 1600, 3000]), np.array([10.0, 0, 30]), ir.wavenumber, 10.0
    )
    np.testing.assert_allclose(ir.values, expected)
    assert ir.instrument == "computed (Lorentzian HWHM 10 cm-1)"
    (bad,) = skipped
    assert bad.record == "part.db:molecules:CHEMBL3 (IR)"
    assert f"{tmp_path / 'part.db'}: table 'molecules', row 2" in bad.reason
    assert "2 frequencies but 1 intensities" in bad.reason
    cross = Options(raman_intensity="cross_section", hwhm=5.0, step=1.0)
    spectra, _ = converted(chembl, tmp_path, cross)
    assert spectra[1].value_unit.startswith("relative Raman intensity")
    assert spectra[1].wavenumber.size == 3901


def test_chembl_refuses_pickled_blobs(tmp_path):
    blob = zlib.compress(PICKLE_BYTES)
    _database(tmp_path / "pickled.db", ["id INTEGER", "blob_data BLOB"], [(1, blob)])
    with pytest.raises(chembl.BlobError, match=r"pickled\.db: no table .* hold Python pickles"):
        converted(chembl, tmp_path)
    (tmp_path / "pickled.db").unlink()
    _database(tmp_path / "blob.db", ["freq BLOB", "ir_intensity TEXT"], [(blob, "[1]")])
    with pytest.raises(
        chembl.BlobError,
        match="row 0, column 'freq': a BLOB holding a Python "
        "pickle; BLOBs are not read. Pickles are never",
    ):
        converted(chembl, tmp_path)


def test_chembl_refuses_a_file_that_is_not_sqlite(tmp_path):
    (tmp_path / "fake.db").write_bytes(b"<!DOCTYPE html><html>not a database</html>" * 20)
    with pytest.raises(SpectraError, match=r"fake\.db: not a readable SQLite database"):
        converted(chembl, tmp_path)


def test_no_pickle_in_the_package():
    for path in PACKAGE.glob("*.py"):
        text = path.read_text()
        assert "import pickle" not in text and "pickle.load" not in text, path
        assert "from pickle" not in text and "cPickle" not in text, path


# ---------------------------------------------------------------------------------------------
# USPTO: the conversion on arrays, parquet through pyarrow, and its absence.


def test_uspto_conversion_on_arrays():
    x = np.linspace(4500.0, 300.0, 12000)  # descending, wider than the IR range
    y = np.exp(-0.5 * ((x - 1700.0) / 8.0) ** 2)
    s = uspto.convert_spectrum("f", "n", x, y, OPTIONS)
    assert s.modality == "IR" and s.wavenumber[0] >= 400 and s.wavenumber[-1] <= 4000
    assert np.all(np.mod(s.wavenumber, 2.0) == 0) and s.wavenumber[np.argmax(s.values)] == 1700
    inside = (x >= 400) & (x <= 4000)
    area = -np.trapezoid(y[inside], x[inside])
    assert s.values.sum() * 2.0 == pytest.approx(area, rel=1e-3)
    with pytest.raises(SpectraError, match="f: 3 frequencies but 2"):
        uspto.convert_spectrum("f", "n", [1.0, 2, 3], [1.0, 2], OPTIONS)
    with pytest.raises(SpectraError, match="f: missing"):
        uspto.convert_spectrum("f", "n", None, [1.0], OPTIONS)


def test_uspto_parquet(tmp_path):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    x = np.linspace(400.0, 4000.0, 3601)
    table = pa.table(
        {
            "smiles": ["CCO", "C"],
            uspto.FREQUENCY_COLUMN: [x.tolist(), x.tolist()],
            uspto.SPECTRUM_COLUMN: [np.sin(x / 100).tolist(), [1.0, 2.0]],
        }
    )
    pq.write_table(table, tmp_path / "IR_data_chunk001_of_009.parquet")
    spectra, skipped = converted(uspto, tmp_path)
    assert [s.name for s in spectra] == ["IR_data_chunk001_of_009.parquet:CCO"]
    assert "row 1: 3601 frequencies but 2" in skipped[0].reason
    pq.write_table(pa.table({"x": [1]}), tmp_path / "IR_data_chunk001_of_009.parquet")
    with pytest.raises(SpectraError, match=r"chunk001_of_009\.parquet: missing column"):
        converted(uspto, tmp_path)


def test_uspto_without_pyarrow_says_so(tmp_path, monkeypatch):
    (tmp_path / "chunk.parquet").write_bytes(b"PAR1")
    monkeypatch.setitem(sys.modules, "pyarrow", None)  # makes `import pyarrow` fail
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)
    with pytest.raises(SpectraError, match=r"chunk\.parquet: .* needs pyarrow, which is not"):
        converted(uspto, tmp_path)


# ---------------------------------------------------------------------------------------------
# Safe extraction.


def _zip(path, members):
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for info, data in members:
            archive.writestr(info, data)
    return path


def _tar(path, members):
    with tarfile.open(path, "w:gz") as archive:
        for info, data in members:
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data) if data else None)
    return path


def _tarinfo(name, kind=tarfile.REGTYPE, link=""):
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, link
    return info


def _symlink_info(name):
    info = zipfile.ZipInfo(name)
    info.external_attr = 0o120777 << 16
    return info


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda p: _zip(p, [("/etc/evil.txt", b"x")]), "absolute path"),
        (lambda p: _zip(p, [("C:\\evil.txt", b"x")]), "absolute path"),
        (lambda p: _zip(p, [("ok/../../evil.txt", b"x")]), "'..' component"),
        (lambda p: _zip(p, [(_symlink_info("link"), b"../../etc/passwd")]), "symbolic link"),
        (lambda p: _zip(p, [("bomb.txt", b"\0" * (20 << 20))]), "zip bomb"),
        (lambda p: _zip(p, [("big.txt", b"x" * 5000)]), "more than the limit of 4096"),
        (lambda p: _zip(p, [("a.txt", b"1"), ("./a.txt", b"2")]), "appears twice"),
        (lambda p: _tar(p, [(_tarinfo("/abs.txt"), b"x")]), "absolute path"),
        (lambda p: _tar(p, [(_tarinfo("../up.txt"), b"x")]), "'..' component"),
        (
            lambda p: _tar(p, [(_tarinfo("l", tarfile.SYMTYPE, "../../x"), b"")]),
            "symbolic link to '../../x' (outside the target)",
        ),
        (
            lambda p: _tar(p, [(_tarinfo("h", tarfile.LNKTYPE, "/etc/passwd"), b"")]),
            "hard link to '/etc/passwd' (outside the target)",
        ),
        (lambda p: _tar(p, [(_tarinfo("fifo", tarfile.FIFOTYPE), b"")]), "special file"),
        (lambda p: _tar(p, [(_tarinfo("big.txt"), b"x" * 5000)]), "more than the limit"),
    ],
)
def test_unsafe_archives_are_refused_and_leave_nothing(tmp_path, make, message):
    archive = make(tmp_path / "archive.bin")
    with pytest.raises(archives.UnsafeArchiveError, match=re.escape(message)) as raised:
        archives.extract(
            archive,
            tmp_path / "out",
            max_member_bytes=4096
            if "big" in message or "limit" in message
            else archives.MAX_MEMBER_BYTES,
        )
    assert str(archive) in str(raised.value)
    assert [p.name for p in tmp_path.iterdir()] == ["archive.bin"]


def test_safe_archives_extract(tmp_path):
    _zip(tmp_path / "a.zip", [("dir/", b""), ("dir/x.txt", b"x" * 3000), ("y.txt", b"y")])
    got = archives.extract(tmp_path / "a.zip", tmp_path / "z")
    assert [p.relative_to(tmp_path / "z").as_posix() for p in got] == ["dir/x.txt", "y.txt"]
    _tar(tmp_path / "a.tgz", [(_tarinfo("d/x.txt"), b"abc")])
    (got,) = archives.extract(tmp_path / "a.tgz", tmp_path / "t")
    assert got.read_bytes() == b"abc"
    (tmp_path / "junk.zip").write_bytes(b"not an archive at all")
    with pytest.raises(SpectraError, match=r"junk\.zip: not a zip or tar archive"):
        archives.extract(tmp_path / "junk.zip", tmp_path / "j")
    with pytest.raises(SpectraError, match="already exists"):
        archives.extract(tmp_path / "a.zip", tmp_path / "z")


# ---------------------------------------------------------------------------------------------
# Downloads (mocked urlopen).


def fake_urlopen(files, announced=None):
    """An urlopen serving `files` (URL -> bytes); other URLs fail like a 404."""

    class Response(io.BytesIO):
        def __init__(self, url, timeout):
            assert timeout > 0
            if url not in files:
                raise urllib.error.HTTPError(url, 404, "Not Found", {}, None)
            super().__init__(files[url])
            length = announced if announced is not None else len(files[url])
            self.headers = {"Content-Length": str(length)}

    return Response


def test_fetch_checks_before_saving(tmp_path, monkeypatch):
    content = b"PK\x03\x04 some zip"
    good = hashlib.sha256(content).hexdigest()
    files = {"https://x/a.zip": content, "https://x/page": b"<!DOCTYPE html><html>"}
    monkeypatch.setattr(download.urllib.request, "urlopen", fake_urlopen(files))
    target = tmp_path / "raw" / "a.zip"
    with pytest.raises(SpectraError, match=r"https://x/a.zip: sha256 \w+ differs .* not saved"):
        download.fetch("https://x/a.zip", target, sha256="0" * 64)
    with pytest.raises(SpectraError, match="an HTML page"):
        download.fetch("https://x/page", target, magic=b"PK\x03\x04")
    with pytest.raises(SpectraError, match="https://x/missing: download failed .*404"):
        download.fetch("https://x/missing", target)
    assert list((tmp_path / "raw").iterdir()) == []  # nothing left behind
    digests = download.fetch("https://x/a.zip", target, sha256=good, magic=b"PK\x03\x04")
    assert target.read_bytes() == content and digests.sha256 == good
    assert digests.md5 == hashlib.md5(content).hexdigest()
    monkeypatch.setattr(download.urllib.request, "urlopen", fake_urlopen(files, announced=99))
    with pytest.raises(SpectraError, match=f"received {len(content)} of 99 announced bytes"):
        download.fetch("https://x/a.zip", tmp_path / "b.zip")
    assert not (tmp_path / "b.zip").exists()


def test_expected_sha256_values():
    digest = "ab" * 32
    assert builder.parse_expected([f"raman/x.zip={digest}"]) == {"raman/x.zip": digest}
    with pytest.raises(SpectraError, match="expected PATH=<64 hex digits>"):
        builder.parse_expected(["x.zip=123"])


@pytest.fixture(scope="module")
def mpx_server(shared_data):
    """URL -> bytes of the MPX selection, read from the shared reference copy."""
    folder = shared_data / "ir_raman_reference" / "mpx_polymers"
    return {r.url: (folder / r.path).read_bytes() for r in mpx.remote_files(OPTIONS)}


def test_download_mismatch_is_refused_and_nothing_is_left(tmp_path, monkeypatch, mpx_server):
    served = dict(mpx_server)
    url = next(iter(served))
    served[url] = served[url] + b"\n"  # one file changed upstream
    monkeypatch.setattr(download.urllib.request, "urlopen", fake_urlopen(served))
    with pytest.raises(SpectraError, match=r"sha256 \w+ differs from the recorded .* not saved"):
        builder.build("mpx", tmp_path / "raw", tmp_path / "out", download=True)
    assert not (tmp_path / "out").exists()
    assert not [p for p in (tmp_path / "raw").rglob("*") if p.is_file()]


def test_nist_download_records_and_checks_checksums(tmp_path, monkeypatch, shared_data):
    content = (shared_data / "ir_raman_reference" / "nist_ir_jcamp" / "methane.jdx").read_bytes()
    url = nist.WEBBOOK_URL.format(id="C74828", index=0)
    monkeypatch.setattr(download.urllib.request, "urlopen", fake_urlopen({url: content}))
    options = Options(ids=("74-82-8",))
    manifest = builder.build("nist", tmp_path / "raw", tmp_path / "out", options, download=True)
    entry = manifest["inputs"]["webbook/C74828_0.jdx"]
    assert entry == {
        "sha256": hashlib.sha256(content).hexdigest(),
        "bytes": len(content),
        "md5": hashlib.md5(content).hexdigest(),
        "url": url,
        "checked": "recorded",
    }
    manifest_path = pathlib.Path(manifest["build"]["path"]) / "manifest.json"
    again = builder.build(
        "nist",
        tmp_path / "raw",
        tmp_path / "out",
        options,
        overwrite=True,
        expect_sha256=builder.parse_expected([f"@{manifest_path}"]),
    )
    assert again["inputs"]["webbook/C74828_0.jdx"]["checked"] == "expected"
    with pytest.raises(SpectraError, match=r"C74828_0\.jdx: sha256 \w+ differs from the expected"):
        builder.build(
            "nist",
            tmp_path / "raw",
            tmp_path / "out2",
            options,
            expect_sha256={"webbook/C74828_0.jdx": "0" * 64},
        )
    with pytest.raises(SpectraError, match="already built; pass --overwrite"):
        builder.build("nist", tmp_path / "raw", tmp_path / "out", options)
    with pytest.raises(SpectraError, match="NIST id 'benzene'"):
        nist.remote_files(Options(ids=("benzene",)))


# ---------------------------------------------------------------------------------------------
# tfds builds: the CLI, the manifest, tfds.data_source, TfdsSource and the input pipeline.


@pytest.fixture(scope="module")
def mpx_build(tmp_path_factory, mpx_server):
    """A download-and-build of the MPX selection through the CLI (mocked urlopen)."""
    root = tmp_path_factory.mktemp("mpx")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(download.urllib.request, "urlopen", fake_urlopen(mpx_server))
        manifest = main(
            ["--source=mpx", f"--raw_dir={root / 'raw'}", f"--out={root / 'out'}", "--download"]
        )
    return root, manifest


def test_build_manifest(mpx_build):
    root, manifest = mpx_build
    path = root / "out" / "public_spectra" / "mpx" / "1.0.0"
    assert manifest == json.loads((path / "manifest.json").read_text())
    assert manifest["build"]["records"] == 113 and len(manifest["skipped"]) == 7
    assert manifest["build"]["by_modality"] == {"IR": 60, "Raman": 53}
    assert len(manifest["inputs"]) == 120
    assert all(
        e["checked"] == "known" and e["url"].startswith(mpx.BASE_URL)
        for e in manifest["inputs"].values()
    )
    assert manifest["options"]["laser_nm"] == 532.0 and manifest["licence"].startswith("CC BY-SA")
    assert sorted(p.name for p in (root / "out").iterdir()) == ["public_spectra"]


def test_build_reads_back_through_tfds_and_the_pipeline(mpx_build, shared_data):
    root, manifest = mpx_build
    source = tfds.data_source("public_spectra/mpx", data_dir=str(root / "out"))["train"]
    reference, _ = converted(mpx, shared_data / "ir_raman_reference" / "mpx_polymers")
    assert len(source) == len(reference)
    instruments = manifest["build"]["instruments"]
    for index in (0, 70, 112):
        record, spectrum = source[index], reference[index]
        assert record["name"].decode() == spectrum.name and record["sample_id"] == index
        np.testing.assert_array_equal(record["wavenumber"], spectrum.wavenumber.astype(np.float32))
        np.testing.assert_array_equal(record["values"], spectrum.values.astype(np.float32))
        assert ("NIR", "IR", "Raman")[record["modality"]] == spectrum.modality
        assert instruments[record["instrument"][0]] == spectrum.instrument
        assert record["lengths"].tolist() == [spectrum.values.size]
    tfds_source = TfdsSource(manifest["build"]["path"])
    simulated = SimulatedSource(SimulatorConfig(seed=0, num_components=24, num_families=12))
    pipeline = InputPipeline(
        [simulated, tfds_source],
        global_batch=8,
        num_points=512,
        seed=0,
        process_index=0,
        process_count=1,
    )
    batch = pipeline.batch(0)
    real = batch["source"] == 1
    assert real.any() and not batch["paired"][real].any()
    assert batch["valid"][real].all() and np.all(np.diff(batch["wavenumber"][real], axis=-1) > 0)


def test_step_bins_fine_spectra_and_max_records(tmp_path, shared_data):
    folder = shared_data / "ir_raman_reference" / "nist_ir_jcamp"
    options = Options(step=2.0, max_records=2)
    manifest = builder.build("nist", folder, tmp_path, options)
    assert manifest["build"]["records"] == 2 and manifest["options"]["step"] == 2.0
    records = TfdsSource(manifest["build"]["path"])
    first = records[0]  # 1,1,1-trichloroethane: QUANT-IR, 0.24 cm⁻¹ spacing
    assert first["name"] == b"1,1,1-trichloroethane.jdx" and first["lengths"][0] == 1698
    np.testing.assert_array_equal(
        first["wavenumber"], np.arange(578.0, 3973.0, 2.0)
    )  # cells within 575.17-3974.85


def test_empty_or_missing_raw_folder_writes_nothing(tmp_path):
    with pytest.raises(SystemExit, match="raw folder does not exist"):
        main(["--source=rruff", f"--raw_dir={tmp_path / 'none'}", f"--out={tmp_path / 'out'}"])
    (tmp_path / "raw").mkdir()
    (tmp_path / "raw" / "x.jdx").write_text("##TITLE=x\n")
    with pytest.raises(SpectraError, match=r"no nist spectrum .*/x\.jdx: the block starting"):
        builder.build("nist", tmp_path / "raw", tmp_path / "out")
    assert not (tmp_path / "out").exists()
