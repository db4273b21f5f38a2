"""Input files read as bytes, with the same `SpectraError` messages for every reader.

`read_bytes` reads regular files only, and only up to a size limit: a FIFO, a device such as
/dev/zero or a socket is refused from its `os.stat` before it is opened (opening a FIFO for
reading blocks until a writer appears), and a file larger than `max_bytes` is refused before it
is read. The limit defaults to `MAX_BYTES`; set `rawfile.MAX_BYTES` to change it for every
reader, or pass `max_bytes=` to a reader for one file. `check_text` refuses binary content and
recognises UTF-16 and UTF-32 text, which must be saved as UTF-8.
"""

from __future__ import annotations

import codecs
import os
import re
import stat

import numpy as np

from caltransfer_jax.data.spectra import SpectraError

PathLike = str | os.PathLike

# Largest file any reader reads (bytes); `read_bytes(..., max_bytes=)` overrides it per call.
MAX_BYTES = 512 << 20
# Largest magnitude kept: spectra go to float32 for the model, where larger values become inf.
FLOAT32_MAX = float(np.finfo(np.float32).max)

# Control characters that never occur in text files (tab, CR/LF, form feed and the DOS
# end-of-file mark 0x1a do, so they are allowed).
_BINARY = re.compile(rb"[\x00-\x08\x0b\x0e-\x19\x1b-\x1f]")
_BINARY_TEXT = re.compile(_BINARY.pattern.decode())
_CHUNK = 1 << 20
# Byte-order marks, longest first (the UTF-32 LE mark starts with the UTF-16 LE one).
_BOMS = (
    (codecs.BOM_UTF32_LE, "UTF-32", "little-endian"),
    (codecs.BOM_UTF32_BE, "UTF-32", "big-endian"),
    (codecs.BOM_UTF16_LE, "UTF-16", "little-endian"),
    (codecs.BOM_UTF16_BE, "UTF-16", "big-endian"),
)
# Text without a byte-order mark, recognised by where its zero bytes are: (codec, name, byte
# order, unit size, position of the non-zero byte in each unit).
_UNMARKED = (
    ("utf-32-le", "UTF-32", "little-endian", 4, 0),
    ("utf-32-be", "UTF-32", "big-endian", 4, 3),
    ("utf-16-le", "UTF-16", "little-endian", 2, 0),
    ("utf-16-be", "UTF-16", "big-endian", 2, 1),
)
_SAMPLE = 4096
_FILE_KINDS = (
    (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


def read_bytes(path: PathLike, *, max_bytes: int | None = None) -> tuple[str, bytes]:
    """The file's origin string (its path, for messages) and its content.

    Args:
      path: a str or os.PathLike naming a regular file (symbolic links are followed).
      max_bytes: largest file read, in bytes; None uses the module's `MAX_BYTES` (512 MiB).

    Raises:
      SpectraError: `path` is not a str/os.PathLike, names nothing, a directory or a special
        file (FIFO, device, socket), cannot be read, is empty, or is larger than `max_bytes`.
        Nothing is opened unless the path names a regular file.
    """
    origin = _origin(path)
    limit = MAX_BYTES if max_bytes is None else max_bytes
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise SpectraError(f"{origin}: max_bytes must be a positive whole number, got {limit!r}")
    try:
        # Checked before opening: opening a FIFO for reading blocks until a writer appears.
        info = os.stat(origin)
        _check_kind(origin, info.st_mode, info.st_size, limit)
        # O_NONBLOCK: should the path be swapped for a FIFO after the check, opening it does
        # not block either; the check is then repeated on what was opened.
        flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0)
        descriptor = os.open(origin, flags | getattr(os, "O_NOCTTY", 0))
        try:
            opened = os.fstat(descriptor)
            _check_kind(origin, opened.st_mode, opened.st_size, limit)
            data = _read_limited(origin, descriptor, opened.st_size, limit)
        finally:
            os.close(descriptor)
    except FileNotFoundError:
        raise SpectraError(f"{origin}: file not found") from None
    except NotADirectoryError:
        raise SpectraError(f"{origin}: file not found (a part of the path is a file)") from None
    except IsADirectoryError:
        raise SpectraError(f"{origin}: is a directory, not a file") from None
    except OSError as error:
        raise SpectraError(
            f"{origin}: cannot be read ({error.strerror or error}); check its permissions"
        ) from None
    if not data.strip():
        raise SpectraError(f"{origin}: empty file")
    return origin, data


def _origin(path) -> str:
    """The path as a str, refusing bytes, None and other types, NUL bytes and ''."""
    if not isinstance(path, (str, os.PathLike)):
        raise SpectraError(
            f"{path!r}: path must be a str or os.PathLike, got {type(path).__name__}"
            + ("; decode it with os.fsdecode" if isinstance(path, (bytes, bytearray)) else "")
        )
    origin = os.fspath(path)
    if not isinstance(origin, str):
        raise SpectraError(
            f"{origin!r}: path must be a str or os.PathLike returning str, got "
            f"{type(origin).__name__}; decode it with os.fsdecode"
        )
    if not origin:
        raise SpectraError("'': the path is empty; pass the file's path")
    if "\0" in origin:
        raise SpectraError(f"{origin!r}: the path contains a NUL byte; no file has such a name")
    return origin


def _check_kind(origin: str, mode: int, size: int, limit: int) -> None:
    if stat.S_ISDIR(mode):
        raise SpectraError(f"{origin}: is a directory, not a file")
    if not stat.S_ISREG(mode):
        kind = next((name for test, name in _FILE_KINDS if test(mode)), "a special file")
        raise SpectraError(
            f"{origin}: is {kind}, not a regular file; copy the data into a regular file first"
        )
    if size > limit:
        raise SpectraError(_too_large(origin, size, limit))


def _too_large(origin: str, size: int | None, limit: int) -> str:
    size_text = "" if size is None else f"{size} bytes, "
    return (
        f"{origin}: file is too large ({size_text}more than the limit of {limit} bytes); pass "
        "a larger max_bytes (or set caltransfer_jax.data.rawfile.MAX_BYTES) if it is genuine"
    )


def _read_limited(origin: str, descriptor: int, size: int, limit: int) -> bytes:
    """Reads to the end, refusing more than `limit` bytes (files such as those of /proc report
    size 0, and a file may grow while it is read)."""
    parts, total = [], 0
    want = min(size, limit) + 1  # the whole file in the first read, then one to see its end
    while total <= limit:
        part = os.read(descriptor, min(max(want - total, _CHUNK), limit + 1 - total))
        if not part:
            break
        parts.append(part)
        total += len(part)
    if total > limit:
        raise SpectraError(_too_large(origin, None, limit))
    return parts[0] if len(parts) == 1 else b"".join(parts)


def check_text(origin: str, data: bytes) -> None:
    """Refuses UTF-16/UTF-32 text (with or without a byte-order mark) and binary content
    (control characters that text files do not contain)."""
    wide = _wide_encoding(data)
    if wide:
        name, how = wide
        raise SpectraError(
            f"{origin}: {name} text ({how}); save it as UTF-8 (e.g. 'Save as' > 'UTF-8' in the "
            "editor or spreadsheet) and read it again"
        )
    match = _BINARY.search(data)
    if match:
        raise SpectraError(
            f"{origin}: binary content (byte 0x{match.group()[0]:02x} at offset "
            f"{match.start()}); expected a text file"
        )


def _wide_encoding(data: bytes) -> tuple[str, str] | None:
    """('UTF-16', 'little-endian, …') and the like when `data` is UTF-16 or UTF-32 text."""
    for bom, name, order in _BOMS:
        if data.startswith(bom):
            return name, f"{order}, with a byte-order mark"
    if b"\0" not in data[:_SAMPLE]:
        return None
    for codec, name, order, unit, text_at in _UNMARKED:
        sample = data[: len(data[:_SAMPLE]) // unit * unit]
        if not sample:
            continue
        units = np.frombuffer(sample, np.uint8).reshape(-1, unit) == 0
        # Each unit holds one character: zeros in its other bytes (all of them for ASCII), never
        # in its text byte (but for rare characters such as U+0100).
        other = np.delete(units, text_at, axis=1).mean()
        if other >= 0.9 and units[:, text_at].mean() <= 0.01:
            try:
                # Incremental: the sample may end inside a surrogate pair.
                text = codecs.getincrementaldecoder(codec)().decode(sample, final=False)
            except UnicodeDecodeError:
                continue
            if not _BINARY_TEXT.search(text):
                return name, f"{order}, without a byte-order mark"
    return None
