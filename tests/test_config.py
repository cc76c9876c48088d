"""Configuration: the shipped default file, and errors that name file, key and expectation."""

from __future__ import annotations

from pathlib import Path

import pytest

from monitor.config import Config, load_config
from monitor.core.eda import EdaProcessor
from monitor.core.pipeline import EDA_DELAY_S, CoreConfig
from monitor.core.score import INDICATORS, ScoreConfig
from monitor.errors import ConfigError
from tests.conftest import data_path

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
        ("[core]\ntick = 5", "[core]: unknown key(s) tick; known keys: max_lag_s, moving_sd_g,"),
        ("[core]\ntick_s = 'five'", "[core]: 'tick_s' must be a number, got 'five'"),
        ("[core]\ntick_s = true", "[core]: 'tick_s' must be a number, got True"),
        ("[score.weights]\nHRV = 1", "[score.weights]: unknown key(s) HRV; known keys: ACC_Restlessness,"),
        ("[score.weights]\nHR_Mean = '1'", "[score.weights]: 'HR_Mean' must be a number, got '1'"),
        ("[score]\nweights = 1", "[score.weights] must be a table of key = value, got 1"),
        ("[policy]\ncooldown = 1", "[policy]: unknown key(s) cooldown; known keys: answer_history,"),
        ("[policy]\ndaily_cap = 6.0", "[policy]: 'daily_cap' must be an integer, got 6.0"),
        ("[policy]\ntimezone = 3", "[policy]: 'timezone' must be a string, got 3"),
        ("[policy]\nrearm_below = 'low'", "[policy]: 'rearm_below' must be a number, got 'low'"),
        ("[policy]\nlabels = 5", "[policy]: 'labels' must be a list of strings, got 5"),
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


def test_integers_are_read_as_floats_and_defaults_fill_a_sub_table(tmp_path):
    path = tmp_path / "ints.toml"
    path.write_text("[core]\nwindow_s = 120\n[policy]\ncooldown_s = 600\n[score.weights]\nTEMP_Mean = 0\n")
    cfg = load_config(path)
    assert cfg.core.window_s == 120.0 and isinstance(cfg.core.window_s, float)
    assert cfg.policy.cooldown_s == 600.0 and isinstance(cfg.policy.cooldown_s, float)
    assert cfg.score.weights == {**ScoreConfig().weights, "TEMP_Mean": 0.0}


def test_overrides_change_one_key_and_keep_the_rest():
    cfg = load_config(DEFAULT, ["policy.timezone=Europe/Berlin", "core.window_s=120"])
    assert cfg.policy.timezone == "Europe/Berlin" and cfg.core.window_s == 120.0
    assert cfg.policy.cooldown_s == Config().policy.cooldown_s


def test_a_missing_file_is_a_clear_error(tmp_path, monkeypatch):
    with pytest.raises(ConfigError, match=f"^config file {tmp_path / 'nope.toml'} does not exist$"):
        load_config(tmp_path / "nope.toml")
    monkeypatch.chdir(tmp_path)  # a relative path (--config clinic.toml from another folder): where it looked
    with pytest.raises(ConfigError, match=f"^config file clinic.toml does not exist \\(looked for {tmp_path / 'clinic.toml'}\\)$"):
        load_config("clinic.toml")


def test_a_folder_given_as_config_file_is_named_a_folder(tmp_path):
    """``--config configs`` said "cannot use 'configs': Is a directory", naming neither --config
    nor what to give instead."""
    with pytest.raises(ConfigError, match=r"^config file .* is a folder: give the TOML file itself$"):
        load_config(tmp_path)


@pytest.mark.parametrize("override, hint", [("cooldown_s=5", "policy.cooldown_s=5"),
                                             ("window_s=120", "core.window_s=120"),
                                             ("nonsense=1", "policy.cooldown_s=600")])
def test_a_key_without_its_section_names_the_section_that_has_it(override, hint):
    """``--set cooldown_s=5`` said "unknown section(s) cooldown_s", as if the key were a section."""
    with pytest.raises(ConfigError, match=rf"^override '{override}': expected section\.key=value, e\.g\. {hint}$"):
        load_config(None, [override])


# (override, fragments the error must name: the key and the value). Each used to hang, crash
# with a traceback or silently give meaningless output.
BAD_VALUES = [
    ("core.tick_s=-1", ["'tick_s'", "-1.0"]),
    ("core.tick_s=0", ["'tick_s'", "0.0"]),
    ("core.tick_s=0.5", ["'tick_s'", "0.5"]),
    ("core.tick_s=1e9", ["'tick_s'", "1000000000.0", "'window_s'"]),
    ("core.tick_s=nan", ["'tick_s'", "nan"]),
    ("core.tick_s=inf", ["'tick_s'", "inf"]),
    ("core.window_s=0", ["'window_s'", "0.0"]),
    ("core.window_s=1", ["'window_s'", "1.0"]),
    ("core.window_s=1e9", ["'window_s'", "1000000000.0"]),
    ("core.max_lag_s=20", ["'max_lag_s'", "20.0"]),
    ("core.max_lag_s=-1", ["'max_lag_s'", "-1.0"]),
    ("core.scr_min_amplitude_us=-1", ["'scr_min_amplitude_us'", "-1.0"]),
    ("core.scr_min_amplitude_us=0", ["'scr_min_amplitude_us'", "0.0"]),
    ("core.moving_sd_g=-1", ["'moving_sd_g'", "-1.0"]),
    ("score.adapt_tau_s=0", ["'adapt_tau_s'", "0.0"]),
    ("score.z_cap=0", ["'z_cap'", "0.0"]),
    ("score.learn_below=-1", ["'learn_below'", "-1.0"]),
    ("score.warmup_s=-100", ["'warmup_s'", "-100.0"]),
    ("score.recovery_ratio=-1", ["'recovery_ratio'", "-1.0"]),
    ("score.motion_holdoff_s=-1", ["'motion_holdoff_s'", "-1.0"]),
    ("score.max_holdoff_s=60", ["'max_holdoff_s'", "60.0"]),
    ("score.floors.HR_Mean=0", ["'floors.HR_Mean'", "0.0"]),
    ("score.floors.HR_Mean=-1", ["'floors.HR_Mean'", "-1.0"]),
    ("score.weights.HR_Mean=-1", ["'weights.HR_Mean'", "-1.0"]),
    ("score.weights.HR_Mean=nan", ["'weights.HR_Mean'", "nan"]),
    ("policy=1", ["[policy]", "1"]),
    ("core=3", ["[core]", "3"]),
    ("score='x'", ["[score]", "'x'"]),
]


def _as_toml(override: str) -> str:
    """The TOML file that sets what ``override`` sets (``a.b.c=v`` -> ``[a.b]`` ``c = v``)."""
    path, value = override.split("=", 1)
    *table, key = path.split(".")
    return (f"[{'.'.join(table)}]\n" if table else "") + f"{key} = {value}\n"


@pytest.mark.parametrize("override, fragments", BAD_VALUES)
def test_a_bad_value_is_a_config_error_naming_key_and_value_from_set(override, fragments):
    with pytest.raises(ConfigError) as err:
        load_config(None, [override])
    message = str(err.value)
    assert all(f in message for f in fragments) and "\n" not in message, message


@pytest.mark.parametrize("override, fragments", BAD_VALUES)
def test_a_bad_value_is_a_config_error_naming_key_and_value_from_a_file(tmp_path, override, fragments):
    path = tmp_path / "bad.toml"
    path.write_text(_as_toml(override))
    with pytest.raises(ConfigError) as err:
        load_config(path)
    message = str(err.value)
    assert str(path) in message and all(f in message for f in fragments), message



def test_a_bad_override_of_a_file_names_the_override(tmp_path):
    """``--config clinic.toml --set policy.cooldown_s=abc`` said "clinic.toml: [policy]:
    'cooldown_s' must be a number, got 'abc'", sending the user to look for 'abc' in a file
    that does not hold it."""
    path = tmp_path / "clinic.toml"
    path.write_text("[policy]\ncooldown_s = 600\n")
    with pytest.raises(ConfigError, match=r"clinic\.toml \+ policy\.cooldown_s=abc: \[policy\]: 'cooldown_s'"):
        load_config(path, ["policy.cooldown_s=abc"])

def test_a_key_above_every_section_names_its_section(tmp_path):
    """``cooldown_s = 600`` at the top of a file said "unknown section(s) cooldown_s; known
    sections: core, policy, score", as if the key were a section, where ``--set cooldown_s=600``
    names [policy]."""
    path = tmp_path / "clinic.toml"
    path.write_text("cooldown_s = 600\n[core]\ntick_s = 5\n")
    with pytest.raises(ConfigError, match=rf"^{path}: 'cooldown_s' is a key of the \[policy\] section: put it "
                                          r"below a \[policy\] line$"):
        load_config(path)
    path.write_text("colldown_s = 600\n")  # no section has it: the known sections, as before
    with pytest.raises(ConfigError, match="unknown section.s. colldown_s; known sections: core, policy, score"):
        load_config(path)


def test_wrong_quiet_hours_say_what_a_config_file_takes():
    """The error said 'must be None or two different "HH:MM" times': None is Python's; a TOML
    file or --set turns quiet hours off with false, as the app's config error already said."""
    with pytest.raises(ConfigError) as err:
        load_config(None, ['policy.quiet_hours=["22:00"]'])
    assert "'quiet_hours' must be two different \"HH:MM\" times (start, end), or false for none" in str(err.value)
    assert "None" not in str(err.value)
    assert load_config(None, ["policy.quiet_hours=false"]).policy.quiet_hours is None


def test_all_weights_zero_is_a_config_error():
    zeros = [f"score.weights.{name}=0" for name in INDICATORS]
    with pytest.raises(ConfigError, match="weights"):
        load_config(None, zeros)


@pytest.mark.parametrize(
    "overrides",
    [
        ["core.tick_s=1", "core.window_s=1"],
        ["core.tick_s=7", "core.window_s=60"],  # window need not be a multiple of the tick
        ["core.tick_s=3600", "core.window_s=3600", "core.max_lag_s=3600"],
        ["core.max_lag_s=21"],
        ["score.warmup_s=0", "score.recovery_ratio=0", "score.motion_holdoff_s=0"],
        ["score.max_holdoff_s=120"],
        [f"score.weights.{name}=0" for name in INDICATORS if name != "HR_Mean"],
    ],
)
def test_edge_values_in_range_are_accepted(overrides):
    load_config(DEFAULT, overrides)


def test_the_dataclasses_check_themselves():
    with pytest.raises(ConfigError, match="tick_s"):
        CoreConfig(tick_s=0)
    with pytest.raises(ConfigError, match="floors.TEMP_Mean"):
        ScoreConfig(floors={"TEMP_Mean": 0.0})
    assert CoreConfig() == Config().core and ScoreConfig() == Config().score


def test_the_lag_bound_is_the_eda_chains_delay_at_the_e4_rate():
    assert EdaProcessor(4.0).latency_s == EDA_DELAY_S < CoreConfig().max_lag_s


def test_the_cli_refuses_a_bad_value_before_reading_data(tmp_path, capsys, monkeypatch):
    """``--set core.tick_s=-1`` once made analyze hang over the data: the configuration is
    checked before the recording is read (checked by order, not by a time limit)."""
    import monitor.analyze
    from monitor.cli import main

    def read_anyway(*args, **kwargs):
        raise AssertionError("the recording was read before the configuration was checked")

    monkeypatch.setattr(monitor.analyze, "run_analyze", read_anyway)
    session = data_path("stress-predict", "S02")
    status = main(["analyze", str(session), "--out", str(tmp_path / "out"), "--set", "core.tick_s=-1"])
    assert status == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("anxmon: error:") and "'tick_s'" in err and "\n" not in err
    assert not (tmp_path / "out").exists()


def test_a_binary_config_file_is_not_valid_toml(tmp_path):
    path = tmp_path / "image.toml"
    path.write_bytes(b"\xff\xd8\xff\xe0 not text")
    with pytest.raises(ConfigError, match=f"{path}: not valid TOML"):
        load_config(path)
