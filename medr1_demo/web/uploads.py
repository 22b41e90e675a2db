"""Uploads: a private folder per process, no original file names, nothing fetchable, all removed.

Gradio keeps an upload in its temporary folder under the name it was sent with (often a
patient's name), serves it to anyone who knows its URL, and deletes it only on a graceful close.
Here instead:

- `private_folder()` makes a folder of this process only (mode 0700) inside a parent folder,
  after removing what earlier processes of the app left there (their pids are gone): set as
  GRADIO_TEMP_DIR before Gradio starts, it holds every upload. `remove(folder)` runs on SIGTERM,
  SIGINT and normal exit (app.py).
- `anonymise_upload_names()` makes Gradio store each upload as `upload-<random>` (it wraps the
  upload route's file writer; Gradio has no setting for it). The original name never reaches the
  disk, the logs or a response. `no_stray_temp_files()` stops Gradio's File component from
  leaving an empty temporary file behind per request.
- `UploadGuard` (ASGI middleware) refuses every file URL inside the private folder (Gradio 6.31
  serves files at `/gradio_api/file=<path>` and `/gradio_api/file/<path>`; both, with or without
  the prefix, percent-encoded or not: nothing an upload left is ever served, to anyone; only a
  batch's downloads, named `medr1-batch-<random>-results.csv` and the like, are), and every raw
  HTTP call (`call`, `call/v2`, `run`, `api`) of an event that is not one of the named API
  endpoints (Gradio's `api_visibility="private"` only hides them from the listing).
- The page's handlers delete an upload as soon as it has been read into memory
  (`medr1_demo.scan.cache`), so it lives on disk for a moment only.

    folder = private_folder()            # then os.environ["GRADIO_TEMP_DIR"] = str(folder)
"""

import contextlib
import os
import re
import secrets
import shutil
import tempfile
import threading
import time
from pathlib import Path
from urllib.parse import unquote

PARENT_NAME = "medr1-demo-uploads"
PREFIX = "process-"
# Gradio's raw routes that run an event by name, and the two that serve a file by path.
_CALL = re.compile(r"/gradio_api/(?:call/v2|call|run|api)/([^/?]+)")
_FILE = re.compile(r"/file[=/]")
# A batch's downloads (web.batch): the only files inside the folder that are ever served.
_DOWNLOAD = re.compile(r"medr1-batch-[0-9a-f]{12}-(?:results|summary)\.(?:csv|json|png)")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def clear_leftovers(parent: Path) -> int:
    """Remove the folders of processes that are gone; the number removed."""
    removed = 0
    for child in parent.iterdir() if parent.is_dir() else ():
        match = re.fullmatch(rf"{PREFIX}(\d+)-[0-9a-f]+", child.name)
        if match and child.is_dir() and not _alive(int(match.group(1))):
            shutil.rmtree(child, ignore_errors=True)
            removed += 1
    return removed


def private_folder(parent: str | os.PathLike | None = None) -> Path:
    """A new upload folder of this process only, inside `parent` (default: GRADIO_TEMP_DIR, else
    the system temporary folder's medr1-demo-uploads), earlier processes' leftovers removed."""
    parent = Path(parent or os.environ.get("GRADIO_TEMP_DIR") or
                  Path(tempfile.gettempdir()) / PARENT_NAME)  # fmt: skip
    parent.mkdir(parents=True, exist_ok=True)
    clear_leftovers(parent)
    folder = parent / f"{PREFIX}{os.getpid()}-{secrets.token_hex(4)}"
    folder.mkdir(mode=0o700)
    return folder


def remove(folder: Path | None) -> None:
    """Remove an upload folder and everything in it (safe to call twice)."""
    if folder is not None:
        shutil.rmtree(folder, ignore_errors=True)


def discard(path: str | os.PathLike, folder: Path | None) -> None:
    """Delete one upload once it has been read, with its folder if that is now empty.

    Only uploads (`upload-<random>`) inside `folder` (the private upload folder) are ever
    deleted: Gradio's copies of the example files live there too and serve every click.
    """
    if folder is None:
        return
    path = Path(path).resolve()
    root = Path(folder).resolve()
    if root not in path.parents or not path.name.startswith("upload-"):
        return
    path.unlink(missing_ok=True)
    for parent in path.parents:
        if parent == root:
            break
        try:
            parent.rmdir()  # only when empty
        except OSError:
            break


def anonymise_upload_names() -> None:
    """Make Gradio store uploads as `upload-<random>` instead of the name they were sent with."""
    from gradio import routes

    if getattr(routes.upload_fn, "medr1_anonymous", False):
        return
    original = routes.upload_fn

    async def upload_fn(*args, **kwargs):
        output_files, files_to_copy, locations = await original(*args, **kwargs)
        renamed = []
        for dest in output_files:
            new = Path(dest).with_name(f"upload-{secrets.token_hex(8)}")
            if dest in locations:  # still to be copied there by a background task
                locations[locations.index(dest)] = str(new)
            elif Path(dest).exists():
                os.replace(dest, new)
            renamed.append(str(new))
        return renamed, files_to_copy, locations

    upload_fn.medr1_anonymous = True
    routes.upload_fn = upload_fn


def no_stray_temp_files() -> None:
    """Stop Gradio's File component from leaving an empty temporary file per request.

    Its filepath preprocessing opens a NamedTemporaryFile that nothing uses or deletes (Gradio
    6.31): one 0-byte file per upload stays in the temporary folder until shutdown.
    """
    from gradio.components import file
    from gradio.utils import NamedString

    if getattr(file.File._process_single_file, "medr1_clean", False):
        return
    original = file.File._process_single_file

    def process(self, f):
        if self.type != "filepath":
            return original(self, f)
        from gradio import Error
        from gradio_client import utils as client_utils

        if self.file_types and not client_utils.is_valid_file(f.path, self.file_types):
            raise Error("Invalid file type.")
        return NamedString(f.path)

    process.medr1_clean = True
    file.File._process_single_file = process


class Sweeper:
    """Deletes uploads older than `max_age` seconds every `every` seconds, and their folders.

    Gradio's own sweep (`delete_cache`) also deletes its copies of the example files, after
    which the examples stop working; this one keeps every file named like an example.
    """

    def __init__(self, folder, max_age: float, every: float, keep_names=()):
        self.folder, self.max_age, self.every = Path(folder), max_age, every
        self.keep = set(keep_names)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="upload-sweep", daemon=True)

    def start(self) -> "Sweeper":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            self.sweep()

    def sweep(self) -> int:
        """One pass; the number of files deleted."""
        limit, deleted = time.time() - self.max_age, 0
        for path in list(self.folder.rglob("*")) if self.folder.is_dir() else ():
            try:
                if path.is_file() and path.name not in self.keep and path.stat().st_mtime < limit:
                    path.unlink()
                    deleted += 1
            except OSError:  # deleted meanwhile, or a folder
                continue
        for path in sorted(self.folder.rglob("*"), reverse=True) if self.folder.is_dir() else ():
            if path.is_dir() and len(path.name) == 64:  # a per-upload folder, now empty
                with contextlib.suppress(OSError):  # not empty: an upload still in use
                    path.rmdir()
        return deleted


def _lexical(path) -> Path:
    """`path` made absolute (from the working folder) and normalised, links not followed."""
    return Path(os.path.normpath(os.path.abspath(path)))


def _unquoted(path: str, rounds: int = 4) -> str:
    """`path` percent-decoded until it no longer changes (a doubly encoded path is the same)."""
    for _ in range(rounds):
        decoded = unquote(path)
        if decoded == path:
            break
        path = decoded
    return path


class UploadGuard:
    """ASGI middleware: no file URL inside `folder`, no raw call of an event but `api_names`."""

    def __init__(self, app, folder: str | os.PathLike, api_names=("answer", "answer_stream")):
        self.app, self.folder = app, Path(folder).resolve()
        self.folders = {self.folder, _lexical(folder)}
        self.api_names = set(api_names)

    def refused(self, path: str) -> bool:
        call = _CALL.search(path)
        if call is not None:
            return unquote(call.group(1)) not in self.api_names
        decoded = _unquoted(path)
        return any(self._inside(decoded[found.end() :]) for found in _FILE.finditer(decoded))

    def _inside(self, target: str) -> bool:
        """Whether a file route's path names the upload folder or anything in it (as Gradio
        would read it, lexically, or with its links followed), a batch's download aside."""
        try:
            found = {_lexical(target), Path(target).resolve()}
        except (OSError, ValueError):
            return True
        if all(_DOWNLOAD.fullmatch(p.name) for p in found):  # results, by an unguessable name
            return False
        return any(f == p or f in p.parents for f in self.folders for p in found)

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and self.refused(scope.get("path", "")):
            await send({"type": "http.response.start", "status": 403,
                        "headers": [(b"content-type", b"text/plain; charset=utf-8")]})  # fmt: skip
            await send({"type": "http.response.body", "body": b"Not available."})
            return
        await self.app(scope, receive, send)
