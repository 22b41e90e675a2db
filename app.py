"""Med-R1 clinician demo: the entry point, and the Hugging Face Spaces `app_file`.

    python app.py                                     # bundled demo policy, else an untrained tiny one
    python app.py --model yuxianglai117/Med-R1 --subfolder VQA_CT
    MEDR1_MODEL=/ckpt/medr1 MEDR1_QUANTIZATION=4bit GRADIO_SERVER_PORT=8080 python app.py
    python app.py --help                              # every setting; configs/app.yaml holds defaults

The policy is loaded once, here, before the page is built. Its calls are wrapped with
`spaces.GPU` when the `spaces` package is importable (ZeroGPU) and used as they are otherwise.
This is the only module where the engine (torch) and the page (Gradio) meet.
"""

import atexit
import contextlib
import logging
import os
import shutil
import signal
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

try:  # ZeroGPU wants `spaces` imported before torch touches CUDA
    import spaces
except ImportError:
    spaces = None

from medr1_demo.config import AppConfig, ConfigError, ModelConfig, load_config

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


def choose_model(model: ModelConfig) -> tuple[ModelConfig, str | None]:
    """The configured model, else the bundled demo policy, else an untrained tiny one; + notice."""
    if model.model or model.adapter:
        return model, None
    if (DEMO_POLICY / "config.json").exists():
        return replace(model, model=str(DEMO_POLICY)), DEMO_NOTICE
    return replace(model, model=str(untrained_policy())), UNTRAINED_NOTICE


def load_engine(model: ModelConfig):
    """The engine for `model`; PolicyLoadError (plain message) when it cannot be loaded."""
    from medr1_demo.policy.engine import PolicyEngine

    return PolicyEngine.load(
        model.model,
        subfolder=model.subfolder,
        adapter=model.adapter,
        device=model.device,
        dtype=model.dtype,
        quantization=model.quantization,
        attn_implementation=model.attn_implementation,
    )


def on_gpu(function, seconds: int):
    """`function` wrapped to hold a ZeroGPU for up to `seconds` per call, where there is one."""
    if spaces is None:
        return function
    return spaces.GPU(duration=seconds)(function)


def share_batch(engine, config: AppConfig) -> tuple[object | None, str]:
    """A started scheduler for all users' requests, where one can run; (scheduler, in words).

    On ZeroGPU a GPU exists only inside one decorated call, so each request generates alone.
    """
    from medr1_demo.policy import batching
    from medr1_demo.policy.scheduler import Scheduler

    server = config.server
    if spaces is not None:
        return None, "one request at a time (ZeroGPU: the GPU exists only inside each call)"
    if not server.shared_batch:
        return None, "one request at a time (server.shared_batch is off)"
    if not batching.supported(engine.model):
        return None, "one request at a time (this model cannot share a running batch)"
    scheduler = Scheduler(
        engine, config.decoding, max_rows=server.max_batch_rows, queue_size=server.queue_size
    ).start()
    engine.use_scheduler(scheduler)
    return scheduler, f"requests share one running batch (up to {server.max_batch_rows} rows)"


def shown_info(info):
    """The engine's description without server paths: a hub id, or a folder's name."""
    from medr1_demo.policy.catalogue import PolicyEntry

    source = PolicyEntry("served", info.model_id).shown_source
    adapter = Path(info.adapter).name if info.adapter else None
    return replace(info, model_id=source, adapter=adapter)


def make_backend(engine, config: AppConfig, notice: str | None, serving: str | None = None):
    from medr1_demo.web.layout import Backend

    seconds = config.server.gpu_seconds
    return Backend(
        info=shown_info(engine.info),
        answer=on_gpu(engine.answer, seconds),
        stream=on_gpu(engine.stream, seconds),
        notice=notice,
        serving=serving,
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

    from medr1_demo.policy.checkpoint import PolicyLoadError

    try:
        model, notice = choose_model(config.model)
        shown = model.model + (f" / {model.subfolder}" if model.subfolder else "")
        print(f"Loading the policy from {shown} ...", flush=True)
        engine = load_engine(model)
    except PolicyLoadError as error:
        print(f"Could not load the model: {error}", file=sys.stderr)
        return 1
    except Exception as error:  # torch/transformers errors: one line, not a traceback wall
        first = str(error).strip().splitlines()[0] if str(error).strip() else ""
        print(f"Could not load the model ({type(error).__name__}): {first}", file=sys.stderr)
        return 1
    info = engine.info
    print(f"Loaded {info.model_id}: {info.parameters:,} parameters on {info.device} ({info.dtype})")

    uploads = private_uploads()
    from medr1_demo.web.layout import build_demo, configure_queue, launch_options

    scheduler, serving = share_batch(engine, config)
    print(f"Serving: {serving}", flush=True)
    backend = make_backend(engine, config, notice, serving)
    demo = configure_queue(build_demo(backend, config, uploads=uploads), config)
    try:
        demo.launch(**launch_options(config, uploads=uploads))
    except OSError as error:  # the port is taken, the address cannot be bound
        print(f"Could not start the server: {error}", file=sys.stderr)
        return 1
    finally:
        if scheduler is not None:  # shutting the app down ends the scheduler
            scheduler.stop()
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
