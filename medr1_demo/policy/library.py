"""The loaded policies: each loaded on first use, at most `max_loaded` at once, each with its batch.

The app asks the library for a catalogue entry's engine; the first ask loads it (its progress
reported through `progress(text)`), later ones return it. Beyond `max_loaded` engines, the least
recently used one is unloaded: its scheduler stopped, its weights released (and the GPU cache
emptied). A policy that cannot be fetched or loaded raises `PolicyLoadError` with a plain
sentence; the others keep serving, and a later ask tries again.

    library = Library(catalogue, load=lambda entry: PolicyEngine.load(...), max_loaded=2)
    engine = library.engine("Med-R1 MRI", progress=print)

What it does not know: Gradio, or which policy a request should use (the catalogue routes).
"""

import gc
import logging
import threading
from collections import OrderedDict
from collections.abc import Callable

from medr1_demo.policy.catalogue import Catalogue, PolicyEntry
from medr1_demo.policy.checkpoint import PolicyLoadError

logger = logging.getLogger(__name__)


class Library:
    """Engines by catalogue name, loaded on demand, least recently used unloaded."""

    def __init__(
        self,
        catalogue: Catalogue,
        load: Callable[[PolicyEntry], object],
        max_loaded: int = 2,
        start: Callable[[object], object] | None = None,
    ):
        self.catalogue, self.load, self.max_loaded = catalogue, load, max(1, max_loaded)
        self.start = start  # e.g. gives a freshly loaded engine its shared-batch scheduler
        self._engines: OrderedDict[str, object] = OrderedDict()
        self._lock = threading.Lock()
        self._loading: dict[str, threading.Lock] = {}

    def loaded(self) -> list[str]:
        with self._lock:
            return list(self._engines)

    def engine(self, name: str, progress: Callable[[str], None] | None = None):
        """The engine of catalogue entry `name`, loading it first if need be."""
        try:
            entry = self.catalogue.get(name)
        except KeyError:
            raise PolicyLoadError(f"There is no policy called {name!r} here.") from None
        with self._lock:
            if name in self._engines:
                self._engines.move_to_end(name)
                return self._engines[name]
            gate = self._loading.setdefault(name, threading.Lock())
        with gate:  # one load per policy; others asking for it wait for that load
            with self._lock:
                if name in self._engines:
                    self._engines.move_to_end(name)
                    return self._engines[name]
            if progress is not None:
                progress(f"Loading {name} (first use; this can take a minute)…")
            try:
                engine = self.load(entry)
            except PolicyLoadError:
                raise
            except Exception as error:  # torch/transformers errors: one plain sentence
                logger.warning("loading %s failed: %s", name, type(error).__name__)
                message = f"{name} could not be loaded ({type(error).__name__})."
                raise PolicyLoadError(message) from None
            if self.start is not None:
                self.start(engine)
            with self._lock:
                self._engines[name] = engine
                evicted = []
                while len(self._engines) > self.max_loaded:
                    evicted.append(self._engines.popitem(last=False))
        for old_name, old in evicted:
            self._unload(old_name, old)
        return engine

    def _unload(self, name: str, engine, drain: bool = True) -> None:
        """Let go of `engine`: requests already in flight finish (they hold their own reference),
        then its weights are freed."""
        scheduler = getattr(engine, "scheduler", None)
        if scheduler is not None:
            scheduler.stop(drain=drain)
        del engine
        gc.collect()
        try:
            import torch

            if torch.cuda.is_available():
                torch.cuda.empty_cache()
        except ImportError:
            pass
        logger.info("unloaded %s (least recently used)", name)

    def close(self) -> None:
        """Stop every loaded policy's scheduler (the app is shutting down)."""
        with self._lock:
            engines, self._engines = list(self._engines.items()), OrderedDict()
        for name, engine in engines:
            self._unload(name, engine, drain=False)
