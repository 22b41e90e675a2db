"""The policies a server answers with: its catalogue from the settings, each engine loaded on
first use with its own shared batch, and what the page may show of them.

    catalogue = serving.catalogue(config, fallback)   # --model first, then configs/app.yaml
    library = serving.library(catalogue, config)      # engines on demand, LRU, schedulers
    engine = library.engine(catalogue.default.name)

`app.py` builds the page's backend from these; nothing here knows Gradio.
"""

from dataclasses import replace
from pathlib import Path

from medr1_demo.config import AppConfig
from medr1_demo.policy import batching
from medr1_demo.policy.catalogue import Catalogue, PolicyEntry, hub_reachable
from medr1_demo.policy.checkpoint import read_policy_metadata
from medr1_demo.policy.library import Library
from medr1_demo.policy.picture import training_size
from medr1_demo.policy.scheduler import Scheduler


def given_entry(config: AppConfig) -> PolicyEntry | None:
    """The policy named by --model / --adapter (MEDR1_MODEL ...), as a catalogue entry."""
    model = config.model
    if not model.model and not model.adapter:
        return None
    source = model.model or model.adapter
    name = model.subfolder or Path(str(source).rstrip("/")).name or str(source)
    return PolicyEntry(name, str(source), model.subfolder, model.adapter if model.model else None,
                       "the policy this server was started with")  # fmt: skip


def catalogue(config: AppConfig, fallback: PolicyEntry, online: bool | None = None) -> Catalogue:
    """The entries that can be served here: --model first, then the config's list; `fallback`
    (an untrained tiny policy) only when nothing else can be served."""
    online = hub_reachable() if online is None else online
    given = given_entry(config)
    entries = [e for e in (given, *config.policies) if e is not None]
    default = config.model.policy
    if default is None and given is not None:
        default = given.name
    try:
        return Catalogue(entries, online=online, default=default, keep=(given,) if given else ())
    except ValueError:
        if default is not None:
            raise
        return Catalogue([fallback], online=online)


def picture_size(entry: PolicyEntry) -> int | None:
    """The picture side an entry saw in training: the catalogue's, else its metadata's."""
    if entry.image_size:
        return entry.image_size
    folder = entry.folder
    if folder is not None:
        return training_size(read_policy_metadata(folder / (entry.subfolder or "")))
    return training_size({}, entry.source)


def load(entry: PolicyEntry, config: AppConfig):
    """The engine of one entry, loaded with the server's device and precision settings."""
    from medr1_demo.policy.engine import PolicyEngine

    model = config.model
    source = str(entry.folder) if entry.folder is not None else entry.source
    return PolicyEngine.load(
        source,
        subfolder=entry.subfolder,
        adapter=entry.adapter,
        device=model.device,
        dtype=model.dtype,
        quantization=model.quantization,
        attn_implementation=model.attn_implementation,
        image_size=entry.image_size,
    )


def share_batch(engine, config: AppConfig, zero_gpu: bool = False) -> None:
    """Give `engine` a started scheduler for all users' requests, where one can run."""
    if zero_gpu or not config.server.shared_batch or not batching.supported(engine.model):
        return
    server = config.server
    scheduler = Scheduler(
        engine, config.decoding, max_rows=server.max_batch_rows, queue_size=server.queue_size
    ).start()
    engine.use_scheduler(scheduler)


def serving_words(engine, config: AppConfig, zero_gpu: bool = False) -> str:
    """How requests share `engine`, in words for the model panel."""
    if engine.scheduler is not None:
        rows = config.server.max_batch_rows
        return f"requests share one running batch per policy (up to {rows} rows)"
    if zero_gpu:
        return "one request at a time (ZeroGPU: the GPU exists only inside each call)"
    if not config.server.shared_batch:
        return "one request at a time (server.shared_batch is off)"
    return "one request at a time (this model cannot share a running batch)"


def library(catalogue: Catalogue, config: AppConfig, zero_gpu: bool = False) -> Library:
    """Engines of the catalogue, loaded on first use, each started on its shared batch."""
    return Library(
        catalogue,
        load=lambda entry: load(entry, config),
        max_loaded=config.server.max_loaded_policies,
        start=lambda engine: share_batch(engine, config, zero_gpu),
    )


def shown_info(info, entry: PolicyEntry):
    """An engine's description without server paths: the hub id, or the folder's name."""
    adapter = Path(entry.adapter).name if entry.adapter else None
    source = entry.source if entry.on_hub else Path(entry.source).name
    return replace(info, model_id=source, subfolder=entry.subfolder, adapter=adapter)
