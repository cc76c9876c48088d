"""Reading TOML config files: one way to read a table into a dataclass and check it.

anxmon is configured in TOML everywhere: the monitor's ``configs/default.toml``
(``monitor.config``), the app's ``configs/app.toml`` (``monitor.app``), device definitions
``configs/devices/*.toml`` (``firmware_bridge.devices``) and simulated wearers
``configs/scenarios/*.toml`` (``firmware_bridge.sim_scenario``). Each file is parsed with
``read_toml`` and its tables are checked here, the same way:

* ``read_table(cls, table, file, name)`` reads a table ``[name]`` whose keys are the fields of
  the config dataclass ``cls``. An unknown key is refused with the list of known ones; a value
  must have its field's type (``bool``, ``int``, ``float`` or ``str``, or that or None; an
  integer is accepted for a float and becomes one; true and false are never numbers). A field
  of another type (a tuple, a table of wearers) is the dataclass's to check. A field whose
  default is a non-empty dict is a sub-table ``[name.field]`` with the default's keys, merged
  over the default (``[score.weights]``). The dataclass then checks ranges in its
  ``__post_init__``.
* ``check_table`` and ``check_value`` are the same checks for a table that is not one
  dataclass (a device's ``[signals.<name>]``, a scenario's ``[kinds.<name>]``); ``toml_files``
  lists a folder of such files (device definitions, scenarios), or names the missing folder;
  ``anxmon_configs`` is where anxmon's own folders of them are.

Every wrong value is one shape of ``ConfigError`` (``bad_value``), naming the file, the table
and the key: ``configs/app.toml: [push]: 'attempts' must be an integer, got 'five'``. A
dataclass does not know the file: it says ``push: 'attempts' must be an integer >= 1, got 0``,
and ``read_table`` puts the file and the table in place of ``push``. ``is_number`` and
``is_integer`` are the type checks the dataclasses share.

Example
-------
>>> from monitor.homeassistant import HomeAssistantConfig
>>> read_table(HomeAssistantConfig, {"enabled": True, "expire_after_s": 300}, "app.toml", "homeassistant")
HomeAssistantConfig(enabled=True, discovery_prefix='homeassistant', expire_after_s=300)
>>> read_table(HomeAssistantConfig, {"expire_after_s": 1.5}, "app.toml", "homeassistant")
Traceback (most recent call last):
...
monitor.errors.ConfigError: app.toml: [homeassistant]: 'expire_after_s' must be an integer, got 1.5
"""

from __future__ import annotations

import dataclasses
import math
import tomllib
import types
import typing
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, TypeVar

from monitor.errors import ConfigError

T = TypeVar("T")
EXPECTED = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}


def is_number(value: Any) -> bool:
    """A finite int or float; true and false are not numbers."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def is_integer(value: Any) -> bool:
    """An int; true and false are not integers."""
    return isinstance(value, int) and not isinstance(value, bool)


def bad_value(where: str, key: str, expected: str, value: Any) -> ConfigError:
    """The error of a wrong value: ``{where}: '{key}' must be {expected}, got {value!r}``."""
    return ConfigError(f"{where}: {key!r} must be {expected}, got {value!r}")


def read_toml(path: str | Path) -> dict:
    """Parse a TOML file; a missing or malformed file is a ``ConfigError`` naming it."""
    try:
        return tomllib.loads(Path(path).read_text())
    except FileNotFoundError:  # a relative path: where it was looked for (a service's working directory)
        where = "" if Path(path).is_absolute() else f" (looked for {Path(path).absolute()})"
        raise ConfigError(f"config file {path} does not exist{where}") from None
    except IsADirectoryError:
        raise ConfigError(f"config file {path} is a folder: give the TOML file itself") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None


def toml_files(folder: str | Path, what: str, choose: str) -> list[Path]:
    """The ``*.toml`` files in ``folder``, sorted; a ``ConfigError`` when it is not a folder,
    naming it, ``what`` it should hold and how to ``choose`` another.

    >>> toml_files("/nonexistent", "device definitions", "--devices-dir DIR")
    Traceback (most recent call last):
    ...
    monitor.errors.ConfigError: no folder of device definitions at /nonexistent: give one with --devices-dir DIR
    """
    if not Path(folder).is_dir():
        raise ConfigError(f"no folder of {what} at {folder}{' (a file)' if Path(folder).exists() else ''}: "
                          f"give one with {choose}")
    return sorted(Path(folder).glob("*.toml"))


def anxmon_configs(name: str) -> Path:
    """anxmon's own ``configs/{name}``: the checkout's top-level ``configs`` folder, or the copy an
    installed wheel carries as ``monitor/configs`` (``pyproject.toml`` puts it there).

    >>> anxmon_configs("devices").parts[-2:]
    ('configs', 'devices')
    """
    package = Path(__file__).resolve().parent
    installed = package / "configs"
    return (installed if installed.is_dir() else package.parent / "configs") / name


def check_table(table: Any, known: Iterable[str], where: str, what: str = "key") -> Mapping[str, Any]:
    """``table`` must be a TOML table of ``known`` keys (``what``: "key" or "section"); returns it."""
    if not isinstance(table, Mapping):
        raise ConfigError(f"{where} must be a table of key = value, got {table!r}")
    known = sorted(known)
    unknown = sorted(set(table) - set(known))
    if unknown:
        raise ConfigError(f"{where}: unknown {what}(s) {', '.join(unknown)}; known {what}s: {', '.join(known)}")
    return table


def check_value(value: Any, kind: type, where: str, key: str) -> Any:
    """``value`` of ``key`` as a ``kind`` (bool, int, float or str): an int is a float, a bool never a number."""
    if kind is float and is_integer(value):
        return float(value)
    if isinstance(value, kind) and not (kind is int and isinstance(value, bool)):
        return value
    raise bad_value(where, key, EXPECTED[kind], value)


def read_table(cls: type[T], table: Any, file: str | Path, name: str) -> T:
    """Read the table ``[name]`` of ``file`` into the config dataclass ``cls`` (module docstring)."""
    where = f"{file}: [{name}]"
    fields = {f.name: f for f in dataclasses.fields(cls)}
    check_table(table, fields, where)
    hints = typing.get_type_hints(cls)
    values = {}
    for key, value in table.items():
        default = fields[key].default_factory() if callable(fields[key].default_factory) else fields[key].default
        if isinstance(default, dict) and default:  # a sub-table of known keys, e.g. [score.weights]
            sub = f"{file}: [{name}.{key}]"
            check_table(value, default, sub)
            values[key] = {**default, **{k: check_value(v, _scalar(type(default[k])), sub, k) for k, v in value.items()}}
        else:
            kind = _scalar(hints[key])
            values[key] = value if kind is None else check_value(value, kind, where, key)
    try:
        return cls(**values)
    except ConfigError as exc:  # "core: 'tick_s' must be ...": the dataclass names its section, not the file
        raise ConfigError(f"{where}: {str(exc).split(': ', 1)[-1]}") from exc


def _scalar(hint: Any) -> type | None:
    """bool, int, float or str for a field of that type (or of that type or None); else None."""
    args = typing.get_args(hint) if typing.get_origin(hint) in (typing.Union, types.UnionType) else (hint,)
    args = [a for a in args if a is not type(None)]
    return args[0] if len(args) == 1 and args[0] in EXPECTED else None
