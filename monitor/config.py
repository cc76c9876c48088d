"""Configuration: TOML files read with ``tomllib``, checked once against one schema.

The schema is the set of config dataclasses, one per section; their docstrings document every
key and their defaults fill what a file leaves out. A wrong section, key or value is a
``ConfigError`` naming the file, the key and what was expected. ``configs/default.toml`` lists
every key with its default.

Sections: ``[core]`` (``CoreConfig``: ticks, windows, thresholds of the signal core),
``[score]`` (``ScoreConfig``: baseline and score; ``[score.weights]``, ``[score.floors]``),
``[policy]`` (``PolicyConfig``: when to send a check-in).

Example
-------
>>> cfg = load_config(None, overrides=["policy.cooldown_s=600", "score.weights.TEMP_Mean=0"])
>>> cfg.policy.cooldown_s, cfg.score.weights["TEMP_Mean"]
(600, 0.0)
"""

from __future__ import annotations

import dataclasses
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from monitor.core.pipeline import CoreConfig
from monitor.core.policy import PolicyConfig
from monitor.core.score import INDICATORS, ScoreConfig
from monitor.errors import ConfigError


@dataclass(frozen=True)
class Config:
    """The whole configuration of a wearer's monitor."""

    core: CoreConfig = field(default_factory=CoreConfig)
    score: ScoreConfig = field(default_factory=ScoreConfig)
    policy: PolicyConfig = field(default_factory=PolicyConfig)


def _coerce(value: Any, default: Any, where: str) -> Any:
    """Check ``value`` against the type of the default it replaces."""
    if isinstance(default, bool):
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{where}: expected true or false, got {value!r}")
    if isinstance(default, (int, float)) or default is None:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return type(default)(value) if default is not None else float(value)
        raise ConfigError(f"{where}: expected a number, got {value!r}")
    if isinstance(default, str):
        if isinstance(value, str):
            return value
        raise ConfigError(f"{where}: expected a string, got {value!r}")
    return value


def _section(cls, values: Mapping[str, Any], where: str):
    known = {f.name: f for f in dataclasses.fields(cls)}
    defaults = cls()
    kwargs = {}
    for key, value in values.items():
        if key not in known:
            raise ConfigError(f"{where}: unknown key {key!r}; expected one of {', '.join(sorted(known))}")
        default = getattr(defaults, key)
        if isinstance(default, dict):
            if not isinstance(value, Mapping):
                raise ConfigError(f"{where}.{key}: expected a table of indicator = number")
            merged = dict(default)
            for name, number in value.items():
                if name not in INDICATORS:
                    raise ConfigError(
                        f"{where}.{key}: unknown indicator {name!r}; expected one of {', '.join(INDICATORS)}"
                    )
                merged[name] = _coerce(number, 0.0, f"{where}.{key}.{name}")
            kwargs[key] = merged
        else:
            kwargs[key] = _coerce(value, default, f"{where}.{key}")
    try:
        return cls(**kwargs)  # the dataclass checks the ranges of its values
    except ConfigError as exc:
        raise ConfigError(f"{where}: {str(exc).split(': ', 1)[-1]}") from exc


def config_from_mapping(data: Mapping[str, Any], source: str = "<config>") -> Config:
    """Build a ``Config`` from parsed TOML, filling defaults; errors name ``source``."""
    unknown = set(data) - {"core", "score", "policy"}
    if unknown:
        raise ConfigError(f"{source}: unknown section(s) {', '.join(sorted(unknown))}; expected core, score, policy")
    for name, table in data.items():
        if not isinstance(table, Mapping):
            raise ConfigError(f"{source}: [{name}] must be a table of key = value, got {table!r}")
    core = _section(CoreConfig, data.get("core", {}), f"{source}: [core]")
    score = _section(ScoreConfig, data.get("score", {}), f"{source}: [score]")
    policy = PolicyConfig.from_mapping(data.get("policy", {}), source=f"{source}: [policy]")
    return Config(core, score, policy)


def _parse_override(text: str) -> tuple[list[str], Any]:
    if "=" not in text:
        raise ConfigError(f"override {text!r}: expected section.key=value, e.g. policy.cooldown_s=600")
    path, raw = text.split("=", 1)
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw  # a bare word: a string
    return path.strip().split("."), value


def read_toml(path: str | Path) -> dict:
    """Parse a TOML file; a missing or malformed file is a ``ConfigError`` naming it."""
    try:
        return tomllib.loads(Path(path).read_text())
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None


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
        source += f" + {text}" if path is None else ""
    return config_from_mapping(data, source)
