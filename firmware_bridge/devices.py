"""Device definitions: which signals, units and nominal rates a device model sends.

A definition is a TOML file in ``configs/devices/`` (one per model, named after the model),
read with ``monitor.toml_tables`` and validated here once: a wrong key or value raises
``ConfigError`` naming the file, the key and what was expected. (It is not read with
``read_table``: its keys do not map one to one onto ``DeviceDefinition``, whose signals and
defaults depend on the decoder.) Converters are data, like Zigbee2MQTT's:
the decoder turns bytes into named sources, the definition maps sources to canonical
signals (``monitor.wire.SIGNALS``) with a scale to the canonical unit.

Schema (every key)::

    model = "polar-h10"          # required, equals the file name without .toml
    name = "Polar H10"           # required, human name
    transport = "ble"            # required: ble | emotibit | lines | none (recordings only)
    decoder = "ble_hrs"          # required, the transport's: ble_hrs | emotibit | lines | none
    battery = true               # optional (false): the device reports its battery level
    sensor_contact = true        # optional (false): the device reports skin contact
    ble_names = ["Polar H10"]    # optional: advertised name prefixes that identify the model
    pmd_acc_hz = 25              # optional (ble_hrs only): also stream the accelerometer over Polar's
                                 # PMD service at this rate (25, 50, 100 or 200 Hz); needs [signals.acc]
                                 # with the same rate_hz (source "pmd_acc")
    reference = "..."            # optional: where the protocol is documented
    notes = "..."                # optional

    [signals.eda]                # one table per canonical signal (bvp ecg eda temp acc hr ibi)
    unit = "uS"                  # required, must be the contract's unit for the signal ("µS", "°C" too)
    rate_hz = 4.0                # nominal rate in Hz: required for regular signals
    source = "EA"                # decoder source name(s); defaults per decoder (see below)
    scale = 1.0                  # optional multiplier from the source's unit to ``unit``

Decoder sources: ``ble_hrs``: ``hr`` and ``rr`` of the Heart Rate Measurement, ``rsc_cadence`` for
``cadence`` (the Running Speed and Cadence service, when the device offers it), and ``pmd_acc``
for ``acc`` when ``pmd_acc_hz`` is set; ``emotibit``: type tags (``acc`` takes three, x y z); ``lines``: the signal's own name
(the default).

Example
-------
>>> d = load_device("polar-h10")
>>> sorted(d.signals), d.signals["hr"].unit, d.transport, d.pmd_acc_hz
(['acc', 'hr', 'ibi'], 'bpm', 'ble', 25)
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from monitor.errors import ConfigError
from monitor.toml_tables import anxmon_configs, bad_value, check_table, check_value, is_number, read_toml, toml_files
from monitor.wire import ID_PATTERN, MAX_SAMPLING_RATE_HZ, SIGNALS

DEVICES_DIR = anxmon_configs("devices")
# each transport runs one decoder (firmware_bridge.transports, firmware_bridge.ble)
TRANSPORT_DECODER = {"ble": "ble_hrs", "emotibit": "emotibit", "lines": "lines", "none": "none"}
TRANSPORTS = tuple(TRANSPORT_DECODER)
DECODERS = tuple(TRANSPORT_DECODER.values())
# what a Bluetooth heart-rate device can send: Heart Rate Measurement (hr, rr), Running Speed and Cadence
BLE_HRS_SOURCES = {"hr": "hr", "ibi": "rr", "cadence": "rsc_cadence"}
PMD_ACC_SOURCE = "pmd_acc"  # acc of a ble_hrs device that also streams Polar PMD (pmd_acc_hz)
PMD_ACC_RATES_HZ = (25, 50, 100, 200)  # what a Polar H10 offers (firmware_bridge.polar_pmd)

_TOP_KEYS = {"model", "name", "transport", "decoder", "battery", "sensor_contact", "ble_names", "pmd_acc_hz",
             "reference", "notes", "signals"}
_SIGNAL_KEYS = {"unit", "rate_hz", "source", "scale"}
# the contract's ASCII units as people (and our docs) write them: micro sign or Greek mu, degree sign
UNIT_SPELLINGS = {"\u00b5S": "uS", "\u03bcS": "uS", "\u00b0C": "degC"}


@dataclass(frozen=True)
class SignalDef:
    """One canonical signal of a device: unit, nominal rate (Hz, None if irregular), sources."""

    signal: str
    unit: str
    rate_hz: float | None
    source: tuple[str, ...]
    scale: float = 1.0

    @property
    def regular(self) -> bool:
        return SIGNALS[self.signal].regular


@dataclass(frozen=True)
class DeviceDefinition:
    """A validated device definition (see the module docstring for the schema)."""

    model: str
    name: str
    transport: str
    decoder: str
    signals: dict[str, SignalDef]
    battery: bool = False
    sensor_contact: bool = False
    ble_names: tuple[str, ...] = ()
    pmd_acc_hz: int | None = None  # stream the accelerometer over Polar PMD at this rate (Hz)
    reference: str = ""
    notes: str = ""
    path: Path | None = None

    def source_map(self) -> dict[str, tuple[str, SignalDef]]:
        """Map each decoder source name to (signal, definition); ``acc`` sources map per axis."""
        out: dict[str, tuple[str, SignalDef]] = {}
        for sig in self.signals.values():
            for src in sig.source:
                out[src] = (sig.signal, sig)
        return out


def devices_dir() -> Path:
    """Where definitions are read from: ``$ANXMON_DEVICES_DIR`` or anxmon's own ``configs/devices``."""
    env = os.environ.get("ANXMON_DEVICES_DIR")
    return Path(env) if env else DEVICES_DIR


def _definition_files(directory: str | Path | None) -> list[Path]:
    """The definitions in ``directory`` (None: ``devices_dir()``); an error naming a folder that
    is not there (a misspelt ``--devices-dir``)."""
    return toml_files(directory or devices_dir(), "device definitions",
                      f"--devices-dir DIR or $ANXMON_DEVICES_DIR (anxmon's own: {DEVICES_DIR})")


def load_device(name_or_path: str | Path, directory: str | Path | None = None) -> DeviceDefinition:
    """Load and validate a definition by model name (``"polar-h10"``) or by path to a TOML file."""
    path = Path(name_or_path)
    if path.suffix != ".toml":
        path = Path(directory or devices_dir()) / f"{name_or_path}.toml"
        if not path.exists():
            known = ", ".join(d.stem for d in _definition_files(directory))
            raise ConfigError(f"no device definition {path}: known models are {known or 'none'}")
    return parse_device(read_toml(path), path)


def list_devices(directory: str | Path | None = None) -> list[DeviceDefinition]:
    """Every definition in the directory, validated, sorted by model."""
    return [load_device(p) for p in _definition_files(directory)]


def parse_device(raw: dict, path: Path | str = "<definition>") -> DeviceDefinition:
    """Validate an already-parsed TOML mapping; ``path`` is used in error messages."""
    path = Path(path)
    where = str(path)

    check_table(raw, _TOP_KEYS, where)
    for key in ("model", "name", "transport", "decoder"):
        if key not in raw:
            raise ConfigError(f"{where}: missing required key {key!r}")
        check_value(raw[key], str, where, key)
    model = raw["model"]
    if not ID_PATTERN.fullmatch(model):
        raise bad_value(where, "model", "1-64 characters of a-z, 0-9, _ or -", model)
    if path.suffix == ".toml" and path.stem != model:
        raise bad_value(where, "model", f"the file name {path.stem!r}", model)
    if raw["transport"] not in TRANSPORTS:
        raise bad_value(where, "transport", "one of " + ", ".join(TRANSPORTS), raw["transport"])
    decoder = raw["decoder"]
    if decoder not in DECODERS:
        raise bad_value(where, "decoder", "one of " + ", ".join(DECODERS), decoder)
    if decoder != TRANSPORT_DECODER[raw["transport"]]:  # (else its signals would silently never arrive)
        raise bad_value(where, "decoder", f'"{TRANSPORT_DECODER[raw["transport"]]}", the decoder of transport'
                        f' "{raw["transport"]}"', decoder)
    flags = {key: check_value(raw.get(key, False), bool, where, key) for key in ("battery", "sensor_contact")}
    texts = {key: check_value(raw.get(key, ""), str, where, key) for key in ("reference", "notes")}
    names = raw.get("ble_names", [])
    if not (isinstance(names, list) and all(isinstance(n, str) and n for n in names)):
        raise bad_value(where, "ble_names", "a list of non-empty strings", names)

    pmd_acc_hz = raw.get("pmd_acc_hz")
    if pmd_acc_hz is not None:
        if type(pmd_acc_hz) is not int or pmd_acc_hz not in PMD_ACC_RATES_HZ:
            rates = ", ".join(map(str, PMD_ACC_RATES_HZ))
            raise bad_value(where, "pmd_acc_hz", f"one of {rates} (Hz, an integer)", pmd_acc_hz)
        if decoder != "ble_hrs" or raw["transport"] != "ble":
            raise bad_value(where, "pmd_acc_hz", 'set only with transport "ble" and decoder "ble_hrs" (a Polar strap)',
                            pmd_acc_hz)

    tables = raw.get("signals")
    if not isinstance(tables, dict) or not tables:
        raise ConfigError(f"{where}: missing [signals.<name>] tables: a device sends at least one signal")
    signals = {name: _parse_signal(name, table, decoder, where, pmd_acc_hz) for name, table in tables.items()}
    if pmd_acc_hz is not None:
        if "acc" not in signals:
            raise ConfigError(f"{where}: pmd_acc_hz = {pmd_acc_hz} needs a [signals.acc] table (unit \"g\", rate_hz = {pmd_acc_hz})")
        if signals["acc"].rate_hz != pmd_acc_hz:
            raise bad_value(where, "signals.acc.rate_hz", f"{pmd_acc_hz} (the pmd_acc_hz the strap is asked for)",
                            signals["acc"].rate_hz)
    return DeviceDefinition(
        model=model,
        name=raw["name"],
        transport=raw["transport"],
        decoder=decoder,
        signals=signals,
        ble_names=tuple(names),
        pmd_acc_hz=pmd_acc_hz,
        path=path,
        **flags,
        **texts,
    )


def _parse_signal(name: str, table, decoder: str, where: str, pmd_acc_hz: int | None = None) -> SignalDef:
    key = f"signals.{name}"
    if name not in SIGNALS:
        raise ConfigError(f"{where}: unknown signal [{key}]: expected one of {', '.join(SIGNALS)}")
    check_table(table, _SIGNAL_KEYS, f"{where}: [{key}]")
    spec = SIGNALS[name]
    unit = UNIT_SPELLINGS.get(table.get("unit"), table.get("unit"))
    if unit != spec.unit:
        raise bad_value(where, f"{key}.unit", f"{spec.unit!r} (the contract's unit for {name})", unit)
    rate = table.get("rate_hz")
    if rate is None:
        if spec.regular:
            raise ConfigError(f"{where}: missing required key '{key}.rate_hz': {name} is a regular signal")
    elif not is_number(rate) or not 0 < rate <= MAX_SAMPLING_RATE_HZ:
        raise bad_value(where, f"{key}.rate_hz", f"a number > 0 and <= {MAX_SAMPLING_RATE_HZ:g} (Hz)", rate)
    scale = table.get("scale", 1.0)
    if not is_number(scale) or scale == 0:
        raise bad_value(where, f"{key}.scale", "a non-zero number", scale)

    axes = spec.axes
    pmd_acc = decoder == "ble_hrs" and name == "acc" and pmd_acc_hz is not None
    if decoder == "ble_hrs" and name not in BLE_HRS_SOURCES and not pmd_acc:
        extra = "; acc also needs pmd_acc_hz (a Polar strap's PMD accelerometer)" if name == "acc" else ""
        raise ConfigError(f"{where}: [{key}]: a Bluetooth heart-rate device sends only {', '.join(BLE_HRS_SOURCES)}{extra}")
    source = table.get("source")
    if source is None:
        if pmd_acc:
            source = PMD_ACC_SOURCE
        elif decoder == "ble_hrs" and name in BLE_HRS_SOURCES:
            source = BLE_HRS_SOURCES[name]
        elif decoder in ("lines", "none"):
            source = name
        else:
            raise ConfigError(f"{where}: missing key '{key}.source': the {decoder} decoder needs to know where {name} comes from")
    sources = (source,) if isinstance(source, str) else source
    if not (isinstance(sources, (list, tuple)) and sources and all(isinstance(s, str) and s for s in sources)):
        raise bad_value(where, f"{key}.source", "a string or a list of strings", source)
    n_sources = axes if decoder == "emotibit" else 1  # EmotiBit sends each axis under its own tag
    if len(sources) != n_sources:
        raise bad_value(where, f"{key}.source", f"{n_sources} source(s) ({'x, y, z' if n_sources == 3 else 'one'})", source)
    if pmd_acc and tuple(sources) != (PMD_ACC_SOURCE,):
        raise bad_value(where, f"{key}.source", f"{PMD_ACC_SOURCE!r} (the strap's PMD accelerometer)", source)
    if decoder == "ble_hrs" and not pmd_acc and (name not in BLE_HRS_SOURCES or tuple(sources) != (BLE_HRS_SOURCES[name],)):
        allowed = ", ".join(f"{s} <- {src!r}" for s, src in BLE_HRS_SOURCES.items())
        raise bad_value(where, f"{key}.source", f"what a Bluetooth heart-rate device sends ({allowed})", source)
    if decoder == "lines" and tuple(sources) != (name,):
        raise bad_value(where, f"{key}.source", f"{name!r}: the line protocol names signals themselves", source)
    return SignalDef(
        signal=name,
        unit=unit,
        rate_hz=None if rate is None else float(rate),
        source=tuple(sources),
        scale=float(scale),
    )
