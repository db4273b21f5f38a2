"""Safe extraction of downloaded zip and tar archives.

Every member is checked before anything is written, and the archive is refused as a whole
(`UnsafeArchiveError`, naming the archive and the member) when a member
- has an absolute name (`/x`, `C:x`) or a `..` component, or a NUL byte in its name;
- is a symbolic or hard link (refused whether or not it points outside the target: spectral
  archives have no use for links, and a link that stays inside today can be retargeted by a
  later member), or a device, FIFO or other special file;
- is larger than `max_member_bytes`, makes the archive larger than `max_total_bytes`, or is a
  zip member whose size exceeds `max_ratio` times its compressed size (a zip bomb);
- takes a tar archive beyond `max_ratio` times its compressed size: the members' declared sizes,
  or the decompressed tar stream itself (headers included: a pax or long-name header can be as
  large as a member), which is never decompressed further than that (a tar bomb);
- repeats the path of an earlier member;
- delivers more bytes than its header declares while being written.
Extraction writes into a temporary folder beside the target and renames it into place when
every member is out, so a refused or interrupted extraction leaves nothing behind.
"""

from __future__ import annotations

import bz2
import contextlib
import dataclasses
import gzip
import lzma
import os
import pathlib
import re
import shutil
import stat
import tarfile
import tempfile
import zipfile
from collections.abc import Callable, Iterator
from typing import BinaryIO

from caltransfer_jax.data.spectra import SpectraError

MAX_MEMBER_BYTES = 2 << 30
MAX_TOTAL_BYTES = 64 << 30
MAX_RATIO = 200.0
# Small members compress extremely well when they are mostly blank; only large ones are judged
# by their compression ratio.
_RATIO_MIN_BYTES = 1 << 20
_DRIVE = re.compile(r"^[A-Za-z]:")
_CHUNK = 1 << 20
# Leading bytes of the compressed streams a tar archive may come in.
_COMPRESSED = (
    (b"\x1f\x8b", lambda raw: gzip.GzipFile(fileobj=raw, mode="rb")),
    (b"BZh", lambda raw: bz2.BZ2File(raw, mode="rb")),
    (b"\xfd7zXZ\x00", lambda raw: lzma.LZMAFile(raw, mode="rb")),
)


class UnsafeArchiveError(SpectraError):
    """An archive refused by `extract`; the message names the archive and the member."""


@dataclasses.dataclass(frozen=True)
class _Member:
    parts: tuple[str, ...]  # the checked relative path
    size: int
    handle: object  # ZipInfo or TarInfo


def extract(
    archive: str | os.PathLike,
    target: str | os.PathLike,
    *,
    max_member_bytes: int = MAX_MEMBER_BYTES,
    max_total_bytes: int = MAX_TOTAL_BYTES,
    max_ratio: float = MAX_RATIO,
) -> list[pathlib.Path]:
    """Extracts a zip or tar archive (optionally gzip/bz2/xz) into a new folder `target`.

    Args:
      archive: the archive file.
      target: the folder to create; it must not exist yet.
      max_member_bytes: largest allowed member.
      max_total_bytes: largest allowed sum of member sizes.
      max_ratio: largest allowed uncompressed/compressed size of a zip member (of 1 MiB or more),
        and of a compressed tar archive as a whole (when it decompresses to 1 MiB or more).

    Returns:
      The extracted files, sorted.

    Raises:
      UnsafeArchiveError: a member breaks one of the rules in the module docstring.
      SpectraError: the file is not a readable zip or tar archive, or `target` exists.
    """
    archive, target = pathlib.Path(archive), pathlib.Path(target)
    if target.exists():
        raise SpectraError(f"{archive}: extraction target {target} already exists")
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = pathlib.Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}."))
    try:
        if zipfile.is_zipfile(archive):
            with zipfile.ZipFile(archive) as opened:
                members = list(_zip_members(archive, opened, max_member_bytes, max_ratio))
                _write_all(archive, members, temporary, max_total_bytes, opened.open)
        else:
            with _open_tar(archive, max_ratio) as opened:
                members = list(_tar_members(archive, opened, max_member_bytes, max_ratio))
                _write_all(archive, members, temporary, max_total_bytes, opened.extractfile)
        os.replace(temporary, target)
    except (zipfile.BadZipFile, tarfile.TarError, EOFError, OSError) as error:
        shutil.rmtree(temporary, ignore_errors=True)
        raise SpectraError(
            f"{archive}: damaged archive ({type(error).__name__}: {error})"
        ) from None
    except BaseException:
        shutil.rmtree(temporary, ignore_errors=True)
        raise
    return sorted(target.joinpath(*m.parts) for m in members)


class _BoundedStream:
    """A decompressed tar stream that refuses to be read or sought beyond `limit` bytes, so that
    no part of tarfile (member data, pax and long-name headers alike) decompresses a bomb."""

    def __init__(self, archive: pathlib.Path, stream, compressed: int, limit: int, ratio: float):
        self._archive, self._stream = archive, stream
        self._compressed, self._limit, self._ratio = compressed, limit, ratio

    def _refuse(self) -> UnsafeArchiveError:
        return UnsafeArchiveError(
            f"{self._archive}: expands {self._compressed} bytes to more than {self._limit} "
            f"(more than {self._ratio:g} times; a tar bomb?)"
        )

    def read(self, size: int = -1) -> bytes:
        room = self._limit - self._stream.tell()
        size = room + 1 if size is None or size < 0 else min(size, room + 1)
        data = self._stream.read(size)
        if len(data) > room:
            raise self._refuse()
        return data

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        if whence == os.SEEK_CUR:
            offset, whence = self._stream.tell() + offset, os.SEEK_SET
        if whence != os.SEEK_SET:
            raise OSError("a compressed tar stream is only sought from its start")
        if offset > self._limit:
            raise self._refuse()
        return self._stream.seek(offset)

    def tell(self) -> int:
        return self._stream.tell()


@contextlib.contextmanager
def _open_tar(archive: pathlib.Path, max_ratio: float) -> Iterator[tarfile.TarFile]:
    """The archive as an uncompressed or gzip/bz2/xz-compressed tar, its decompressed stream
    bounded by `max_ratio` (`_BoundedStream`); refuses what is not a tar archive."""
    with open(archive, "rb") as raw, contextlib.ExitStack() as stack:
        magic = raw.read(6)
        raw.seek(0)
        opener = next((o for prefix, o in _COMPRESSED if magic.startswith(prefix)), None)
        stream = raw
        if opener is not None:
            compressed = os.fstat(raw.fileno()).st_size
            limit = max(_RATIO_MIN_BYTES, int(max_ratio * compressed))
            decompressed = stack.enter_context(opener(raw))
            stream = _BoundedStream(archive, decompressed, compressed, limit, max_ratio)
        try:
            opened = tarfile.open(fileobj=stream, mode="r:")
        except tarfile.ReadError:
            raise SpectraError(f"{archive}: not a zip or tar archive (or damaged)") from None
        with opened:
            yield opened


def _checked_parts(archive: pathlib.Path, name: str) -> tuple[str, ...]:
    """The member's path components, refusing absolute paths, `..` and NUL bytes."""
    if "\0" in name:
        raise UnsafeArchiveError(f"{archive}: member {name!r} has a NUL byte in its name")
    unified = name.replace("\\", "/")  # archives made on Windows may use backslashes
    if unified.startswith("/") or _DRIVE.match(unified):
        raise UnsafeArchiveError(f"{archive}: member {name!r} has an absolute path")
    parts = tuple(p for p in unified.split("/") if p not in ("", "."))
    if ".." in parts:
        raise UnsafeArchiveError(f"{archive}: member {name!r} has a '..' component")
    return parts


def _zip_members(
    archive: pathlib.Path, opened: zipfile.ZipFile, max_member_bytes: int, max_ratio: float
) -> Iterator[_Member]:
    for info in opened.infolist():
        parts = _checked_parts(archive, info.filename)
        mode = info.external_attr >> 16  # Unix mode bits, when the archiver stored them
        if stat.S_ISLNK(mode):
            raise UnsafeArchiveError(
                f"{archive}: member {info.filename!r} is a symbolic link; links are not extracted"
            )
        if info.is_dir() or not parts:
            continue
        if stat.S_IFMT(mode) and not stat.S_ISREG(mode):  # many archivers store no type bits
            raise UnsafeArchiveError(f"{archive}: member {info.filename!r} is a special file")
        _check_size(archive, info.filename, info.file_size, max_member_bytes)
        if info.file_size >= _RATIO_MIN_BYTES and info.file_size > max_ratio * max(
            info.compress_size, 1
        ):
            raise UnsafeArchiveError(
                f"{archive}: member {info.filename!r} expands {info.compress_size} bytes to "
                f"{info.file_size} (more than {max_ratio:g} times; a zip bomb?)"
            )
        yield _Member(parts, info.file_size, info)


def _tar_members(
    archive: pathlib.Path, opened: tarfile.TarFile, max_member_bytes: int, max_ratio: float
) -> Iterator[_Member]:
    compressed = os.path.getsize(archive)
    declared = 0
    for info in opened:
        parts = _checked_parts(archive, info.name)
        if info.issym() or info.islnk():
            kind = "symbolic" if info.issym() else "hard"
            raise UnsafeArchiveError(
                f"{archive}: member {info.name!r} is a {kind} link to {info.linkname!r}"
                f"{_escapes(parts, info)}; links are not extracted"
            )
        if info.isdir() or not parts:
            continue
        if not info.isfile():
            raise UnsafeArchiveError(f"{archive}: member {info.name!r} is a special file")
        _check_size(archive, info.name, info.size, max_member_bytes)
        # Sizes as declared (a sparse member holds less than it expands to).
        declared += info.size
        if declared >= _RATIO_MIN_BYTES and declared > max_ratio * compressed:
            raise UnsafeArchiveError(
                f"{archive}: member {info.name!r} brings the declared size to {declared} bytes "
                f"from {compressed} in the archive (more than {max_ratio:g} times; a tar bomb?)"
            )
        yield _Member(parts, info.size, info)


def _escapes(parts: tuple[str, ...], info: tarfile.TarInfo) -> str:
    """' (outside the target)' when the link would resolve outside the extraction folder."""
    link = info.linkname.replace("\\", "/")
    base = [] if info.islnk() else list(parts[:-1])  # hard links are relative to the root
    if link.startswith("/") or _DRIVE.match(link):
        return " (outside the target)"
    depth = len(base)
    for part in link.split("/"):
        if part == "..":
            depth -= 1
            if depth < 0:
                return " (outside the target)"
        elif part not in ("", "."):
            depth += 1
    return ""


def _check_size(archive: pathlib.Path, name: str, size: int, max_member_bytes: int) -> None:
    if size > max_member_bytes:
        raise UnsafeArchiveError(
            f"{archive}: member {name!r} has {size} bytes, more than the limit of "
            f"{max_member_bytes}"
        )


def _write_all(
    archive: pathlib.Path,
    members: list[_Member],
    temporary: pathlib.Path,
    max_total_bytes: int,
    open_member: Callable[[object], BinaryIO],
) -> None:
    """Writes the checked members into `temporary` (after the whole-archive checks)."""
    total = sum(m.size for m in members)
    if total > max_total_bytes:
        raise UnsafeArchiveError(
            f"{archive}: members add up to {total} bytes, more than the limit of {max_total_bytes}"
        )
    seen: set[tuple[str, ...]] = set()
    for member in members:
        if member.parts in seen:
            raise UnsafeArchiveError(f"{archive}: member {'/'.join(member.parts)!r} appears twice")
        seen.add(member.parts)
    for member in members:
        path = temporary.joinpath(*member.parts)
        path.parent.mkdir(parents=True, exist_ok=True)
        with open_member(member.handle) as source, open(path, "xb") as sink:
            _copy_limited(archive, member, source, sink)


def _copy_limited(archive: pathlib.Path, member: _Member, source: BinaryIO, sink: BinaryIO) -> None:
    written = 0
    for chunk in iter(lambda: source.read(_CHUNK), b""):
        written += len(chunk)
        if written > member.size:
            raise UnsafeArchiveError(
                f"{archive}: member {'/'.join(member.parts)!r} holds more than the {member.size} "
                "bytes its header declares"
            )
        sink.write(chunk)
