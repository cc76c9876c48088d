"""Configuration: the shipped default file, and errors that name file, key and expectation."""

from __future__ import annotations

from pathlib import Path

import pytest

from monitor.config import Config, load_config
from monitor.errors import ConfigError

DEFAULT = Path(__file__).resolve().parents[1] / "configs" / "default.toml"


def test_the_shipped_default_file_lists_exactly_the_built_in_defaults():
    assert load_config(DEFAULT) == Config()


def test_every_key_of_the_schema_is_in_the_default_file():
    import dataclasses

    text = DEFAULT.read_text()
    for section in ("core", "score", "policy"):
        for f in dataclasses.fields(getattr(Config(), section)):
            present = f"{f.name} =" in text or f"[{section}.{f.name}]" in text
            assert present, f"{section}.{f.name} is missing from configs/default.toml"


@pytest.mark.parametrize(
    "text, fragment",
    [
        ("[coer]\ntick_s = 5", "unknown section(s) coer"),
        ("[core]\ntick = 5", "unknown key 'tick'"),
        ("[core]\ntick_s = 'five'", "[core].tick_s: expected a number"),
        ("[score.weights]\nHRV = 1", "unknown indicator 'HRV'"),
        ("[policy]\ncooldown = 1", "cooldown"),
        ("[policy]\ntimezone = 'Mars/Olympus'", "timezone"),
        ("[core\n", "not valid TOML"),
    ],
)
def test_wrong_files_name_the_file_the_key_and_the_expectation(tmp_path, text, fragment):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert fragment in str(err.value) and str(path) in str(err.value)


def test_overrides_change_one_key_and_keep_the_rest():
    cfg = load_config(DEFAULT, ["policy.timezone=Europe/Berlin", "core.window_s=120"])
    assert cfg.policy.timezone == "Europe/Berlin" and cfg.core.window_s == 120.0
    assert cfg.policy.cooldown_s == Config().policy.cooldown_s


def test_a_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.toml")
