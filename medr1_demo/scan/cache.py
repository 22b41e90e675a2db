"""Uploads read once: opened scans kept by file, bounded in number, memory and age.

The page shows a scan on upload, again on every frame, slice, plane or window change, and hands
it to the model on Answer; each of those asks this cache, so a file (or a series: a decoded
volume) is read and decoded once, and the page may delete the upload from disk right after
(`medr1_demo.web.uploads`): the entry holds what is needed in memory. An entry is keyed by its
files' paths (each upload has a new random name) and, for an upload of several series, the
series chosen; a file that changed on disk since it was read is read again. Entries are evicted
least-recently-used beyond `max_entries` or `max_bytes`, and dropped `max_age` seconds after
they were read.

    scans = ScanCache()
    scan = scans.open(path).picture(frame=None, window="auto")
    choice = scans.open_upload([path1, path2])   # an OpenedScan, or a SeriesChoice

Tests: `.venv/bin/python -m pytest tests/test_ui.py tests/test_series.py -q -k cache`.
"""

import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable

from medr1_demo.scan.reader import open_scan, open_upload
from medr1_demo.scan.series import SeriesChoice
from medr1_demo.scan.types import OpenedScan


class ScanCache:
    """Opened uploads by file; thread-safe (page events run on several worker threads)."""

    def __init__(
        self,
        max_entries: int = 16,
        max_bytes: int = 1 << 30,
        opener: Callable[[str], OpenedScan] = open_scan,
        upload_opener: Callable[..., OpenedScan | SeriesChoice] = open_upload,
        max_age: float = 30 * 60,
    ):
        self.max_entries, self.max_bytes, self.max_age = max_entries, max_bytes, max_age
        self.opener, self.upload_opener = opener, upload_opener
        # (entry point, real paths, series) -> (file identities when read, time read, opened)
        self._entries: OrderedDict[tuple, tuple[tuple, float, object]] = OrderedDict()
        self._lock = threading.Lock()

    @staticmethod
    def _identity(path: str) -> tuple | None:
        try:
            stat = os.stat(path)
        except OSError:  # gone: deleted once read, or never here
            return None
        return stat.st_size, stat.st_mtime_ns

    def open(self, path: str) -> OpenedScan:
        """The opened scan of `path`, read on first use. FileNotFoundError when it is neither
        here nor on disk; ScanError as open_scan."""
        return self._cached("file", [path], None, lambda: self.opener(path))

    def open_upload(self, paths, series: int | None = None) -> OpenedScan | SeriesChoice:
        """`open_upload(paths, series=series)` (medr1_demo.scan.reader), read on first use."""
        paths = [paths] if isinstance(paths, str | os.PathLike) else list(paths)
        return self._cached(
            "upload", paths, series, lambda: self.upload_opener(paths, series=series)
        )

    def _cached(self, kind: str, paths, series, opener):
        key = (kind, tuple(os.path.realpath(p) for p in paths), series)
        identities = tuple(self._identity(p) for p in paths)
        with self._lock:
            self._drop_old()
            entry = self._entries.get(key)
            if entry is not None and all(
                now is None or now == then for now, then in zip(identities, entry[0], strict=True)
            ):
                self._entries.move_to_end(key)
                return entry[2]
        if any(identity is None for identity in identities):
            raise FileNotFoundError(str(paths[identities.index(None)]))
        opened = opener()  # outside the lock: a slow decode does not block other users
        with self._lock:
            self._entries[key] = (identities, time.monotonic(), opened)
            self._entries.move_to_end(key)
            self._evict()
        return opened

    def __contains__(self, path: str) -> bool:
        real = os.path.realpath(path)
        with self._lock:
            return any(real in key[1] for key in self._entries)

    def forget(self, path: str) -> None:
        """Drop every entry holding `path` (its upload was replaced)."""
        real = os.path.realpath(path)
        with self._lock:
            for key in [k for k in self._entries if real in k[1]]:
                del self._entries[key]

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    @property
    def nbytes(self) -> int:
        with self._lock:
            return sum(getattr(entry[2], "nbytes", 0) for entry in self._entries.values())

    def _drop_old(self) -> None:
        limit = time.monotonic() - self.max_age
        for key in [k for k, entry in self._entries.items() if entry[1] < limit]:
            del self._entries[key]

    def _evict(self) -> None:
        # The newest entry stays even when it alone is over the byte budget: it is in use.
        def held() -> int:
            return sum(getattr(entry[2], "nbytes", 0) for entry in self._entries.values())

        while len(self._entries) > 1 and (
            len(self._entries) > self.max_entries or held() > self.max_bytes
        ):
            self._entries.popitem(last=False)
