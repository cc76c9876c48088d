"""The one exception hierarchy of anxmon.

Every error a user can cause carries a message that says what was wrong and, where it helps,
what was expected, so the user can act on it.

Example
-------
>>> try:
...     raise WireError("field 'fs' must be a number, got 'abc'")
... except AnxmonError as exc:
...     print(exc)
field 'fs' must be a number, got 'abc'
"""

from pathlib import Path


def install_hint(extra: str, package: str) -> str:
    """How to install what an optional extra brings: anxmon is not on PyPI, so
    ``pip install 'anxmon[extra]'`` finds nothing (or someone else's package); the extra is
    installed from the checkout, or the package alone.

    >>> install_hint("ble", "bleak")
    "pip install bleak (anxmon's optional extra ble; in its checkout: pip install -e '.[ble]')"
    """
    return f"pip install {package} (anxmon's optional extra {extra}; in its checkout: pip install -e '.[{extra}]')"


class AnxmonError(Exception):
    """Base class of every error anxmon raises on purpose."""


class WireError(AnxmonError, ValueError):
    """A topic or payload that breaks the wire contract (see ``monitor.wire``)."""


class TopicError(WireError):
    """A topic that is not one of the contract's topics, or an id outside ``[a-z0-9_-]{1,64}``."""


class PayloadError(WireError):
    """A payload that is not valid JSON v1: bytes, JSON, version, fields or their types."""


class ValueRangeError(WireError):
    """Sample values or timestamps outside what the contract (or physiology) allows."""


class ConfigError(AnxmonError):
    """A configuration file, key or value that is wrong; the message names file, key, expectation."""


class InputFormatError(AnxmonError):
    """A recording on disk that is not in any format anxmon reads, or is damaged."""


def not_a_file(what: str, path) -> InputFormatError:
    """The error of an input file (``--labels``, ``--markers``) that is missing, a folder, or not a
    regular file (a pipe such as ``<(...)`` or a device: the file is read twice, for its rows and
    for its sha256 in the run's provenance).

    >>> print(not_a_file("labels file", "."))
    labels file . is a folder: give the CSV file itself
    >>> print(not_a_file("markers file", "/dev/null"))
    markers file /dev/null is not a regular file (a pipe or a device?): give the CSV file itself
    """
    if Path(path).is_dir():
        return InputFormatError(f"{what} {path} is a folder: give the CSV file itself")
    if Path(path).exists():
        return InputFormatError(f"{what} {path} is not a regular file (a pipe or a device?): give the CSV file itself")
    return InputFormatError(f"{what} {path} does not exist")
