"""Uploads read once: opened scans kept by file, bounded in number and memory, dropped with the file.

The page shows a scan on upload, again on every frame or window change, and hands it to the
model on Answer; each of those asks this cache, so a file is read and decoded once. An entry is
keyed by the file's path, size and modification time (a new upload under a reused name is a new
entry), evicted least-recently-used beyond `max_entries` or `max_bytes`, and dropped as soon as
its file is gone (Gradio deletes uploads after `server.cache_minutes`).

    scans = ScanCache()
    scan = scans.open(path).picture(frame=None, window="auto")

Tests: `.venv/bin/python -m pytest tests/test_ui.py -q -k cache`.
"""

import os
import threading
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
    ):
        self.max_entries, self.max_bytes, self.opener = max_entries, max_bytes, opener
        self._entries: OrderedDict[tuple, OpenedScan] = OrderedDict()
        self._lock = threading.Lock()

    @staticmethod
    def _key(path: str) -> tuple:
        stat = os.stat(path)  # OSError when the upload is gone
        return os.path.realpath(path), stat.st_size, stat.st_mtime_ns

    def open(self, path: str) -> OpenedScan:
        """The opened scan of the file at `path`, read on first use; ScanError/OSError as open_scan."""
        key = self._key(path)
        with self._lock:
            self._drop_gone()
            if key in self._entries:
                self._entries.move_to_end(key)
                return self._entries[key]
        opened = self.opener(path)  # outside the lock: a slow decode does not block other users
        with self._lock:
            self._entries[key] = opened
            self._entries.move_to_end(key)
            self._evict()
        return opened

    def forget(self, path: str) -> None:
        """Drop every entry of `path` (its upload was replaced or deleted)."""
        real = os.path.realpath(path)
        with self._lock:
            for key in [k for k in self._entries if k[0] == real]:
                del self._entries[key]

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    @property
    def nbytes(self) -> int:
        with self._lock:
            return sum(opened.nbytes for opened in self._entries.values())

    def _drop_gone(self) -> None:
        for key in [k for k in self._entries if not os.path.exists(k[0])]:
            del self._entries[key]

    def _evict(self) -> None:
        # The newest entry stays even when it alone is over the byte budget: it is in use.
        while len(self._entries) > 1 and (
            len(self._entries) > self.max_entries
            or sum(o.nbytes for o in self._entries.values()) > self.max_bytes
        ):
            self._entries.popitem(last=False)
