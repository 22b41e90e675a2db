"""The page's scan panel: an upload (one file, several, a ZIP or a NIfTI volume) read once, shown
at any series, slice, plane and window. Never imports torch.

`ScanViews.new_scan` runs when files arrive: it opens them through the scan cache (a DICOM
series is grouped and ordered, several series are offered by safe facts only), then deletes the
files from the server's disk, except an upload of several series, which stays (private,
unfetchable, removed with the folder) so that another series can be opened. `show` renders the
chosen slice for a slider, plane or window change from memory; `read` gives a request its scan.

    views = ScanViews(ScanCache(), uploads=folder, picture=lambda image, policy: image)
    preview, series, slider, plane, window, details, notes = views.new_scan(paths)
"""

import logging
import time
from pathlib import Path

import gradio as gr

from medr1_demo.scan.cache import ScanCache
from medr1_demo.scan.series import SeriesChoice
from medr1_demo.scan.types import Scan, ScanError
from medr1_demo.web import render
from medr1_demo.web.inputs import RequestError, read_frame, read_whole, read_window
from medr1_demo.web.uploads import discard

logger = logging.getLogger("medr1_demo.web.handlers")
PLANE_NAMES = ("axial", "coronal", "sagittal")
_NOT_FILES = "The scan must be one or more uploaded files."


def read_paths(value, root=None) -> list[str]:
    """The upload's server paths from a File input: one path, a list, or Gradio's file dicts.

    With `root` (the API's inputs, which Gradio does not check), every path must lie inside it:
    the upload folder, so that a request can name no other file of the server.
    """
    items = value if isinstance(value, list | tuple) else [value]
    paths = []
    for item in items:
        if isinstance(item, dict):
            item = item.get("path")
        if item is None or item == "":
            continue
        if not isinstance(item, str):
            raise RequestError(_NOT_FILES, "scan_type")
        if root is not None and not _inside(item, root):
            raise RequestError(
                "The scan must be a file uploaded to this server: send the path its upload "
                "returned (gradio_client's handle_file does this).",
                "scan_not_uploaded",
            )
        paths.append(item)
    if not paths:
        raise RequestError("Upload a scan first (DICOM, PNG or JPEG).", "no_scan")
    return paths


def read_upload(scan, files, root=None) -> list[str]:
    """The API's `scan` (one file) and `files` (a list of files) as one upload's paths."""
    if files not in (None, "") and not isinstance(files, list | tuple):
        raise RequestError("`files` must be a list of uploaded files.", "files_type")
    if isinstance(scan, list | tuple):
        raise RequestError(
            "`scan` takes one uploaded file; send the others of a series in `files`.", "scan_type"
        )
    if any(not isinstance(f, str | dict | None) for f in files or ()):
        raise RequestError("Each of `files` must be an uploaded file.", "files_type")
    if not isinstance(scan, str | dict | None):
        raise RequestError(_NOT_FILES, "scan_type")
    return read_paths([f for f in (scan, *(files or ())) if f not in (None, "")], root)


def _inside(path: str, root) -> bool:
    try:
        found, folder = Path(path).resolve(), Path(root).resolve()
    except (OSError, ValueError):
        return False
    return folder in found.parents


def read_series(value, labels: tuple[str, ...] = ()) -> int | None:
    """The chosen series: its 0-based number, or its label from the page's list; None: first."""
    if value is None or value == "":
        return None
    if isinstance(value, str) and value in labels:
        return labels.index(value)
    sentence = "The series must be a whole number (0 is the first series)."
    index = read_whole(value, sentence, "series")
    if index is None or index < 0:
        raise RequestError(sentence, "series")
    return index


def read_plane(value) -> str | None:
    if value is None or value == "":
        return None
    if isinstance(value, str) and value.strip().lower() in PLANE_NAMES:
        return value.strip().lower()
    raise RequestError("The plane must be axial, coronal or sagittal.", "plane")


class ScanViews:
    """Scan events over one cache; `picture(image, policy)` is the picture that policy sees."""

    def __init__(self, scans: ScanCache, uploads=None, picture=None):
        self.scans, self.uploads = scans, uploads
        self.picture = picture or (lambda image, policy=None: image)

    def open(self, value, series=None):
        """(the opened scan, the series labels: () unless the upload holds several series, the
        chosen series' 0-based number: None unless it holds several)."""
        paths = read_paths(value)
        started = time.perf_counter()
        try:
            opened = self.scans.open_upload(paths)
            labels = opened.labels if isinstance(opened, SeriesChoice) else ()
            chosen = read_series(series, labels)
            if labels:
                opened = self.scans.open_upload(paths, chosen or 0)
            elif chosen:
                raise RequestError(
                    f"This upload holds one series, so series {chosen} does not exist "
                    "(the first is 0).",
                    "series",
                )
        except RequestError:
            raise
        except FileNotFoundError:
            raise RequestError(
                "The uploaded scan is no longer on the server; upload it again.", "scan_gone"
            ) from None
        except ScanError as error:  # its reason is a short code, never header text
            self._discard(paths)
            raise RequestError(str(error), f"scan_{error.reason}") from None
        except (OSError, ValueError):  # anything the scan reader did not foresee
            self._discard(paths)
            raise RequestError(
                "This file could not be read as a scan (DICOM, PNG or JPEG).", "scan_unreadable"
            ) from None
        if not labels:  # read into memory: the files on disk are no longer needed
            self._discard(paths)
        logger.info(
            "scan kind=%s files=%d memory=%d load=%.2fs",
            opened.kind, len(paths), opened.nbytes, time.perf_counter() - started,
        )  # fmt: skip
        return opened, labels, (chosen or 0) if labels else None

    def release(self, value) -> None:
        """Drop the decoded scan of an upload that was replaced or whose page was closed."""
        for path in read_paths(value) if value else ():
            self.scans.forget(path)

    def _discard(self, paths) -> None:
        for path in paths:
            discard(path, self.uploads)

    def read(self, value, frame=None, window=None, plane=None, series=None) -> Scan:
        """The scan of a request: `frame` 0-based (a slice of a volume), None the middle one."""
        return self.read_request(value, frame, window, plane, series)[0]

    def read_request(self, value, frame=None, window=None, plane=None, series=None):
        """(the scan of a request, its series' 0-based number, the upload's series labels):
        the number is None and the labels () when the upload holds one series."""
        opened, labels, chosen = self.open(value, series)
        try:
            scan = opened.picture(read_frame(frame), read_window(window), read_plane(plane))
        except ScanError as error:
            raise RequestError(str(error), f"scan_{error.reason}") from None
        return scan, chosen, labels

    # ------------------------------------------------------------------------- page events

    def new_scan(self, value, series=None, policy=None):
        """Files arrived (upload or example): preview, series list, slider, plane, window,
        details, notes."""
        hidden = gr.update(visible=False)
        if not value:
            return render.preview_html(None), hidden, hidden, hidden, hidden, "", ""
        try:
            opened, labels, chosen = self.open(value, series)
            scan = opened.picture()
        except (RequestError, ScanError) as error:
            reason = getattr(error, "reason", "scan")
            logger.info("request refused: %s", reason)
            empty = render.preview_html(None)
            return empty, hidden, hidden, hidden, hidden, "", render.message_html(str(error))
        shown = labels[chosen] if labels else None
        series_list = gr.update(visible=bool(labels), choices=list(labels), value=shown)
        return (render.preview_html(self.picture(scan.image, policy)), series_list,
                *self._controls(scan), render.metadata_table(scan.metadata),
                self.notes(scan))  # fmt: skip

    def show(self, value, series, frame, window, plane, policy=None):
        """The series, slider (1-based), plane or window changed: preview, slider, details,
        notes."""
        try:
            index = read_frame(frame)
            scan = self.read(value, index - 1 if index else None, window, plane, series)
        except RequestError as error:
            logger.info("request refused: %s", error.reason)
            failed = render.preview_html(None), gr.update(), gr.update(), ""
            return (*failed, render.message_html(str(error)))
        slider, _, _ = self._controls(scan)
        preview = render.preview_html(self.picture(scan.image, policy))
        return preview, slider, render.metadata_table(scan.metadata), self.notes(scan)

    @staticmethod
    def _controls(scan: Scan):
        """The slider (frames or slices, counted from 1 as viewers do), plane and window."""
        word = "Slice" if scan.planes or scan.kind in ("DICOM series", "NIfTI") else "Frame"
        slider = gr.update(
            visible=scan.frame_count > 1, minimum=1, maximum=max(scan.frame_count, 2),
            value=scan.frame_index + 1, label=f"{word} (of {scan.frame_count})",
        )  # fmt: skip
        plane = gr.update(visible=bool(scan.planes), choices=list(scan.planes), value=scan.plane)
        choices = list(scan.window_choices)
        window = gr.update(visible=len(choices) > 1, choices=choices, value=choices[0])
        return slider, plane, window

    @staticmethod
    def notes(scan: Scan) -> str:
        # Burned-in text may be a patient's name: its warning is shown as loudly as an error.
        return render.messages_html(
            scan.warnings, "error" if scan.burned_in_annotation else "warning"
        )
