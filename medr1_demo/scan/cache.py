"""Uploads read once: opened scans kept by file, bounded in number, memory and age.

The page shows a scan on upload, again on every frame or window change, and hands it to the
model on Answer; each of those asks this cache, so a file is read and decoded once, and the page
may delete the upload from disk right after (`medr1_demo.web.uploads`): the entry holds what is
needed in memory. An entry is keyed by the file's path (each upload has a new random name; a
file that changed on disk since is read again), evicted least-recently-used beyond
`max_entries` or `max_bytes`, and dropped `max_age` seconds after it was read.

    scans = ScanCache()
    scan = scans.open(path).picture(frame=None, window="auto")

Tests: `.venv/bin/python -m pytest tests/test_ui.py -q -k cache`.
"""

import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable

from medr1_demo.scan.reader import open_scan
from medr1_demo.scan.types import OpenedScan


class ScanCache:
    """Opened scans by file; thread-safe (page events run on several worker threads)."""

    def __init__(
        self,
        max_entries: int = 16,
        max_bytes: int = 1 << 30,
        opener: Callable[[str], OpenedScan] = open_scan,
        max_age: float = 30 * 60,
    ):
        self.max_entries, self.max_bytes, self.opener = max_entries, max_bytes, opener
        self.max_age = max_age
        # path -> (file identity when read, time read, opened scan)
        self._entries: OrderedDict[str, tuple[tuple, float, OpenedScan]] = OrderedDict()
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
        key, identity = os.path.realpath(path), self._identity(path)
        with self._lock:
            self._drop_old()
            entry = self._entries.get(key)
            if entry is not None and identity in (None, entry[0]):
                self._entries.move_to_end(key)
                return entry[2]
        if identity is None:
            raise FileNotFoundError(path)
        opened = self.opener(path)  # outside the lock: a slow decode does not block other users
        with self._lock:
            self._entries[key] = (identity, time.monotonic(), opened)
            self._entries.move_to_end(key)
            self._evict()
        return opened

    def __contains__(self, path: str) -> bool:
        with self._lock:
            return os.path.realpath(path) in self._entries

    def forget(self, path: str) -> None:
        """Drop the entry of `path` (its upload was replaced)."""
        with self._lock:
            self._entries.pop(os.path.realpath(path), None)

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    @property
    def nbytes(self) -> int:
        with self._lock:
            return sum(entry[2].nbytes for entry in self._entries.values())

    def _drop_old(self) -> None:
        limit = time.monotonic() - self.max_age
        for key in [k for k, entry in self._entries.items() if entry[1] < limit]:
            del self._entries[key]

    def _evict(self) -> None:
        # The newest entry stays even when it alone is over the byte budget: it is in use.
        while len(self._entries) > 1 and (
            len(self._entries) > self.max_entries
            or sum(entry[2].nbytes for entry in self._entries.values()) > self.max_bytes
        ):
            self._entries.popitem(last=False)
