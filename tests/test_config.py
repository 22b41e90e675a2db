"""The app's settings: every field settable from YAML, environment and flags, one precedence.

Run: `.venv/bin/python -m pytest tests/test_config.py -q`. The fields of `medr1_demo.config` are
the only place a setting is written; these tests walk all of them, so a new field is covered.
"""

import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest

from medr1_demo.config import SECTIONS, ConfigError, all_settings, load_config

ROOT = Path(__file__).resolve().parents[1]


def other_value(item):
    """A valid value that differs from the field's default, as text and as expected."""
    if item.choices:
        value = next(c for c in item.choices if c != item.default)
        return value, value
    special = {"host": "0.0.0.0", "auth": "clinic:s3cret", "port": 7011, "top_p": 0.5}
    if item.name in special:
        return str(special[item.name]), special[item.name]
    if item.kind == "bool":  # the opposite of the default, so broken wiring cannot pass
        return ("false", False) if item.default else ("true", True)
    if item.kind.startswith("int"):
        value = (item.default or 0) + 3
        return str(value), value
    if item.kind.startswith("float"):
        return str(item.default / 2), item.default / 2
    return f"value-of-{item.name}", f"value-of-{item.name}"


def test_every_section_field_is_a_setting_with_one_unique_name():
    fields = [f.name for cls in SECTIONS.values() for f in dataclasses.fields(cls)]
    names = [s.name for s in all_settings()]
    assert names == fields and len(set(names)) == len(names)  # one flag/variable per field
    assert all(s.help for s in all_settings())


@pytest.mark.parametrize("item", all_settings(), ids=lambda s: f"{s.section}.{s.name}")
def test_every_setting_is_read_from_yaml_environment_and_flag(tmp_path, item):
    text, expected = other_value(item)
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    yaml_file = tmp_path / "app.yaml"
    yaml_file.write_text(f"{item.section}:\n  {item.name}: '{text}'\n")

    def read(config):
        return getattr(getattr(config, item.section), item.name)

    assert read(load_config([], {"MEDR1_CONFIG": str(empty)})) == item.default
    assert read(load_config(["--config", str(yaml_file)], {})) == expected
    assert read(load_config([], {"MEDR1_CONFIG": str(empty), item.variable: text})) == expected
    if item.kind == "bool":  # --name sets it, --no-name clears it
        flag = [item.flag if expected else item.flag.replace("--", "--no-", 1)]
    else:
        flag = [item.flag, text]
    assert read(load_config(["--config", str(empty), *flag], {})) == expected


def test_help_lists_every_flag_and_variable():
    out = subprocess.run(
        [sys.executable, "app.py", "--help"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout
    for item in all_settings():
        assert item.flag in out and item.variable in out, item.name


def test_older_names_still_work(tmp_path):
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    env = {"MEDR1_CONFIG": str(empty), "MEDR1_MAX_NEW_TOKENS": "99", "GRADIO_SERVER_NAME": "::"}
    config = load_config([], env)
    assert (config.decoding.max_new_tokens_thinking, config.server.host) == (99, "::")
    config = load_config(["--max-new-tokens", "77"], {**env, "MEDR1_MAX_NEW_TOKENS_THINKING": "88"})
    assert config.decoding.max_new_tokens_thinking == 77  # the flag wins over both variables
    canonical = load_config([], {**env, "MEDR1_MAX_NEW_TOKENS_THINKING": "88"})
    assert canonical.decoding.max_new_tokens_thinking == 88  # the canonical name over its alias


def test_config_precedence_cli_over_env_over_yaml(tmp_path):
    yaml_file = tmp_path / "app.yaml"
    yaml_file.write_text("model:\n  model: from-yaml\n  subfolder: VQA_CT\nserver:\n  port: 7001\n")
    env = {"MEDR1_CONFIG": str(yaml_file), "MEDR1_MODEL": "from-env", "GRADIO_SERVER_PORT": "7002"}
    config = load_config(["--model", "from-cli"], env)
    assert (config.model.model, config.model.subfolder, config.server.port) == (
        "from-cli",
        "VQA_CT",
        7002,
    )
    config = load_config([], {"MEDR1_CONFIG": str(yaml_file)})
    assert (config.model.model, config.server.port, config.server.host) == (
        "from-yaml",
        7001,
        "127.0.0.1",
    )


@pytest.mark.parametrize(
    "yaml_text, env, expected",
    [
        ("model:\n  modle: x\n", {}, "unknown setting model.modle"),  # a typo in a key
        ("server:\n  port: eighty\n", {}, "is not a valid int"),  # a value of the wrong type
        ("", {"MEDR1_QUANTIZATION": "3bit"}, "4bit or 8bit"),  # an unknown quantization
        ("", {"MEDR1_AUTH": "nocolon"}, "user:password"),  # auth without a password
        ("", {"MEDR1_DO_SAMPLE": "perhaps"}, "is not a valid bool"),  # not a yes or no
        ("", {"MEDR1_PORT": "7000.5"}, "is not a valid int"),  # a fraction where a count belongs
    ],
)
def test_config_errors_are_plain(tmp_path, yaml_text, env, expected):
    yaml_file = tmp_path / "app.yaml"
    yaml_file.write_text(yaml_text)
    with pytest.raises(ConfigError, match=expected):
        load_config([], {"MEDR1_CONFIG": str(yaml_file), **env})


@pytest.mark.parametrize("flag", ["--temperature=0", "--top-p=1.5", "--queue-size=0"])
def test_impossible_values_are_refused_plainly(flag):
    with pytest.raises(ConfigError, match="must be"):
        load_config([flag], {})
