"""Device definitions: the shipped files load, and mistakes give errors naming file, key and expectation."""

from __future__ import annotations

import pytest

from firmware_bridge.devices import DEVICES_DIR, list_devices, load_device
from monitor.errors import ConfigError
from monitor.wire import SIGNALS

GOOD = """\
model = "my-gsr"
name = "My GSR"
transport = "lines"
decoder = "lines"
[signals.eda]
unit = "uS"
rate_hz = 4.0
"""


def test_shipped_definitions_are_valid():
    devices = {d.model: d for d in list_devices()}
    assert {"polar-h10", "generic-ble-hrs", "emotibit", "empatica-e4", "diy-lines"} <= set(devices)
    for d in devices.values():
        assert d.path.parent == DEVICES_DIR
        for name, sig in d.signals.items():
            assert sig.unit == SIGNALS[name].unit
            assert (sig.rate_hz is not None) or not sig.regular
    e4 = devices["empatica-e4"]
    assert (e4.signals["eda"].rate_hz, e4.signals["bvp"].rate_hz, e4.signals["acc"].rate_hz) == (4.0, 64.0, 32.0)
    assert e4.signals["acc"].scale == 1 / 64  # the E4 export counts 1/64 g
    emo = devices["emotibit"]
    assert emo.signals["acc"].source == ("AX", "AY", "AZ") and emo.signals["eda"].source == ("EA",)
    assert devices["polar-h10"].signals["ibi"].source == ("rr",)
    # the DIY template declares every signal of the wire (docs/devices.md: "whatever your device prints")
    assert set(devices["diy-lines"].signals) == set(SIGNALS)


def write(tmp_path, text, name="my-gsr"):
    path = tmp_path / f"{name}.toml"
    path.write_text(text)
    return path


def test_a_minimal_definition(tmp_path):
    d = load_device(write(tmp_path, GOOD))
    assert d.model == "my-gsr" and d.signals["eda"].rate_hz == 4.0 and d.battery is False


@pytest.mark.parametrize("spelling", ["\u00b5S", "\u03bcS"])
def test_micro_siemens_may_be_written_as_the_docs_write_it(tmp_path, spelling):
    """The docs write µS and °C; a definition that did was refused ("must be 'uS'")."""
    text = GOOD.replace('unit = "uS"', f'unit = "{spelling}"') + '[signals.temp]\nunit = "\u00b0C"\nrate_hz = 4.0\n'
    d = load_device(write(tmp_path, text))
    assert (d.signals["eda"].unit, d.signals["temp"].unit) == ("uS", "degC")


@pytest.mark.parametrize(
    "text, expected",
    [
        (GOOD.replace('unit = "uS"', 'unit = "mS"'), "'signals.eda.unit' must be 'uS'"),
        (GOOD.replace("rate_hz = 4.0", "rate_hz = -4"), "'signals.eda.rate_hz' must be a number > 0"),
        (GOOD.replace("rate_hz = 4.0", 'rate_hz = "4"'), "'signals.eda.rate_hz'"),
        (GOOD.replace("rate_hz = 4.0\n", ""), "missing required key 'signals.eda.rate_hz'"),
        (GOOD.replace("[signals.eda]", "[signals.gsr]"), "unknown signal [signals.gsr]"),
        (GOOD + "colour = 'red'\n", "[signals.eda]: unknown key(s) colour; known keys: rate_hz, scale, source, unit"),
        ("colour = 'red'\n" + GOOD, "unknown key(s) colour; known keys: battery, ble_names,"),
        (GOOD.replace("rate_hz = 4.0", "rate_hz = true"), "'signals.eda.rate_hz' must be a number > 0"),
        (GOOD.replace("rate_hz = 4.0", "rate_hz = 4.0\nscale = false"), "'signals.eda.scale' must be a non-zero number"),
        (GOOD.replace('name = "My GSR"', "name = 3"), "'name' must be a string, got 3"),
        ('notes = ["a"]\n' + GOOD, "'notes' must be a string, got ['a']"),
        ('ble_names = "My GSR"\n' + GOOD, "'ble_names' must be a list of non-empty strings"),
        (GOOD + "[signals]\nhr = 3\n", "[signals.hr] must be a table of key = value, got 3"),
        (GOOD + "[signals.hr]\n", "'signals.hr.unit' must be 'bpm' (the contract's unit for hr), got None"),
        (GOOD.replace('transport = "lines"', 'transport = "zigbee"'), "'transport' must be one of ble, emotibit, lines, none"),
        (GOOD.replace('model = "my-gsr"', 'model = "other"'), "'model' must be the file name 'my-gsr'"),
        (GOOD.replace('name = "My GSR"\n', ""), "missing required key 'name'"),
        ("battery = 1\n" + GOOD, "'battery' must be true or false, got 1"),
        (GOOD + 'source = "x"\n', "the line protocol names signals themselves"),
        (GOOD + "[signals.hr]\nunit = \"bpm\"\nsmoothing = 3\n", "[signals.hr]: unknown key(s) smoothing; known keys: rate_hz, scale, source, unit"),
        (GOOD.replace('decoder = "lines"', 'decoder = "ble_hrs"').replace('transport = "lines"', 'transport = "ble"'),
         "a Bluetooth heart-rate device sends only hr, ibi, cadence"),
        ("model = [", "not valid TOML"),
        # the bridge reads an EmotiBit with the EmotiBit decoder only: its eda would never arrive
        (GOOD.replace('transport = "lines"', 'transport = "emotibit"'),
         "'decoder' must be \"emotibit\", the decoder of transport \"emotibit\", got 'lines'"),
        ('model = "my-gsr"\nname = "x"\ntransport = "lines"\ndecoder = "lines"\n', "missing [signals"),
    ],
)
def test_errors_name_file_key_and_expectation(tmp_path, text, expected):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_device(path)
    assert expected in str(info.value)
    assert str(path) in str(info.value)


def test_emotibit_acc_needs_three_sources(tmp_path):
    text = ('model = "my-emo"\nname = "x"\ntransport = "emotibit"\ndecoder = "emotibit"\n'
            '[signals.acc]\nunit = "g"\nrate_hz = 25.0\nsource = ["AX", "AY"]\n')
    with pytest.raises(ConfigError, match="3 source"):
        load_device(write(tmp_path, text, "my-emo"))


def test_unknown_model_lists_the_known_ones():
    with pytest.raises(ConfigError, match="known models are .*polar-h10"):
        load_device("garmin-venu-9")


def test_a_missing_folder_of_definitions_is_named_with_what_to_do(tmp_path, monkeypatch):
    """A misspelt ``--devices-dir`` said 'no device definition /x/diy-lines.toml: known models
    are none', and ``ble --scan`` found nothing."""
    from firmware_bridge.devices import list_devices

    for folder in (tmp_path / "nowhere", tmp_path / "a-file"):
        (tmp_path / "a-file").write_text("")
        with pytest.raises(ConfigError, match=f"no folder of device definitions at {folder}.*--devices-dir DIR"):
            load_device("polar-h10", folder)
        with pytest.raises(ConfigError, match=f"no folder of device definitions at {folder}"):
            list_devices(folder)
        monkeypatch.setenv("ANXMON_DEVICES_DIR", str(folder))
        with pytest.raises(ConfigError, match=r"\$ANXMON_DEVICES_DIR \(anxmon's own: .*configs/devices\)"):
            load_device("polar-h10")
