"""Checksummed downloads and atomic file writes, shared by every data-preparation command.

`fetch` streams a URL into a temporary file beside its destination, computing the file's sha256
(and MD5, the checksum Zenodo and Figshare publish) on the way, and renames it into place only
after every check passed: expected sha256, announced length, leading bytes (a server's HTML error
page is not a data file) and a size limit. A refused or interrupted download leaves nothing
behind. `write_atomic` gives the same guarantee to files written locally.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import pathlib
import tempfile
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import BinaryIO

from caltransfer_jax.data.spectra import SpectraError

_CHUNK = 1 << 20


@dataclasses.dataclass(frozen=True)
class Digests:
    """Checksums and size of one file."""

    sha256: str
    md5: str
    size: int


class _Hasher:
    def __init__(self):
        self._sha256 = hashlib.sha256()
        self._md5 = hashlib.md5(usedforsecurity=False)
        self.size = 0

    def update(self, chunk: bytes) -> None:
        self._sha256.update(chunk)
        self._md5.update(chunk)
        self.size += len(chunk)

    def digests(self) -> Digests:
        return Digests(self._sha256.hexdigest(), self._md5.hexdigest(), self.size)


def file_digests(path: str | os.PathLike) -> Digests:
    """sha256, MD5 and size of a file, read in chunks."""
    hasher = _Hasher()
    with open(path, "rb") as file:
        for chunk in iter(lambda: file.read(_CHUNK), b""):
            hasher.update(chunk)
    return hasher.digests()


def sha256_of(path: str | os.PathLike) -> str:
    """The sha256 of a file as a hex string."""
    return file_digests(path).sha256


def write_atomic(path: pathlib.Path, write: Callable[[BinaryIO], object]) -> None:
    """Writes through `write(file)` into a temporary file beside `path`, then renames it."""
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as file:
            write(file)
            file.flush()
            os.fsync(file.fileno())
        os.chmod(temporary, 0o644)  # mkstemp creates files readable by their owner only
        os.replace(temporary, path)
    except BaseException:
        os.unlink(temporary)
        raise


def fetch(
    url: str,
    path: pathlib.Path,
    *,
    sha256: str | None = None,
    magic: bytes = b"",
    timeout: float = 60.0,
    max_bytes: int | None = None,
) -> Digests:
    """Downloads `url` to `path`; nothing is saved unless every check passes.

    Args:
      url: what to download.
      path: where to save it (its folder is created).
      sha256: the expected sha256 (hex); None records whatever arrives.
      magic: bytes the file must start with (b"PK\\x03\\x04" for a zip, …); empty: no check.
      timeout: seconds to wait on the connection.
      max_bytes: refuse downloads larger than this.

    Returns:
      The digests of the saved file.

    Raises:
      SpectraError: network failure, truncated or oversized download, wrong leading bytes or a
        sha256 that differs from `sha256`; the message starts with the URL.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    hasher = _Hasher()

    def write(file: BinaryIO) -> None:
        try:
            with urllib.request.urlopen(url, timeout=timeout) as response:
                announced = response.headers.get("Content-Length")
                head = b""
                for chunk in iter(lambda: response.read(_CHUNK), b""):
                    if len(head) < len(magic):
                        head += chunk[: len(magic) - len(head)]
                        if len(head) == len(magic) and head != magic:
                            _refuse_content(url, head, magic)
                    hasher.update(chunk)
                    if max_bytes is not None and hasher.size > max_bytes:
                        raise SpectraError(f"{url}: larger than the limit of {max_bytes} bytes")
                    file.write(chunk)
        except (urllib.error.URLError, OSError) as error:
            raise SpectraError(f"{url}: download failed ({error}); not saved") from None
        if len(head) < len(magic):
            _refuse_content(url, head, magic)
        if announced is not None and announced.isdigit() and int(announced) != hasher.size:
            raise SpectraError(
                f"{url}: received {hasher.size} of {announced} announced bytes (truncated); "
                "not saved"
            )
        actual = hasher.digests().sha256
        if sha256 is not None and actual != sha256.lower():
            raise SpectraError(
                f"{url}: sha256 {actual} differs from the recorded {sha256}; not saved"
            )

    write_atomic(path, write)
    return hasher.digests()


def _refuse_content(url: str, head: bytes, magic: bytes) -> None:
    hint = " (an HTML page: wrong URL or a server error?)" if b"<" in head[:16] else ""
    raise SpectraError(
        f"{url}: the content starts with {head!r}, not {magic!r} as this file type does{hint}; "
        "not saved"
    )
