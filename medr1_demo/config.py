"""The app's configuration: dataclasses, read from YAML, overridden by environment and command line.

Precedence, highest first: command-line flags > environment variables > `configs/app.yaml` (or the
file named by `--config` / `MEDR1_CONFIG`) > the defaults below. No torch here: `ui.py` imports it.

    python app.py --model yuxianglai117/Med-R1 --subfolder VQA_CT
    MEDR1_MODEL=/ckpt/medr1-ct MEDR1_QUANTIZATION=4bit python app.py

`python -m medr1_demo.config [flags]` prints the configuration that would be used.
"""

import argparse
import dataclasses
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CONFIG_FILE = ROOT / "configs" / "app.yaml"
QUANTIZATIONS = ("4bit", "8bit")


class ConfigError(ValueError):
    """The configuration cannot be used; str(err) says what to change."""


@dataclass
class ModelConfig:
    """Which policy to serve. `model` None means the bundled demo policy (or an untrained tiny one)."""

    model: str | None = None  # a checkpoint folder or a Hugging Face repo id
    subfolder: str | None = None  # e.g. VQA_CT in yuxianglai117/Med-R1
    adapter: str | None = None  # a LoRA adapter folder
    device: str = "auto"
    dtype: str = "auto"
    quantization: str | None = None  # 4bit / 8bit (CUDA only)
    attn_implementation: str = "auto"


@dataclass
class DecodingConfig:
    """How answers are generated; greedy as in Med-R1's evaluation unless `do_sample`."""

    max_new_tokens_thinking: int = 256
    max_new_tokens_no_thinking: int = 32
    do_sample: bool = False
    temperature: float = 1.0
    top_p: float = 1.0
    exact_length: bool = False  # always generate the maximum (benchmarks compare equal work)


@dataclass
class ServerConfig:
    """How the page is served. The queue runs `concurrency` generations at a time."""

    host: str = "127.0.0.1"
    port: int = 7860
    auth: str | None = None  # "user:password" for basic login when hosting
    concurrency: int = 1  # generations at once; the engine serialises on one model anyway
    queue_size: int = 16  # waiting requests beyond this are refused with a message
    max_question_chars: int = 2000
    max_option_chars: int = 300
    max_upload_mb: int = 200
    cache_minutes: float = 30  # uploads older than this are deleted
    gpu_seconds: int = 120  # ZeroGPU time asked for per answer (Spaces only)


@dataclass
class AppConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    decoding: DecodingConfig = field(default_factory=DecodingConfig)
    server: ServerConfig = field(default_factory=ServerConfig)


# Environment variable -> (section, field). GRADIO_* are Gradio's own names for host and port.
ENVIRONMENT = {
    "MEDR1_MODEL": ("model", "model"),
    "MEDR1_SUBFOLDER": ("model", "subfolder"),
    "MEDR1_ADAPTER": ("model", "adapter"),
    "MEDR1_DEVICE": ("model", "device"),
    "MEDR1_DTYPE": ("model", "dtype"),
    "MEDR1_QUANTIZATION": ("model", "quantization"),
    "MEDR1_ATTN_IMPLEMENTATION": ("model", "attn_implementation"),
    "MEDR1_MAX_NEW_TOKENS": ("decoding", "max_new_tokens_thinking"),
    "MEDR1_MAX_NEW_TOKENS_NO_THINKING": ("decoding", "max_new_tokens_no_thinking"),
    "MEDR1_AUTH": ("server", "auth"),
    "MEDR1_CONCURRENCY": ("server", "concurrency"),
    "MEDR1_QUEUE_SIZE": ("server", "queue_size"),
    "GRADIO_SERVER_NAME": ("server", "host"),
    "GRADIO_SERVER_PORT": ("server", "port"),
}

SECTIONS = {"model": ModelConfig, "decoding": DecodingConfig, "server": ServerConfig}


def _field_types(cls) -> dict[str, str]:
    """Field name -> its type written as in the source ("int", "str | None")."""
    return {f.name: getattr(f.type, "__name__", str(f.type)) for f in dataclasses.fields(cls)}


def _convert(value, section: str, name: str, source: str):
    """A YAML/env/CLI value -> the field's type, or ConfigError naming where it came from."""
    kind = _field_types(SECTIONS[section])[name]
    if value is None or (isinstance(value, str) and value.strip().lower() in {"", "none", "null"}):
        if "None" in kind:
            return None
        raise ConfigError(f"{source}: {section}.{name} needs a value.")
    try:
        if kind.startswith("int"):
            return int(value)
        if kind.startswith("float"):
            return float(value)
        if kind.startswith("bool"):
            if isinstance(value, bool):
                return value
            text = str(value).strip().lower()
            if text not in {"1", "0", "true", "false", "yes", "no", "on", "off"}:
                raise ValueError(value)
            return text in {"1", "true", "yes", "on"}
    except (TypeError, ValueError):
        raise ConfigError(
            f"{source}: {section}.{name} = {value!r} is not a valid {kind}."
        ) from None
    return str(value).strip()


def read_yaml(path: Path) -> dict[str, dict]:
    """The sections of a YAML config file, checked for unknown sections and keys."""
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    except OSError as error:
        raise ConfigError(f"Cannot read the config file {path}: {error.strerror}.") from None
    except yaml.YAMLError as error:
        raise ConfigError(f"The config file {path} is not valid YAML: {error}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"The config file {path} must hold sections model/decoding/server.")
    sections = {}
    for section, values in data.items():
        if section not in SECTIONS:
            raise ConfigError(f"{path}: unknown section {section!r}; use {', '.join(SECTIONS)}.")
        values = values or {}
        if not isinstance(values, dict):
            raise ConfigError(f"{path}: section {section!r} must be a mapping of settings.")
        known = _field_types(SECTIONS[section])
        for name in values:
            if name not in known:
                raise ConfigError(
                    f"{path}: unknown setting {section}.{name}; known: {', '.join(known)}."
                )
        sections[section] = {k: _convert(v, section, k, str(path)) for k, v in values.items()}
    return sections


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="app.py",
        description="Med-R1 clinician demo: thinking vs no-thinking answers on a scan.",
    )
    parser.add_argument("--config", help="YAML config file (default: configs/app.yaml)")
    model = parser.add_argument_group("model")
    model.add_argument("--model", help="checkpoint folder or Hugging Face repo id")
    model.add_argument("--subfolder", help="sub-folder of the checkpoint, e.g. VQA_CT")
    model.add_argument("--adapter", help="LoRA adapter folder")
    model.add_argument("--device", help="auto, cpu, cuda, cuda:1, ...")
    model.add_argument("--dtype", help="auto, bfloat16, float16, float32")
    model.add_argument("--quantization", help="4bit or 8bit (needs CUDA)")
    model.add_argument("--attn-implementation", dest="attn_implementation")
    decoding = parser.add_argument_group("decoding")
    decoding.add_argument(
        "--max-new-tokens",
        dest="max_new_tokens_thinking",
        type=int,
        metavar="N",
        help="new-token limit of thinking mode (default 256)",
    )
    decoding.add_argument(
        "--max-new-tokens-no-thinking",
        dest="max_new_tokens_no_thinking",
        type=int,
        metavar="N",
        help="new-token limit of no-thinking mode (default 32)",
    )
    decoding.add_argument(
        "--exact-length",
        action="store_true",
        default=None,
        help="generate exactly the maximum new tokens, ignoring end of text (benchmarks)",
    )
    server = parser.add_argument_group("server")
    server.add_argument("--host", help="address to listen on (default 127.0.0.1)")
    server.add_argument("--port", type=int, help="port to listen on (default 7860)")
    server.add_argument(
        "--auth", help="user:password required to open the page (MEDR1_AUTH keeps it off ps)"
    )
    server.add_argument("--concurrency", type=int, help="generations at once (default 1)")
    server.add_argument(
        "--queue-size", dest="queue_size", type=int, help="waiting requests before refusing (16)"
    )
    return parser


def _cli_sections(args: argparse.Namespace) -> dict[str, dict]:
    sections: dict[str, dict] = {}
    for section, cls in SECTIONS.items():
        for name in _field_types(cls):
            value = getattr(args, name, None)
            if value is not None:
                sections.setdefault(section, {})[name] = _convert(
                    value, section, name, "command line"
                )
    return sections


def _env_sections(environ: Mapping[str, str]) -> dict[str, dict]:
    sections: dict[str, dict] = {}
    for variable, (section, name) in ENVIRONMENT.items():
        if environ.get(variable, "").strip():
            value = _convert(environ[variable], section, name, variable)
            sections.setdefault(section, {})[name] = value
    return sections


def validate(config: AppConfig) -> AppConfig:
    """Reject settings that cannot work, with the fix in the message."""
    if config.model.quantization and config.model.quantization not in QUANTIZATIONS:
        raise ConfigError(f"quantization must be 4bit or 8bit, not {config.model.quantization!r}.")
    if config.server.auth is not None and ":" not in config.server.auth:
        raise ConfigError("auth must be written user:password.")
    if not 1 <= config.server.port <= 65535:
        raise ConfigError(f"port {config.server.port} is not a valid port number.")
    for name in ("concurrency", "queue_size", "max_question_chars", "max_option_chars"):
        if getattr(config.server, name) < 1:
            raise ConfigError(f"server.{name} must be at least 1.")
    for name in ("max_new_tokens_thinking", "max_new_tokens_no_thinking"):
        if getattr(config.decoding, name) < 1:
            raise ConfigError(f"decoding.{name} must be at least 1.")
    return config


def load_config(
    argv: list[str] | None = None, environ: Mapping[str, str] | None = None
) -> AppConfig:
    """The configuration for `argv` (default: sys.argv[1:]) and `environ` (default: os.environ).

    Raises ConfigError with a plain message; argparse exits on malformed flags as usual.
    """
    environ = os.environ if environ is None else environ
    args = build_parser().parse_args(sys.argv[1:] if argv is None else argv)
    path = args.config or environ.get("MEDR1_CONFIG") or None
    if path is None and DEFAULT_CONFIG_FILE.exists():
        path = DEFAULT_CONFIG_FILE
    layers = [read_yaml(Path(path)) if path else {}, _env_sections(environ), _cli_sections(args)]
    merged: dict[str, dict] = {section: {} for section in SECTIONS}
    for layer in layers:  # later layers win
        for section, values in layer.items():
            merged[section].update(values)
    config = AppConfig(**{section: SECTIONS[section](**merged[section]) for section in SECTIONS})
    return validate(config)


if __name__ == "__main__":
    try:
        shown = dataclasses.asdict(load_config())
        if shown["server"]["auth"]:
            shown["server"]["auth"] = shown["server"]["auth"].split(":", 1)[0] + ":***"
        print(yaml.safe_dump(shown, sort_keys=False))
    except ConfigError as error:
        sys.exit(f"Configuration error: {error}")
