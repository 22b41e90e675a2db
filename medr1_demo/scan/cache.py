"""Uploads read once: opened scans kept by file, bounded in number and memory, dropped with the file.

The page shows a scan on upload, again on every frame, slice, plane or window change, and hands
it to the model on Answer; each of those asks this cache, so a file (or a series: a decoded
volume) is read and decoded once. An entry is keyed by its files' paths, sizes and modification
times (a new upload under a reused name is a new entry) and, for an upload of several series, the
series chosen; it is evicted least-recently-used beyond `max_entries` or `max_bytes`, and dropped
as soon as any of its files is gone (Gradio deletes uploads after `server.cache_minutes`).

    scans = ScanCache()
    scan = scans.open(path).picture(frame=None, window="auto")
    found = scans.open_upload(paths)                # OpenedScan, or a SeriesChoice (.labels)
    scan = scans.open_upload(paths, series=1).picture(frame=40, window="lung", plane="coronal")

Tests: `.venv/bin/python -m pytest tests/test_ui.py -q -k cache`.
"""

import os
import threading
from collections import OrderedDict
from collections.abc import Callable

from medr1_demo.scan.reader import open_scan, open_upload
from medr1_demo.scan.series import SeriesChoice
from medr1_demo.scan.types import OpenedScan


class ScanCache:
    """Opened uploads by file(s); thread-safe (page events run on several worker threads)."""

    def __init__(
        self,
        max_entries: int = 16,
        max_bytes: int = 1 << 30,
        opener: Callable[[str], OpenedScan] = open_scan,
        upload_opener: Callable[..., OpenedScan | SeriesChoice] = open_upload,
    ):
        self.max_entries, self.max_bytes, self.opener = max_entries, max_bytes, opener
        self.upload_opener = upload_opener
        # key: (entry point, ((real path, size, mtime), ...), series) -> the opened upload
        self._entries: OrderedDict[tuple, OpenedScan | SeriesChoice] = OrderedDict()
        self._lock = threading.Lock()

    @staticmethod
    def _key(path: str) -> tuple:
        stat = os.stat(path)  # OSError when the upload is gone
        return os.path.realpath(path), stat.st_size, stat.st_mtime_ns

    def open(self, path: str) -> OpenedScan:
        """The opened scan of the file at `path`, read on first use; ScanError/OSError as open_scan."""
        return self._cached(("file", (self._key(path),), None), lambda: self.opener(path))

    def open_upload(self, paths, series: int | None = None) -> OpenedScan | SeriesChoice:
        """`open_upload(paths, series=series)` (medr1_demo.scan.reader), read on first use."""
        paths = [paths] if isinstance(paths, str | os.PathLike) else list(paths)
        key = ("upload", tuple(self._key(p) for p in paths), series)
        return self._cached(key, lambda: self.upload_opener(paths, series=series))

    def _cached(self, key: tuple, opener: Callable[[], OpenedScan | SeriesChoice]):
        with self._lock:
            self._drop_gone()
            if key in self._entries:
                self._entries.move_to_end(key)
                return self._entries[key]
        opened = opener()  # outside the lock: a slow decode does not block other users
        with self._lock:
            self._entries[key] = opened
            self._entries.move_to_end(key)
            self._evict()
        return opened

    def forget(self, path: str) -> None:
        """Drop every entry holding `path` (its upload was replaced or deleted)."""
        real = os.path.realpath(path)
        with self._lock:
            for key in [k for k in self._entries if any(f[0] == real for f in k[1])]:
                del self._entries[key]

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    @property
    def nbytes(self) -> int:
        with self._lock:
            return sum(opened.nbytes for opened in self._entries.values())

    def _drop_gone(self) -> None:
        gone = [k for k in self._entries if not all(os.path.exists(f[0]) for f in k[1])]
        for key in gone:
            del self._entries[key]

    def _evict(self) -> None:
        # The newest entry stays even when it alone is over the byte budget: it is in use.
        while len(self._entries) > 1 and (
            len(self._entries) > self.max_entries
            or sum(o.nbytes for o in self._entries.values()) > self.max_bytes
        ):
            self._entries.popitem(last=False)
