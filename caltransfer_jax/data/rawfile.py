"""Input files read as bytes, with the same `SpectraError` messages for every reader."""

from __future__ import annotations

import os
import pathlib
import re

from caltransfer_jax.data.spectra import SpectraError

PathLike = str | os.PathLike

# Control characters that never occur in text files (tab, CR/LF, form feed and the DOS
# end-of-file mark 0x1a do, so they are allowed).
_BINARY = re.compile(rb"[\x00-\x08\x0b\x0e-\x19\x1b-\x1f]")


def read_bytes(path: PathLike) -> tuple[str, bytes]:
    """The file's origin string (its path, for messages) and its content; refuses empty files."""
    origin = str(path)
    try:
        data = pathlib.Path(path).read_bytes()
    except FileNotFoundError:
        raise SpectraError(f"{origin}: file not found") from None
    except IsADirectoryError:
        raise SpectraError(f"{origin}: is a directory, not a file") from None
    except OSError as error:
        raise SpectraError(f"{origin}: cannot be read ({error.strerror})") from None
    if not data.strip():
        raise SpectraError(f"{origin}: empty file")
    return origin, data


def check_text(origin: str, data: bytes) -> None:
    """Refuses binary content (control characters that text files do not contain)."""
    match = _BINARY.search(data)
    if match:
        raise SpectraError(
            f"{origin}: binary content (byte 0x{match.group()[0]:02x} at offset "
            f"{match.start()}); expected a text file"
        )
