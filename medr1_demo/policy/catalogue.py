"""The policies the app can serve: what each is, whether it can be reached, and which fits a scan.

`configs/app.yaml` lists them under `policies:` (name, source, sub-folder, adapter, description,
the modalities and question types it was trained on, the picture size it saw). The default list
holds the bundled demo policies, the 13 released Med-R1 specialists and their base model,
Qwen2-VL-2B-Instruct. An entry can be served when its source is a folder here, when the Hugging
Face cache already holds it, or when the hub can be reached (never when HF_HUB_OFFLINE is set):
with no GPU and no network the catalogue is the bundled policies. No torch here.

"Auto" routing picks the specialist for a scan: from a DICOM's Modality code (CT; MR; CR, DX, DR,
MG -> X-Ray; US; OP -> fundus; OPT -> OCT; SM -> microscopy; XC -> dermoscopy), or from the
modality the person names for a picture; the narrowest entry trained on it wins.

    catalogue = Catalogue(read_entries(yaml_list), online=hub_reachable())
    entry, why = catalogue.route("MR")          # the VQA_MRI specialist, and why in words
"""

import os
import socket
from dataclasses import dataclass
from pathlib import Path

from medr1_demo.protocol import MODALITIES, QUESTION_TYPES

ROOT = Path(__file__).resolve().parents[2]
AUTO = "Auto"
# DICOM Modality (0008,0060) -> the Med-R1 modality it is.
DICOM_MODALITIES = {
    "CT": "CT", "MR": "MRI", "CR": "X-Ray", "DX": "X-Ray", "DR": "X-Ray", "MG": "X-Ray",
    "US": "Ultrasound", "OP": "Fundus Photography", "OPT": "OCT", "SM": "Microscopy",
    "XC": "Dermoscopy",
}  # fmt: skip
FIELDS = ("name", "source", "subfolder", "adapter", "description", "modalities",
          "question_types", "image_size")  # fmt: skip


class CatalogueError(ValueError):
    """The catalogue in the config cannot be used; str(err) says what to change."""


@dataclass(frozen=True)
class PolicyEntry:
    """One servable policy."""

    name: str  # what the picker shows
    source: str  # a folder (relative to the project, or absolute) or a Hugging Face repo id
    subfolder: str | None = None  # e.g. VQA_CT in yuxianglai117/Med-R1
    adapter: str | None = None  # a LoRA adapter folder
    description: str | None = None
    modalities: tuple[str, ...] = ()  # what it was trained on; () = not said
    question_types: tuple[str, ...] = ()
    image_size: int | None = None  # the square side it saw; None: its metadata decides

    @property
    def folder(self) -> Path | None:
        """The local folder of a folder source (None for a hub id)."""
        path = Path(self.source).expanduser()
        path = path if path.is_absolute() else ROOT / path
        return path if path.exists() else None

    @property
    def on_hub(self) -> bool:
        """Whether the source is a Hugging Face repo id ("owner/name") rather than a folder."""
        source = self.source.strip()
        if self.folder is not None or source.startswith(("/", ".", "~")) or "\\" in source:
            return False
        return source.count("/") == 1

    @property
    def shown_source(self) -> str:
        """The source as the page may show it: a hub id, or a folder's name (never a path)."""
        text = self.source if self.on_hub else Path(self.source).name
        return text + (f" / {self.subfolder}" if self.subfolder else "")


def read_entries(items) -> tuple[PolicyEntry, ...]:
    """The `policies:` list of a config file, checked; CatalogueError names what is wrong."""
    if items is None:
        return ()
    if not isinstance(items, list):
        raise CatalogueError("policies must be a list of entries, each with a name and a source.")
    entries, names = [], set()
    for number, item in enumerate(items, 1):
        where = f"policies entry {number}"
        if not isinstance(item, dict):
            raise CatalogueError(f"{where} must be a mapping (name, source, ...).")
        unknown = sorted(set(item) - set(FIELDS))
        if unknown:
            raise CatalogueError(f"{where}: unknown field(s) {', '.join(unknown)}.")
        if not item.get("name") or not item.get("source"):
            raise CatalogueError(f"{where} needs a name and a source.")
        name = str(item["name"]).strip()
        if name in names or name == AUTO:
            raise CatalogueError(f"{where}: the name {name!r} is taken.")
        names.add(name)
        modalities = tuple(item.get("modalities") or ())
        question_types = tuple(item.get("question_types") or ())
        bad = [m for m in modalities if m not in MODALITIES]
        bad += [q for q in question_types if q not in QUESTION_TYPES]
        if bad:
            raise CatalogueError(f"{where}: unknown modality or question type {bad[0]!r}.")
        size = item.get("image_size")
        if size is not None and (not isinstance(size, int) or size <= 0):
            raise CatalogueError(f"{where}: image_size must be a positive whole number.")
        entries.append(
            PolicyEntry(name, str(item["source"]), item.get("subfolder"), item.get("adapter"),
                        item.get("description"), modalities, question_types, size)
        )  # fmt: skip
    return tuple(entries)


def hub_reachable(timeout: float = 1.5) -> bool:
    """Whether the Hugging Face Hub can be reached now (False when HF_HUB_OFFLINE is set)."""
    if os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on"):
        return False
    try:
        with socket.create_connection(("huggingface.co", 443), timeout=timeout):
            return True
    except OSError:
        return False


def in_hub_cache(entry: PolicyEntry) -> bool:
    """Whether the Hugging Face cache already holds the entry's config (no network needed)."""
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return False
    name = f"{entry.subfolder}/config.json" if entry.subfolder else "config.json"
    found = try_to_load_from_cache(entry.source, name)
    return isinstance(found, str)


class Catalogue:
    """The entries that can be served here, by name, with routing by modality."""

    def __init__(self, entries, *, online: bool, default: str | None = None, keep=()):
        self.all = tuple(entries)
        # `keep`: entries served even when they look unreachable (the policy a person named on
        # the command line: its own load error says what is wrong better than "unavailable").
        self.entries = tuple(e for e in self.all if e in keep or self.reachable(e, online))
        if not self.entries:
            raise CatalogueError(
                "No policy in the catalogue can be served here (no local folder, none in the "
                "Hugging Face cache, and the hub cannot be reached)."
            )
        names = [e.name for e in self.entries]
        if default is not None and default not in names:
            raise CatalogueError(f"The default policy {default!r} is not available here.")
        self.default = self.get(default or names[0])

    @staticmethod
    def reachable(entry: PolicyEntry, online: bool) -> bool:
        if entry.folder is not None:
            return True
        return entry.on_hub and (online or in_hub_cache(entry))

    @property
    def names(self) -> list[str]:
        return [entry.name for entry in self.entries]

    def get(self, name: str) -> PolicyEntry:
        for entry in self.entries:
            if entry.name == name:
                return entry
        raise KeyError(name)

    def route(self, modality: str | None) -> tuple[PolicyEntry, str]:
        """The entry for a scan of `modality` (a DICOM code or a Med-R1 name), and why."""
        wanted = DICOM_MODALITIES.get(str(modality or "").upper(), modality)
        if wanted not in MODALITIES:
            return self.default, (
                f"Auto: the scan's modality is not known, so the default policy "
                f"({self.default.name}) answered."
            )
        fits = [e for e in self.entries if wanted in e.modalities]
        if not fits:
            return self.default, (
                f"Auto: no policy here was trained on {wanted}, so the default policy "
                f"({self.default.name}) answered."
            )
        best = min(fits, key=lambda e: len(e.modalities))  # the specialist over a generalist
        return best, f"Auto: a {wanted} scan, so {best.name} (trained on {wanted}) answered."
