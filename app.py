"""Med-R1 clinician demo: the entry point, and the Hugging Face Spaces `app_file`.

    python app.py                                     # bundled demo policy, else an untrained tiny one
    python app.py --model yuxianglai117/Med-R1 --subfolder VQA_CT
    MEDR1_MODEL=/ckpt/medr1 MEDR1_QUANTIZATION=4bit GRADIO_SERVER_PORT=8080 python app.py
    python app.py --help                              # every setting; configs/app.yaml holds defaults

The catalogue (`--model` first, then `configs/app.yaml`'s policies that can be served here) is
read, its default policy loaded before the page is built, the others on first use
(`medr1_demo.policy.serving`). Calls are wrapped with `spaces.GPU` when the `spaces` package is
importable (ZeroGPU). This is the only module where the engine (torch) and the page meet.
"""

import atexit
import contextlib
import logging
import os
import shutil
import signal
import sys
import tempfile
from pathlib import Path

try:  # ZeroGPU wants `spaces` imported before torch touches CUDA
    import spaces
except ImportError:
    spaces = None

from medr1_demo.config import AppConfig, ConfigError, load_config

ROOT = Path(__file__).resolve().parent
DEMO_POLICY = ROOT / "assets" / "demo-policy"
CACHE = Path(os.environ.get("MEDR1_CACHE", "~/.cache/medr1-demo")).expanduser()
UNTRAINED = "untrained-tiny"
UNTRAINED_NOTICE = (
    "This page serves an untrained tiny policy (random weights): its answers are noise. "
    "Start the app with --model (or MEDR1_MODEL) to serve a trained Med-R1 checkpoint."
)
DEMO_NOTICE = (
    "This page serves the bundled demo policy, a small model trained on synthetic phantoms: it "
    "answers phantom scans like the examples, and real scans meaninglessly. Start the app with "
    "--model (or MEDR1_MODEL) to serve a Med-R1 checkpoint."
)
logger = logging.getLogger("medr1_demo.app")


def untrained_policy(cache: Path = CACHE) -> Path:
    """An untrained tiny policy in `cache`, built on first use (about a second)."""
    from medr1_demo.policy.tiny import build_tiny_checkpoint

    target = cache / UNTRAINED
    if (target / "config.json").exists():
        return target
    cache.mkdir(parents=True, exist_ok=True)
    # Built aside and renamed, so two apps starting at once never read a half-written folder.
    building = Path(tempfile.mkdtemp(prefix="building-", dir=cache))
    build_tiny_checkpoint(building / UNTRAINED, seed=0)
    (building / UNTRAINED / "medr1_policy.json").write_text(
        '{"description": "untrained tiny policy (random weights), for trying the app"}\n',
        encoding="utf-8",
    )
    with contextlib.suppress(OSError):  # another process won the race; its copy is as good
        (building / UNTRAINED).rename(target)
    shutil.rmtree(building, ignore_errors=True)
    return target


def fallback_entry() -> "PolicyEntry":  # noqa: F821 (imported lazily: keeps --help fast)
    """An untrained tiny policy, served only when no catalogue entry can be (a fresh clone
    without the bundled policies and no network)."""
    from medr1_demo.policy.catalogue import PolicyEntry

    return PolicyEntry(UNTRAINED, str(untrained_policy()), description="random weights")


def notice_for(entry) -> str | None:
    """The warning above the page for a policy that does not answer real scans meaningfully."""
    if entry.name == UNTRAINED:
        return UNTRAINED_NOTICE
    if entry.folder is not None and entry.folder.parent == DEMO_POLICY.parent:
        return DEMO_NOTICE  # a bundled policy (assets/demo-policy*)
    return None


def on_gpu(function, seconds: int):
    """`function` wrapped to hold a ZeroGPU for up to `seconds` per call, where there is one."""
    if spaces is None:
        return function
    return spaces.GPU(duration=seconds)(function)


def make_backend(catalogue, library, config: AppConfig, serving: str):
    """The page's view of the policies: plain callables and descriptions, no torch."""
    from medr1_demo.policy import serving as policies
    from medr1_demo.web.layout import Backend

    default = catalogue.default.name

    def engine(name):
        return library.engine(name or default)

    def answer(image, question, *, policy=None, **kwargs):
        return engine(policy).answer(image, question, **kwargs)

    def stream(image, question, *, policy=None, **kwargs):
        yield from engine(policy).stream(image, question, **kwargs)

    def answer_many(cases, *, policy=None, **kwargs):
        return engine(policy).answer_many(cases, **kwargs)

    def describe(name):
        if name not in library.loaded():
            return None
        return policies.shown_info(library.engine(name).info, catalogue.get(name))

    def route(modality):
        entry, why = catalogue.route(modality)
        return entry.name, why

    seconds = config.server.gpu_seconds
    return Backend(
        info=describe(default),
        answer=on_gpu(answer, seconds),
        stream=on_gpu(stream, seconds),
        answer_many=on_gpu(answer_many, seconds),
        notice=notice_for(catalogue.default),
        serving=serving,
        policies=(default, *(n for n in catalogue.names if n != default)),
        describe=describe,
        route=route,
        loaded=lambda name: name in library.loaded(),
        sizes={e.name: policies.picture_size(e) for e in catalogue.entries},
        notices={e.name: notice_for(e) for e in catalogue.entries},
    )


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    logging.getLogger("httpx").setLevel(logging.WARNING)  # Gradio's own start-up requests
    try:
        config = load_config(argv)
    except ConfigError as error:
        print(f"Configuration error: {error}", file=sys.stderr)
        return 2

    from medr1_demo.policy import serving as policies
    from medr1_demo.policy.catalogue import CatalogueError
    from medr1_demo.policy.checkpoint import PolicyLoadError

    try:
        catalogue = policies.catalogue(config, fallback_entry())
        library = policies.library(catalogue, config, zero_gpu=spaces is not None)
        default = catalogue.default
        print(f"Loading the policy {default.name} ({default.shown_source}) ...", flush=True)
        engine = library.engine(default.name)
    except (PolicyLoadError, CatalogueError) as error:
        print(f"Could not load the model: {error}", file=sys.stderr)
        return 1
    except Exception as error:  # torch/transformers errors: one line, not a traceback wall
        first = str(error).strip().splitlines()[0] if str(error).strip() else ""
        print(f"Could not load the model ({type(error).__name__}): {first}", file=sys.stderr)
        return 1
    info = engine.info
    print(f"Loaded {default.name}: {info.parameters:,} parameters on {info.device} ({info.dtype})")
    serving = policies.serving_words(engine, config, zero_gpu=spaces is not None)
    others = [n for n in catalogue.names if n != default.name]
    print(f"Serving: {serving}; {len(others)} more policies on first use", flush=True)

    uploads = private_uploads()
    from medr1_demo.web.layout import build_demo, configure_queue, launch_options

    backend = make_backend(catalogue, library, config, serving)
    demo = configure_queue(build_demo(backend, config, uploads=uploads), config)
    try:
        demo.launch(**launch_options(config, uploads=uploads))
    except OSError as error:  # the port is taken, the address cannot be bound
        print(f"Could not start the server: {error}", file=sys.stderr)
        return 1
    finally:
        demo.medr1_sweeper.stop()
        library.close()  # shutting the app down ends every scheduler
        remove_uploads(uploads)
    return 0


def private_uploads() -> Path:
    """This process's own upload folder, set as Gradio's temporary folder before Gradio starts.

    Earlier processes' leftovers are removed first; the folder goes on SIGTERM, SIGINT and at
    exit (SIGTERM is what Spaces, docker, systemd and Kubernetes send to stop a server).
    """
    from medr1_demo.web import uploads
    from medr1_demo.web.logs import quiet_gradio_tracebacks

    folder = uploads.private_folder()
    os.environ["GRADIO_TEMP_DIR"] = str(folder)
    uploads.anonymise_upload_names()
    uploads.no_stray_temp_files()
    quiet_gradio_tracebacks()
    atexit.register(uploads.remove, folder)

    def stop(signum, frame):  # Gradio closes its server on KeyboardInterrupt, then main returns
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    return folder


def remove_uploads(folder: Path) -> None:
    from medr1_demo.web import uploads

    uploads.remove(folder)


if __name__ == "__main__":
    sys.exit(main())
