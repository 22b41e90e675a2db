"""Where the files of an upload come from: a ZIP read safely in memory, or several uploaded files.

A ZIP is checked from its directory before any member is inflated: the end-of-directory record's
entry count and directory size first (so a directory of a million entries is refused before
Python parses it), then the members' declared sizes and the archive's compression ratio. While
inflating, every member is read in bounded chunks and may not outgrow what the directory
declared, and the whole upload may not outgrow `MAX_TOTAL_BYTES`. Nothing is ever written to disk:
members are read into memory (a batch's images are then written to its private folder,
`medr1_demo.batch.cases`). Member names are used only to skip what is not a scan
(folders, `__MACOSX`, hidden files, DICOMDIR indexes) and names that would leave the archive's
folder (`../`, absolute paths, drive letters), which are skipped and counted; a name is never
used as a path or logged, and shown only as a batch's case list names its own images.

    source = ZipSource(path)                 # ScanError for a bomb, a damaged or locked ZIP
    for i in range(len(source)): head = source.head(i)
    data = source.read(i)                    # the whole member, bounded

Tests: `.venv/bin/python -m pytest tests/test_series.py -q -k zip`.
"""

from __future__ import annotations

import os
import re
import zipfile
from pathlib import Path
from struct import unpack

from medr1_demo.scan.types import ScanError

MAX_MEMBERS = 10_000  # files in one upload: a 2000-slice study with room to spare
MAX_DIRECTORY_BYTES = 16 << 20  # the ZIP's central directory
MAX_MEMBER_BYTES = 512 << 20  # one inflated member
MAX_TOTAL_BYTES = 2 << 30  # all members, declared and inflated
MAX_RATIO = 100  # inflated / compressed size of the whole archive...
RATIO_FLOOR = 64 << 20  # ...checked once it declares more than this (small ZIPs cannot hurt)
MEMBER_HEAD_BYTES = 64 << 10  # bytes read to sniff a member and parse a DICOM header
CHUNK_BYTES = 1 << 20
_READABLE = (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA)
_DRIVE = re.compile(r"^[A-Za-z]:")
_IGNORED = ("dicomdir", "thumbs.db", "desktop.ini")

DAMAGED_ZIP = (
    "This ZIP file is damaged or incomplete, so it cannot be opened. Zip the folder again."
)
TOO_BIG = (
    "This ZIP would unpack to more than this app opens safely ({what}). Zip one series at a time."
)


class Source:
    """Files of one upload, by number: `head(i)` (the first bytes) and `read(i)` (all of it).

    `unsafe` counts members skipped for their names; `from_zip` says what to call the upload.
    """

    from_zip = False
    unsafe = unreadable = 0  # members skipped for their names / their compression method

    def __len__(self) -> int:
        raise NotImplementedError

    def head(self, index: int, size: int = MEMBER_HEAD_BYTES) -> bytes:
        raise NotImplementedError

    def read(self, index: int) -> bytes:
        raise NotImplementedError

    def close(self) -> None:
        pass


class FileSource(Source):
    """Several uploaded files (their paths come from the server, never from the person)."""

    def __init__(self, paths: list[Path]):
        if len(paths) > MAX_MEMBERS:
            raise ScanError(
                f"{len(paths)} files were uploaded; this app opens at most {MAX_MEMBERS} at once. "
                "Upload one series at a time.",
                "too_many_files",
            )
        self.paths = list(paths)

    def __len__(self) -> int:
        return len(self.paths)

    def head(self, index: int, size: int = MEMBER_HEAD_BYTES) -> bytes:
        with open(self.paths[index], "rb") as f:
            return f.read(size)

    def read(self, index: int) -> bytes:
        path = self.paths[index]
        if os.path.getsize(path) > MAX_MEMBER_BYTES:
            raise ScanError("One of the files is too large to open safely.", "too_large")
        return Path(path).read_bytes()


class ZipSource(Source):
    """The members of a ZIP worth reading, checked against the limits before any is inflated."""

    from_zip = True

    def __init__(self, path: Path):
        self.path = Path(path)
        size = self.path.stat().st_size
        with open(self.path, "rb") as f:
            entries, directory = _directory_size(f, size)
        if entries > MAX_MEMBERS:
            raise ScanError(
                f"This ZIP holds {entries} files; this app opens at most {MAX_MEMBERS} at once. "
                "Zip one series at a time.",
                "too_many_files",
            )
        if directory > MAX_DIRECTORY_BYTES:
            raise ScanError(TOO_BIG.format(what="its list of files is too long"), "too_large")
        try:
            self.zip = zipfile.ZipFile(self.path)
        except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError, EOFError):
            raise ScanError(DAMAGED_ZIP, "damaged") from None
        try:
            self._check(self.zip.infolist(), size)
        except BaseException:
            self.zip.close()
            raise
        self.inflated = 0

    def _check(self, infos: list[zipfile.ZipInfo], size: int) -> None:
        """The directory's limits, then the members worth reading (names stay in here)."""
        files = [info for info in infos if not info.is_dir()]
        if len(files) > MAX_MEMBERS:  # the record's count can lie; the parsed list cannot
            raise ScanError(
                f"This ZIP holds {len(files)} files; this app opens at most {MAX_MEMBERS} at once. "
                "Zip one series at a time.",
                "too_many_files",
            )
        declared = sum(info.file_size for info in files)
        if declared > MAX_TOTAL_BYTES or any(i.file_size > MAX_MEMBER_BYTES for i in files):
            raise ScanError(TOO_BIG.format(what=f"{declared / 1e9:.1f} GB"), "zip_bomb")
        if declared > RATIO_FLOOR and declared > MAX_RATIO * max(size, 1):
            raise ScanError(
                TOO_BIG.format(what=f"{declared / max(size, 1):.0f} times its own size"), "zip_bomb"
            )
        if any(info.flag_bits & 0x1 for info in files):
            raise ScanError(
                "This ZIP is password-protected. Zip the folder again without a password.",
                "encrypted",
            )
        self.unsafe = sum(1 for info in files if _unsafe(info.filename))
        self.unreadable = sum(1 for info in files if info.compress_type not in _READABLE)
        self.members = sorted(
            (
                info
                for info in files
                if not _unsafe(info.filename)
                and not _ignored(info.filename)
                and info.compress_type in _READABLE
            ),
            key=lambda info: info.filename,  # a folder's order; names stay inside this module
        )

    def __len__(self) -> int:
        return len(self.members)

    def head(self, index: int, size: int = MEMBER_HEAD_BYTES) -> bytes:
        info = self.members[index]
        return self._inflate(info, min(size, info.file_size))

    def read(self, index: int) -> bytes:
        return self._inflate(self.members[index], self.members[index].file_size)

    def name(self, index: int) -> str:
        """A member's path inside the ZIP (names that would leave it are never listed): for a
        batch's case list to name its images by; shown only to the person who sent the ZIP."""
        return "/".join(_parts(self.members[index].filename))

    def size(self, index: int) -> int:
        """A member's declared inflated size, in bytes."""
        return self.members[index].file_size

    def close(self) -> None:
        self.zip.close()

    def _inflate(self, info: zipfile.ZipInfo, size: int) -> bytes:
        """Up to `size` bytes of `info`, in chunks, never past its declared size or the total."""
        chunks, got = [], 0
        try:
            with self.zip.open(info) as member:
                while got < size:
                    chunk = member.read(min(CHUNK_BYTES, size - got))
                    if not chunk:
                        break
                    got += len(chunk)
                    self.inflated += len(chunk)
                    if self.inflated > MAX_TOTAL_BYTES:
                        raise ScanError(
                            TOO_BIG.format(what=f"over {MAX_TOTAL_BYTES >> 30} GB"), "zip_bomb"
                        )
                    chunks.append(chunk)
                if size == info.file_size and member.read(1):  # more than the directory said
                    raise ScanError(DAMAGED_ZIP, "damaged")
        except ScanError:
            raise
        except Exception:  # a bad CRC, a cut-short stream, an unreadable method
            raise ScanError(DAMAGED_ZIP, "damaged") from None
        return b"".join(chunks)


def _directory_size(f, size: int) -> tuple[int, int]:
    """(entries, central directory bytes) from the end-of-directory record (ZIP64 too)."""
    tail_size = min(size, 22 + 65535)
    f.seek(size - tail_size)
    tail = f.read(tail_size)
    at = tail.rfind(b"PK\x05\x06")
    if at < 0 or len(tail) < at + 22:
        raise ScanError(DAMAGED_ZIP, "damaged")
    entries, directory = (
        unpack("<H", tail[at + 10 : at + 12])[0],
        unpack("<I", tail[at + 12 : at + 16])[0],
    )
    locator = tail[at - 20 : at] if at >= 20 else b""
    if locator[:4] == b"PK\x06\x07":  # ZIP64: the real counts are in the ZIP64 record
        f.seek(unpack("<Q", locator[8:16])[0])
        record = f.read(56)
        if record[:4] != b"PK\x06\x06":
            raise ScanError(DAMAGED_ZIP, "damaged")
        entries, directory = unpack("<Q", record[32:40])[0], unpack("<Q", record[40:48])[0]
    return entries, directory


def _parts(name: str) -> list[str]:
    return [part for part in re.split(r"[/\\]", name) if part]


def _unsafe(name: str) -> bool:
    """A name that, used as a path, would leave the archive's folder."""
    return (
        name.startswith(("/", "\\"))
        or bool(_DRIVE.match(name))
        or "\x00" in name
        or ".." in _parts(name)
    )


def _ignored(name: str) -> bool:
    """Not a scan and not worth a note: macOS resource forks, hidden files, folder indexes."""
    parts = _parts(name)
    if not parts:
        return True
    return (
        parts[0] == "__MACOSX"
        or any(part.startswith(".") for part in parts)
        or parts[-1].lower() in _IGNORED
    )
