"""The app's settings: one dataclass field per setting, settable from YAML, environment and flags.

Each field below is the single source of a setting: its YAML key is the field name in its section
(`configs/app.yaml`), its environment variable is `MEDR1_<FIELD>` and its command-line flag
`--<field>` with dashes (a few older names are kept as aliases: `MEDR1_MAX_NEW_TOKENS`,
`--max-new-tokens`, and Gradio's own `GRADIO_SERVER_NAME` / `GRADIO_SERVER_PORT`). Precedence,
highest first: flags > environment > the YAML file (`--config` / `MEDR1_CONFIG`, default
`configs/app.yaml`) > the defaults written here. No torch here: the page imports this module.

    python app.py --model yuxianglai117/Med-R1 --subfolder VQA_CT
    MEDR1_MODEL=/ckpt/medr1-ct MEDR1_QUANTIZATION=4bit MEDR1_TEMPERATURE=0.7 python app.py
    python app.py --help              # every setting, its variable and its default

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

from medr1_demo.policy.catalogue import CatalogueError, PolicyEntry, read_entries
from medr1_demo.protocol import NO_THINKING, THINKING

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CONFIG_FILE = ROOT / "configs" / "app.yaml"
ENV_PREFIX = "MEDR1_"
QUANTIZATIONS = ("4bit", "8bit")


class ConfigError(ValueError):
    """The configuration cannot be used; str(err) says what to change."""


def setting(default, help: str, *, aliases: tuple[str, ...] = (), choices=None, **kwargs):
    """A settings field: its default, its help line, older names (variables or flags), choices."""
    metadata = {"help": help, "aliases": aliases, "choices": choices}
    return field(default=default, metadata=metadata, **kwargs)


@dataclass(frozen=True)
class ModelConfig:
    """Which policy to serve. `model` None means the bundled demo policy (or an untrained tiny one)."""

    model: str | None = setting(
        None, "checkpoint folder or Hugging Face repo id (default: the bundled demo policy)"
    )
    subfolder: str | None = setting(None, "sub-folder of the checkpoint, e.g. VQA_CT")
    adapter: str | None = setting(None, "LoRA adapter folder")
    device: str = setting("auto", "auto, cpu, cuda, cuda:1, ...")
    dtype: str = setting(
        "auto",
        "auto (bfloat16 on GPU and, for bf16 weights, on CPUs with native bf16), bfloat16, float16, float32",
    )
    quantization: str | None = setting(
        None, "load 4bit or 8bit with bitsandbytes (CUDA only)", choices=QUANTIZATIONS
    )
    policy: str | None = setting(
        None, "the catalogue entry served by default (default: --model if given, else the first)"
    )
    attn_implementation: str = setting(
        "auto", "attention kernel: auto (flash_attention_2 when installed, else sdpa), sdpa, eager"
    )


@dataclass(frozen=True)
class DecodingConfig:
    """How answers are generated: greedy, as Med-R1's evaluation, unless `do_sample`.

    The engine, the page and the evaluator all take this one type.
    """

    max_new_tokens_thinking: int = setting(
        256,
        "new-token limit of thinking mode",
        aliases=("MEDR1_MAX_NEW_TOKENS", "--max-new-tokens"),
    )
    max_new_tokens_no_thinking: int = setting(32, "new-token limit of no-thinking mode")
    do_sample: bool = setting(False, "sample instead of greedy decoding")
    temperature: float = setting(1.0, "sampling temperature (with do_sample)")
    top_p: float = setting(1.0, "nucleus sampling threshold (with do_sample)")
    seed: int | None = setting(None, "random seed of sampling (with do_sample)")
    exact_length: bool = setting(
        False,
        "generate exactly the token limit, ignoring end of text (benchmarks compare equal work)",
    )

    def tokens_for(self, mode: str) -> int:
        """The new-token limit of `mode`."""
        limits = {
            THINKING: self.max_new_tokens_thinking,
            NO_THINKING: self.max_new_tokens_no_thinking,
        }
        return limits[mode]


@dataclass(frozen=True)
class ServerConfig:
    """How the page is served: address, login, limits, and how requests share the model.

    With `shared_batch` every request's rows join one running batch (a scheduler owns the model),
    so `concurrency` requests are answered together; without it, or on ZeroGPU (where a GPU
    exists only inside one call), requests are answered one at a time.
    """

    host: str = setting(
        "127.0.0.1",
        "address to listen on (0.0.0.0: the local network)",
        aliases=("GRADIO_SERVER_NAME",),
    )
    port: int = setting(7860, "port to listen on", aliases=("GRADIO_SERVER_PORT",))
    auth: str | None = setting(
        None, "user:password required to open the page (the variable keeps it off `ps`)"
    )
    concurrency: int = setting(32, "requests answered at once (sharing one batch)")
    queue_size: int = setting(16, "waiting requests beyond this are refused with a message")
    shared_batch: bool = setting(True, "answer all users' requests in one running batch")
    max_batch_rows: int = setting(64, "most rows in the shared batch (a request is 2-6 rows)")
    max_loaded_policies: int = setting(
        2, "policies kept loaded at once; the least recently used is unloaded"
    )
    max_question_chars: int = setting(2000, "longest question accepted, in characters")
    max_option_chars: int = setting(300, "longest answer option accepted, in characters")
    max_upload_mb: int = setting(200, "largest upload accepted, in megabytes")
    cache_minutes: float = setting(30.0, "uploads are deleted this many minutes after arriving")
    max_batch_cases: int = setting(200, "most cases in one batch (the Batch tab and /batch)")
    max_batch_mb: int = setting(
        1024, "most megabytes of images a batch's ZIP may unpack to (the ZIP's own size is "
        "bounded by max_upload_mb)"
    )  # fmt: skip
    gpu_seconds: int = setting(120, "ZeroGPU time asked for per answer (Hugging Face Spaces only)")


@dataclass(frozen=True)
class AppConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    decoding: DecodingConfig = field(default_factory=DecodingConfig)
    server: ServerConfig = field(default_factory=ServerConfig)
    # The catalogue (`policies:` in the YAML file only): see medr1_demo.policy.catalogue.
    policies: tuple[PolicyEntry, ...] = ()


SECTIONS = {"model": ModelConfig, "decoding": DecodingConfig, "server": ServerConfig}


# ------------------------------------------------------------------------------- the fields


@dataclass(frozen=True)
class Setting:
    """One field of one section, with the names it is known by outside Python."""

    section: str
    name: str
    kind: str  # the type as written in the source: "int", "str | None"
    default: object
    help: str
    choices: tuple | None
    aliases: tuple[str, ...]

    @property
    def variable(self) -> str:
        return ENV_PREFIX + self.name.upper()

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    @property
    def variables(self) -> tuple[str, ...]:
        return (self.variable, *(a for a in self.aliases if not a.startswith("--")))

    @property
    def flags(self) -> tuple[str, ...]:
        return (self.flag, *(a for a in self.aliases if a.startswith("--")))


def all_settings() -> list[Setting]:
    """Every settable field of every section, in declaration order."""
    found = []
    for section, cls in SECTIONS.items():
        for f in dataclasses.fields(cls):
            found.append(
                Setting(
                    section,
                    f.name,
                    getattr(f.type, "__name__", str(f.type)),
                    f.default,
                    f.metadata["help"],
                    f.metadata.get("choices"),
                    f.metadata.get("aliases", ()),
                )
            )
    return found


def _convert(value, item: Setting, source: str):
    """A YAML/env/CLI value -> the field's type, or ConfigError naming where it came from."""
    kind, where = item.kind, f"{item.section}.{item.name}"
    if value is None or (isinstance(value, str) and value.strip().lower() in {"", "none", "null"}):
        if "None" in kind:
            return None
        raise ConfigError(f"{source}: {where} needs a value.")
    try:
        if kind.startswith("int"):
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise ValueError(value)
            converted = int(value)
        elif kind.startswith("float"):
            converted = float(value)
        elif kind.startswith("bool"):
            text = str(value).strip().lower()
            if not isinstance(value, bool) and text not in {"1", "0", "true", "false", "yes",
                                                            "no", "on", "off"}:  # fmt: skip
                raise ValueError(value)
            converted = value if isinstance(value, bool) else text in {"1", "true", "yes", "on"}
        else:
            converted = str(value).strip()
    except (TypeError, ValueError):
        raise ConfigError(f"{source}: {where} = {value!r} is not a valid {kind}.") from None
    if item.choices and converted not in item.choices:
        listed = " or ".join(item.choices)
        raise ConfigError(f"{source}: {where} must be {listed}, not {converted!r}.")
    return converted


# ------------------------------------------------------------------------------ the sources


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
    items = {(s.section, s.name): s for s in all_settings()}
    sections: dict[str, dict] = {}
    for section, values in data.items():
        if section == "policies":
            try:
                sections["policies"] = read_entries(values)
            except CatalogueError as error:
                raise ConfigError(f"{path}: {error}") from None
            continue
        if section not in SECTIONS:
            known = ", ".join([*SECTIONS, "policies"])
            raise ConfigError(f"{path}: unknown section {section!r}; use {known}.")
        values = values or {}
        if not isinstance(values, dict):
            raise ConfigError(f"{path}: section {section!r} must be a mapping of settings.")
        for name, value in values.items():
            if (section, name) not in items:
                known = ", ".join(f.name for f in dataclasses.fields(SECTIONS[section]))
                raise ConfigError(f"{path}: unknown setting {section}.{name}; known: {known}.")
            converted = _convert(value, items[(section, name)], str(path))
            sections.setdefault(section, {})[name] = converted
    return sections


def _env_sections(environ: Mapping[str, str]) -> dict[str, dict]:
    sections: dict[str, dict] = {}
    for item in all_settings():
        # The canonical name wins over an alias when both are set.
        variable = next((v for v in item.variables if environ.get(v, "").strip()), None)
        if variable is not None:
            value = _convert(environ[variable], item, variable)
            sections.setdefault(item.section, {})[item.name] = value
    return sections


def build_parser() -> argparse.ArgumentParser:
    """`python app.py --help`: one flag per setting, grouped by section, with its variable."""
    parser = argparse.ArgumentParser(
        prog="app.py",
        allow_abbrev=False,
        description="Med-R1 clinician demo: thinking vs no-thinking answers on a scan.",
        epilog="Every setting can also be written in configs/app.yaml (section: key) or set by "
        "its environment variable; flags win over variables, variables over the file.",
    )
    parser.add_argument(
        "--config", help="YAML config file (default: configs/app.yaml; MEDR1_CONFIG)"
    )
    groups = {section: parser.add_argument_group(section) for section in SECTIONS}
    for item in all_settings():
        default = "none" if item.default is None else item.default
        help_text = f"{item.help} [{', '.join(item.variables)}; default {default}]"
        options = {"dest": item.name, "default": None, "help": help_text}
        if item.kind == "bool":
            options["action"] = argparse.BooleanOptionalAction
        else:
            options["metavar"] = item.kind.split(" ")[0].upper()
        groups[item.section].add_argument(*item.flags, **options)
    return parser


def _cli_sections(args: argparse.Namespace) -> dict[str, dict]:
    sections: dict[str, dict] = {}
    for item in all_settings():
        value = getattr(args, item.name, None)
        if value is not None:
            converted = _convert(value, item, f"command line {item.flag}")
            sections.setdefault(item.section, {})[item.name] = converted
    return sections


def validate(config: AppConfig) -> AppConfig:
    """Reject settings that cannot work, with the fix in the message."""
    server, decoding = config.server, config.decoding
    if server.auth is not None and ":" not in server.auth:
        raise ConfigError("auth must be written user:password.")
    if not 1 <= server.port <= 65535:
        raise ConfigError(f"port {server.port} is not a valid port number.")
    positive = {
        "server": ("concurrency", "queue_size", "max_batch_rows", "max_loaded_policies",
                   "max_question_chars", "max_option_chars",
                   "max_upload_mb", "cache_minutes", "gpu_seconds", "max_batch_cases",
                   "max_batch_mb"),
        "decoding": ("max_new_tokens_thinking", "max_new_tokens_no_thinking", "temperature"),
    }  # fmt: skip
    for section, names in positive.items():
        for name in names:
            if getattr(getattr(config, section), name) <= 0:
                raise ConfigError(f"{section}.{name} must be greater than 0.")
    if not 0 < decoding.top_p <= 1:
        raise ConfigError("decoding.top_p must be in (0, 1].")
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
    from_file = read_yaml(Path(path)) if path else {}
    policies = from_file.pop("policies", ())
    layers = [from_file, _env_sections(environ), _cli_sections(args)]
    merged: dict[str, dict] = {section: {} for section in SECTIONS}
    for layer in layers:  # later layers win
        for section, values in layer.items():
            merged[section].update(values)
    sections = {section: SECTIONS[section](**merged[section]) for section in SECTIONS}
    return validate(AppConfig(**sections, policies=policies))


def shown(config: AppConfig) -> dict:
    """The configuration as plain data, the password masked."""
    data = dataclasses.asdict(config)
    if data["server"]["auth"]:
        data["server"]["auth"] = data["server"]["auth"].split(":", 1)[0] + ":***"
    return data


if __name__ == "__main__":
    try:
        print(yaml.safe_dump(shown(load_config()), sort_keys=False))
    except ConfigError as error:
        sys.exit(f"Configuration error: {error}")
