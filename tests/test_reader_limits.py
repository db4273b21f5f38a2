"""Readers against bad and hostile input: special files, size limits, wrong path types and text
encodings, out-of-range and oversized JCAMP-DX headers, truncated, decompression-bomb and
malformed MATLAB files, tar bombs, and the quoting of the TPU launcher's remote command.

Every case must raise a SpectraError whose message starts with the file and names the problem,
and must leave the folder as it was (readers write nothing).
"""

import io
import os
import pathlib
import re
import shutil
import signal
import struct
import subprocess
import tarfile
import zlib

import numpy as np
import pytest
import scipy.io
from test_readers import _jcamp  # the same synthetic JCAMP-DX writer

from caltransfer_jax.data import jcamp_dx, rawfile
from caltransfer_jax.data.readers import read_jcamp, read_mat
from caltransfer_jax.data.spectra import SpectraError
from data_prep.public_corpora import archives

REPO = pathlib.Path(__file__).resolve().parents[1]
MAT = {"key": "X", "axis_key": "wl", "axis_unit": "nm", "modality": "NIR", "instrument": "a"}
READERS = {
    "bytes": rawfile.read_bytes,
    "jcamp": read_jcamp,
    "mat": lambda path, **kwargs: read_mat(path, **MAT, **kwargs),
}


def _refused(path, match, read, **kwargs):
    """`read(path)` raises a SpectraError starting with the path and matching `match`, and the
    folder holding the file is left as it was."""
    folder = pathlib.Path(path).parent if isinstance(path, (str, os.PathLike)) else None
    before = sorted(folder.iterdir()) if folder and folder.is_dir() else None
    with pytest.raises(SpectraError, match=match) as error:
        read(path, **kwargs)
    assert str(error.value).startswith(f"{path}: "), str(error.value)
    if before is not None:
        assert sorted(folder.iterdir()) == before
    return str(error.value)


@pytest.fixture
def alarm():
    """Fails a test that blocks (e.g. on opening a FIFO) instead of hanging the suite."""
    if not hasattr(signal, "SIGALRM"):
        pytest.skip("no SIGALRM on this platform")

    def timeout(signum, frame):
        raise TimeoutError("the reader blocked")

    previous = signal.signal(signal.SIGALRM, timeout)
    signal.alarm(10)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, previous)


# ---------------------------------------------------------------------------------------------
# Special files, size limits, path types, encodings.


@pytest.mark.parametrize("reader", READERS)
def test_fifo_is_refused_without_opening_it(tmp_path, alarm, reader):
    fifo = tmp_path / "pipe.jdx"
    os.mkfifo(fifo)  # opening it for reading would block until a writer appears
    _refused(fifo, r"is a FIFO \(named pipe\), not a regular file", READERS[reader])


@pytest.mark.parametrize("reader", READERS)
def test_dev_zero_is_refused(reader):
    if not os.path.exists("/dev/zero"):
        pytest.skip("no /dev/zero")
    _refused("/dev/zero", "is a character device, not a regular file", READERS[reader])


@pytest.mark.parametrize("reader", READERS)
def test_file_over_max_bytes_is_refused_before_reading(tmp_path, reader):
    path = tmp_path / "big.jdx"
    path.write_bytes(b"x" * 5000)
    message = _refused(
        path,
        r"too large \(5000 bytes, more than the limit of 4096 bytes\)",
        READERS[reader],
        max_bytes=4096,
    )
    assert "max_bytes" in message


def test_module_default_limit_applies_and_growing_files_are_cut(tmp_path, monkeypatch):
    path = tmp_path / "f.jdx"
    path.write_bytes(b"x" * 100)
    monkeypatch.setattr(rawfile, "MAX_BYTES", 50)
    _refused(path, "more than the limit of 50 bytes", rawfile.read_bytes)
    assert rawfile.read_bytes(path, max_bytes=100)[1] == b"x" * 100
    # Files that report size 0 (as those of /proc do) are still read only up to the limit.
    if os.path.exists("/proc/self/status"):
        _refused(
            "/proc/self/status",
            r"too large \(more than the limit of 10",
            rawfile.read_bytes,
            max_bytes=10,
        )
    with pytest.raises(SpectraError, match="max_bytes must be a positive whole number"):
        rawfile.read_bytes(path, max_bytes=0)


@pytest.mark.parametrize(
    "path, match",
    [
        (b"/tmp/spectrum.jdx", "path must be a str or os.PathLike, got bytes; decode it"),
        (None, "path must be a str or os.PathLike, got NoneType"),
        (3, "path must be a str or os.PathLike, got int"),
    ],
)
@pytest.mark.parametrize("reader", READERS)
def test_path_of_the_wrong_type(path, match, reader):
    with pytest.raises(SpectraError, match=match) as error:
        READERS[reader](path)
    assert str(error.value).startswith(f"{path!r}: ")


def test_empty_and_nul_paths(tmp_path):
    with pytest.raises(SpectraError, match="^'': the path is empty"):
        rawfile.read_bytes("")
    with pytest.raises(SpectraError, match=r"^'a\\x00b': the path contains a NUL byte"):
        rawfile.read_bytes("a\0b")
    _refused(tmp_path / "missing" / "x.jdx", "file not found", rawfile.read_bytes)


@pytest.mark.parametrize(
    "encoding, match",
    [
        ("utf-16", r"UTF-16 text \(little-endian, with a byte-order mark\); save it as UTF-8"),
        ("utf-16-be", r"UTF-16 text \(big-endian, without a byte-order mark\); save it as UTF-8"),
        ("utf-16-le", r"UTF-16 text \(little-endian, without a byte-order mark\)"),
        ("utf-32", r"UTF-32 text \(little-endian, with a byte-order mark\); save it as UTF-8"),
    ],
)
def test_utf16_and_utf32_text_is_named(tmp_path, encoding, match):
    path = tmp_path / "wide.jdx"
    path.write_bytes(_jcamp(AFFN).encode(encoding))
    _refused(path, match, read_jcamp)
    assert "binary content" not in _refused(path, match, read_jcamp)


def test_binary_content_is_still_binary(tmp_path):
    path = tmp_path / "noise.jdx"
    path.write_bytes(np.random.default_rng(0).integers(0, 256, 2000, dtype=np.uint8).tobytes())
    _refused(path, "binary content", read_jcamp)


# ---------------------------------------------------------------------------------------------
# JCAMP-DX.

AFFN = ["1000 100 102 102 102 98", "1005 -5 -5 10 11 11"]


@pytest.mark.parametrize(
    "text, match",
    [
        # float("0.0000e400") is 0, but its last digit (1e396) overflowed a float.
        (_jcamp(AFFN, FIRSTY="0.0000e400"), r"##FIRSTY=0.0000e400 has its last digit at 1e396"),
        # 2e8 points would have been allocated (1.6 GB) before the point count was checked.
        (_jcamp(AFFN, NPOINTS="200000000"), "##NPOINTS=200000000 is more than the limit of"),
        (_jcamp(AFFN, NPOINTS="2e8"), "##NPOINTS=2e8 is more than the limit of"),
        (_jcamp(AFFN, NPOINTS="1000"), r"the data table \(42 characters\) can hold at most 42"),
        (_jcamp(AFFN, NPOINTS="10.0"), "##NPOINTS=10.0 must be written as a whole number"),
        (_jcamp(AFFN, XFACTOR="0"), "##XFACTOR=0 is zero; it must be the non-zero factor"),
        (_jcamp(AFFN, YFACTOR="0"), "##YFACTOR=0 is zero"),
        (_jcamp(AFFN, YFACTOR="1e306"), r"##YFACTOR=1e306 is beyond the float32 range"),
        (_jcamp(AFFN, FIRSTX="1e39"), r"##FIRSTX=1e39 is beyond the float32 range"),
        (
            _jcamp(["1000 1e300 102 102 102 98", "1005 -5 -5 10 11 11"], YFACTOR="1"),
            r"decoded ordinate 1e\+300 at point 1 is beyond the float32 range",
        ),
        (
            _jcamp(["1000 1e308 102 102 102 98", "1005 -5 -5 10 11 11"], YFACTOR="1000"),
            r"decoded ordinate inf at point 1 is beyond the float32 range",
        ),
        (_jcamp(AFFN, FIRSTY="1_0"), "'1_0' is not a finite number"),
    ],
)
def test_jcamp_header_numbers_and_values_out_of_range(tmp_path, text, match):
    _refused(_write(tmp_path / "bad.jdx", text), match, read_jcamp)


def test_jcamp_npoints_is_checked_before_the_jcamp_package_allocates(tmp_path, monkeypatch):
    path = _write(tmp_path / "n.jdx", _jcamp(AFFN, NPOINTS="5000"))

    def allocating(lines):
        raise AssertionError("jcamp.read was called")

    monkeypatch.setattr(jcamp_dx.jcamp, "read", allocating)
    _refused(path, "can hold at most 42 points", read_jcamp)
    monkeypatch.setattr(jcamp_dx, "MAX_POINTS", 5)
    _refused(
        _write(tmp_path / "m.jdx", _jcamp(AFFN)), "more than the limit of 5 points", read_jcamp
    )


def test_jcamp_dup_bomb_and_ambiguous_headers(tmp_path):
    # The jcamp package expands DUP by copying the text since the last DIF digit: 3 KB of DUP
    # digits used to build a 315 MB string.
    bomb = _jcamp(["1000A00J1" + "Z" * 3000])
    _refused(_write(tmp_path / "dup.jdx", bomb), "DUP counts expand it far beyond", read_jcamp)
    twice = _jcamp(AFFN).replace("##NPOINTS=10", "##NPOINTS=10\n##N POINTS=200000000")
    _refused(
        _write(tmp_path / "twice.jdx", twice),
        r"##NPOINTS= is given twice in the block with different values \('10' and '200000000'\)",
        read_jcamp,
    )
    tables = _jcamp(AFFN).replace("##END=", "##XYDATA=(X++(Y..Y))\n" + "\n".join(AFFN) + "\n##END=")
    _refused(_write(tmp_path / "tables.jdx", tables), "more than one data table", read_jcamp)
    # Still read: a repeated label with the same value, and a UTF-8 byte-order mark.
    same = _jcamp(AFFN).replace("##NPOINTS=10", "##NPOINTS=10\n##NPOINTS=10")
    assert read_jcamp(_write(tmp_path / "same.jdx", "\ufeff" + same)).values.shape == (1, 10)


def _write(path, text):
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return path


# ---------------------------------------------------------------------------------------------
# MATLAB .mat.

X = np.arange(12.0).reshape(3, 4) / 10
WL = np.array([[1100.0, 1102.0, 1104.0, 1106.0]])


def _mat_bytes(variables, compress=False):
    buffer = io.BytesIO()
    scipy.io.savemat(buffer, variables, do_compression=compress)
    return buffer.getvalue()


def test_truncated_mat_says_truncated(tmp_path):
    whole = _mat_bytes({"X": X, "wl": WL})
    first = 128 + 8 + struct.unpack_from("<I", whole, 132)[0]  # end of the first variable
    cases = {
        "header.mat": (whole[:128], r"truncated or corrupt \.mat file \(it holds no variables\)"),
        "cut.mat": (
            whole[: first + 40],
            r"truncated or corrupt \.mat file \(variable 2 .*declares",
        ),
        "tag.mat": (whole[: first + 3], r"truncated or corrupt .*the file ends inside its tag"),
        "short.mat": (whole[:60], r"truncated or corrupt .*ends at byte 60, inside its 128-byte"),
        "boundary.mat": (whole[:first], r"no variable 'wl'; the file has \['X'\] .*cut short"),
    }
    for name, (data, match) in cases.items():
        _refused(_write(tmp_path / name, data), match, READERS["mat"])


def test_mat_decoded_size_limit(tmp_path):
    # 2000 x 2000 zeros: 32 MB decoded from about 31 KB compressed.
    data = _mat_bytes({"X": np.zeros((2000, 2000)), "wl": WL}, compress=True)
    assert len(data) < 100_000
    path = _write(tmp_path / "bomb.mat", data)
    message = _refused(
        path,
        r"variable 'X' decodes to 32000056 bytes \(from \d+ compressed\), more than the limit "
        r"of 1000000 bytes",
        READERS["mat"],
        max_decoded_bytes=1_000_000,
    )
    assert "decompression bomb" in message and "max_decoded_bytes" in message
    # Inside a DataSet struct: whosmat would show only a 1x1 struct.
    nested = _mat_bytes({"D": {"data": np.zeros((2000, 2000)), "name": "a"}}, compress=True)
    _refused(
        _write(tmp_path / "nested.mat", nested),
        "variable 'D' decodes to .* more than the limit of 1000000",
        lambda p, **k: read_mat(p, key="D", axis_unit="nm", modality="NIR", **k),
        max_decoded_bytes=1_000_000,
    )
    # Variables not asked for are not decoded (nor counted).
    small = _mat_bytes({"X": X, "wl": WL, "big": np.zeros((2000, 2000))}, compress=True)
    s = read_mat(_write(tmp_path / "other.mat", small), **MAT, max_decoded_bytes=10_000)
    np.testing.assert_array_equal(s.values, X)


def test_mat_complex_and_out_of_range_values(tmp_path):
    cases = {
        "complex.mat": ({"X": X + 1j, "wl": WL}, r"variable 'X': holds complex numbers; only real"),
        "big.mat": (
            {"X": np.where(X > 0.5, 1e300, X), "wl": WL},
            r"variable 'X': value 1e\+300 at row 2, column 3 is beyond the float32 range",
        ),
        "axis.mat": ({"X": X, "wl": WL * 1e300}, "variable 'wl': value .* beyond the float32"),
    }
    for name, (variables, match) in cases.items():
        _refused(_write(tmp_path / name, _mat_bytes(variables)), match, READERS["mat"])


def _element(kind, payload):
    return struct.pack("<II", kind, len(payload)) + payload + b"\0" * (-len(payload) % 8)


def _matrix(mclass, dims, name, body):
    flags = _element(6, struct.pack("<II", mclass, 0))
    shape = _element(5, struct.pack(f"<{len(dims)}i", *dims))
    return _element(14, flags + shape + _element(1, name) + body)


MAT_HEADER = b"MATLAB 5.0 MAT-file".ljust(116, b" ") + b"\0" * 8 + b"\x00\x01IM"
EMPTY = _matrix(6, (0, 0), b"", _element(9, b""))


def test_hostile_mat_structure_is_refused_before_scipy_reads_it(tmp_path):
    # scipy allocated 20000 x 20000 cells (3.1 GB) for this 240-byte file.
    cells = MAT_HEADER + _matrix(1, (20000, 20000), b"X", EMPTY)
    # scipy recursed in C and crashed the process (segmentation fault) on 20000 nested cells.
    nested = EMPTY
    for depth in range(2000):
        nested = _matrix(1, (1, 1), b"X" if depth == 1999 else b"", nested)
    compressed = zlib.compress(nested)  # compressed elements are not padded
    deep = MAT_HEADER + struct.pack("<II", 15, len(compressed)) + compressed
    # A data element claiming 4 GB: scipy allocated it before finding the data short.
    plain = _mat_bytes({"X": X})
    at = plain.index(struct.pack("<II", 9, X.nbytes))
    lying = plain[:at] + struct.pack("<II", 9, 0xFFFFFFF0) + plain[at + 8 :]
    cases = {
        "cells.mat": (cells, r"a cell array declares 400000000 values but holds 1"),
        "deep.mat": (deep, "nests cells or structs more than 64 deep"),
        "lying.mat": (lying, "an element declares 4294967280 bytes but only 96 remain"),
        "zlib.mat": (MAT_HEADER + _element(15, b"x\x9cgarbage"), "compressed data .* damaged"),
    }
    for name, (data, match) in cases.items():
        _refused(_write(tmp_path / name, data), match, READERS["mat"])


# ---------------------------------------------------------------------------------------------
# Tar bombs.


def _tar_gz(path, members, **options):
    with tarfile.open(path, "w:gz", **options) as archive:
        for info, data in members:
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return path


def test_tar_bomb_is_refused_and_leaves_nothing(tmp_path):
    # 61 KB expanding to 63 MB used to be extracted whole.
    bomb = _tar_gz(tmp_path / "bomb.tar.gz", [(tarfile.TarInfo("zeros.txt"), bytes(63 << 20))])
    assert bomb.stat().st_size < 100_000
    with pytest.raises(archives.UnsafeArchiveError, match="a tar bomb") as raised:
        archives.extract(bomb, tmp_path / "out")
    assert str(raised.value).startswith(f"{bomb}: member 'zeros.txt' brings the declared size")
    # A pax header is read whole by tarfile before any member: the stream itself is bounded.
    info = tarfile.TarInfo("a.txt")
    info.pax_headers = {"comment": "x" * (30 << 20)}
    pax = _tar_gz(tmp_path / "pax.tar.gz", [(info, b"a")], format=tarfile.PAX_FORMAT)
    with pytest.raises(archives.UnsafeArchiveError, match=r"expands \d+ bytes to more than"):
        archives.extract(pax, tmp_path / "out")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bomb.tar.gz", "pax.tar.gz"]
    # The same data at a permitted ratio extract.
    (got,) = archives.extract(bomb, tmp_path / "out", max_ratio=2000)
    assert got.stat().st_size == 63 << 20


# ---------------------------------------------------------------------------------------------
# TPU launcher.


def _launch(tmp_path, workdir):
    """Runs launch/tpu_vm.sh with a stub gcloud; returns the result and each call's arguments."""
    stub, calls = tmp_path / "bin", tmp_path / "calls"
    stub.mkdir()
    calls.mkdir()
    (stub / "gcloud").write_text(
        '#!/usr/bin/env bash\nn=$(ls "$CALLS" | wc -l)\n'
        'for a in "$@"; do printf "%s\\0" "$a"; done > "$CALLS/$n"\n'
    )
    (stub / "gcloud").chmod(0o755)
    env = {**os.environ, "PATH": f"{stub}:{os.environ['PATH']}", "CALLS": str(calls)}
    result = subprocess.run(
        ["bash", str(REPO / "launch" / "tpu_vm.sh"), "tpu", "zone", workdir, "--config=c.py"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    args = [
        (calls / str(k)).read_bytes().split(b"\0")[:-1] for k in range(len(list(calls.iterdir())))
    ]
    return result, [[a.decode() for a in call] for call in args]


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_tpu_launcher_quotes_the_workdir(tmp_path):
    assert subprocess.run(["bash", "-n", str(REPO / "launch" / "tpu_vm.sh")]).returncode == 0
    workdir = f"gs://b/my runs/x; touch {tmp_path}/pwned #$(id)"
    result, calls = _launch(tmp_path, workdir)
    assert result.returncode == 0, result.stderr
    ssh = calls[-1]
    assert ssh[:4] == ["compute", "tpus", "tpu-vm", "ssh"]
    command = ssh[ssh.index("--command") + 1]
    # Run the remote command as a worker would, with a stub run.sh recording its arguments.
    worker = tmp_path / "worker" / "caltransfer_jax"
    (worker / ".venv").mkdir(parents=True)
    (worker / "launch").mkdir()
    (worker / "launch" / "run.sh").write_text(
        f'#!/usr/bin/env bash\nfor a in "$@"; do printf "%s\\0" "$a"; done > {tmp_path}/run_args\n'
    )
    (worker / "launch" / "run.sh").chmod(0o755)
    subprocess.run(["bash", "-c", command], cwd=worker.parent, check=True, timeout=60)
    run_args = (tmp_path / "run_args").read_bytes().split(b"\0")[:-1]
    assert [a.decode() for a in run_args] == [f"--workdir={workdir}", "--config=c.py"]
    assert not (tmp_path / "pwned").exists()


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_tpu_launcher_refuses_a_workdir_with_a_newline(tmp_path):
    result, calls = _launch(tmp_path, f"gs://b/x\ntouch {tmp_path}/pwned")
    assert result.returncode == 2 and calls == []
    assert re.search(r"the workdir .* contains a newline", result.stderr)
    assert not (tmp_path / "pwned").exists()
