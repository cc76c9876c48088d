"""Configuration: TOML files read with ``tomllib``, checked once against one schema.

The schema is the set of config dataclasses, one per section; their docstrings document every
key and their defaults fill what a file leaves out. Each section is read with
``monitor.toml_tables.read_table``, as every TOML file of anxmon is: a wrong section, key or
value is a ``ConfigError`` naming the file, the section, the key and what was expected.
``configs/default.toml`` lists every key with its default.

Sections: ``[core]`` (``CoreConfig``: ticks, windows, thresholds of the signal core),
``[score]`` (``ScoreConfig``: baseline and score; ``[score.weights]``, ``[score.floors]``),
``[policy]`` (``PolicyConfig``: when to send a check-in).

Example
-------
>>> cfg = load_config(None, overrides=["policy.cooldown_s=600", "score.weights.TEMP_Mean=0"])
>>> cfg.policy.cooldown_s, cfg.score.weights["TEMP_Mean"]
(600.0, 0.0)
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from monitor.core.pipeline import CoreConfig
from monitor.core.policy import PolicyConfig
from monitor.core.score import ScoreConfig
from monitor.errors import ConfigError
from monitor.toml_tables import check_table, read_table, read_toml


@dataclass(frozen=True)
class Config:
    """The whole configuration of a wearer's monitor."""

    core: CoreConfig = field(default_factory=CoreConfig)
    score: ScoreConfig = field(default_factory=ScoreConfig)
    policy: PolicyConfig = field(default_factory=PolicyConfig)


_SECTIONS = {"core": CoreConfig, "score": ScoreConfig, "policy": PolicyConfig}  # [section] -> its table


def _section_of(key: str) -> str | None:
    """The section whose table has ``key`` (``"cooldown_s"`` -> ``"policy"``), else None."""
    return next((name for name, table in _SECTIONS.items() if key in table.__dataclass_fields__), None)


def config_from_mapping(data: Mapping[str, Any], source: str = "<config>") -> Config:
    """Build a ``Config`` from parsed TOML, filling defaults; errors name ``source``."""
    for key in data:  # a key above every [section] header: not a section of its own
        if key not in _SECTIONS and (section := _section_of(key)):
            raise ConfigError(f"{source}: '{key}' is a key of the [{section}] section: put it below a [{section}] line")
    check_table(data, tuple(_SECTIONS), source, what="section")
    return Config(**{name: read_table(table, data.get(name, {}), source, name) for name, table in _SECTIONS.items()})


def _parse_override(text: str) -> tuple[list[str], Any]:
    if "=" not in text:
        raise ConfigError(f"override {text!r}: expected section.key=value, e.g. policy.cooldown_s=600")
    path, raw = text.split("=", 1)
    keys = path.strip().split(".")
    if len(keys) < 2 and keys[0] not in _SECTIONS:  # a key without its section: say which has it
        section = _section_of(keys[0])
        hint = f"{section}.{keys[0]}={raw}" if section else "policy.cooldown_s=600"
        raise ConfigError(f"override {text!r}: expected section.key=value, e.g. {hint}")
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw  # a bare word: a string
    return keys, value


def load_config(path: str | Path | None, overrides: list[str] = ()) -> Config:
    """Read a TOML config (None: defaults only) and apply ``section.key=value`` overrides."""
    data: dict = read_toml(path) if path is not None else {}
    source = "defaults" if path is None else str(path)
    for text in overrides:
        keys, value = _parse_override(text)
        node = data
        for key in keys[:-1]:
            node = node.setdefault(key, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {text!r}: {key} is not a section")
        node[keys[-1]] = value
        source += f" + {text}"  # (an error may come from an override: it must not blame the file)
    return config_from_mapping(data, source)
