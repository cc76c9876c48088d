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


@pytest.mark.parametrize(
    "text, expected",
    [
        (GOOD.replace('unit = "uS"', 'unit = "µS"'), "'signals.eda.unit': expected 'uS'"),
        (GOOD.replace("rate_hz = 4.0", "rate_hz = -4"), "'signals.eda.rate_hz': expected a number > 0"),
        (GOOD.replace("rate_hz = 4.0", 'rate_hz = "4"'), "'signals.eda.rate_hz'"),
        (GOOD.replace("rate_hz = 4.0\n", ""), "missing required key 'signals.eda.rate_hz'"),
        (GOOD.replace("[signals.eda]", "[signals.gsr]"), "unknown signal [signals.gsr]"),
        (GOOD + "colour = 'red'\n", "unknown key(s) colour"),
        (GOOD.replace('transport = "lines"', 'transport = "zigbee"'), "'transport': expected one of ble, emotibit, lines, none"),
        (GOOD.replace('model = "my-gsr"', 'model = "other"'), "'model': expected the file name 'my-gsr'"),
        (GOOD.replace('name = "My GSR"\n', ""), "missing required key 'name'"),
        ("battery = 1\n" + GOOD, "'battery': expected true or false"),
        (GOOD + 'source = "x"\n', "the line protocol names signals themselves"),
        (GOOD + "[signals.hr]\nunit = \"bpm\"\nsmoothing = 3\n", "unknown key(s) smoothing in [signals.hr]"),
        (GOOD.replace('decoder = "lines"', 'decoder = "ble_hrs"').replace('transport = "lines"', 'transport = "ble"'),
         "a Heart Rate Measurement only carries"),
        ("model = [", "not valid TOML"),
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
