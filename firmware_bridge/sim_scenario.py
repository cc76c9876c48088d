"""Scenarios of simulated wearers: TOML files in ``configs/scenarios/``, validated once.

A scenario names wearer *kinds* (a timeline of episodes, a physiology profile, faults, the
signals sent) and the order in which simulated wearers get them. Every key is checked with
``monitor.toml_tables``: a wrong key or value is a ``ConfigError`` naming the file, the key and
what was expected. (Not with ``read_table``: a scenario's tables are not dataclasses; its
numbers are ranges ``[low, high]`` or numbers, checked by ``_number`` and ``_range_or_number``.)

Schema (every key; all but ``[kinds.<name>]`` are optional)::

    description = "..."
    duration_s = 5400                  # default length of a run, simulated seconds
    wearers = ["calm", "anxious"]      # kinds in wearer order (sim-01, sim-02, ...), cycled;
                                       # default: the kinds in file order

    [kinds.anxious]                    # one table per kind
    description = "..."
    signals = ["bvp", "eda", "temp", "acc"]   # default; "hr" and "ibi" may be added
    episodes = [                       # default: none (a calm wearer)
      { kind = "anxiety", start_s = 600, duration_s = 300, intensity = 0.8 },
      { kind = "run", start_s = 2400, end_s = 3000 },
    ]

    [kinds.anxious.profile]            # physiology: a number (fixed) or [low, high] (drawn
    hr_rest_bpm = [60, 72]             # per wearer, uniformly); see PROFILE_DEFAULTS, and
                                       # PROFILE_LIMITS for what a value may be

    [kinds.anxious.faults]             # all off by default; see FAULT_DEFAULTS
    contact_loss_per_hour = 1.0

Episode kinds: ``anxiety`` (latent arousal rises to ``intensity``, default 0.8), ``walk`` and
``run`` (exercise load, wrist movement at step frequency; ``intensity`` scales both, default
1.0). ``start_s`` is seconds from the start of the run; give ``duration_s`` or ``end_s``.

Example
-------
>>> sc = load_scenario("demo")
>>> sc.wearers, [e.kind for e in sc.kinds["exercise"].episodes]
(('calm', 'anxious', 'exercise'), ['walk', 'run', 'walk'])
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from monitor.errors import ConfigError
from monitor.toml_tables import anxmon_configs, bad_value, check_table, check_value, is_number, read_toml, toml_files
from monitor.wire import SIGNALS

SCENARIOS_DIR = anxmon_configs("scenarios")

EPISODE_KINDS = ("anxiety", "walk", "run")
DEFAULT_INTENSITY = {"anxiety": 0.8, "walk": 1.0, "run": 1.0}
DEFAULT_SIGNALS = ("bvp", "eda", "temp", "acc")
ALLOWED_SIGNALS = ("bvp", "eda", "temp", "acc", "hr", "ibi")

# Physiology of one wearer: key -> (low, high) drawn uniformly per wearer, or a fixed number
# from the scenario. Sources of the ranges are in docs/devices.md, "Simulated wearers".
PROFILE_DEFAULTS: dict[str, tuple[float, float]] = {
    "hr_rest_bpm": (60.0, 72.0),  # resting heart rate, seated adult
    "hr_anxiety_bpm": (12.0, 22.0),  # rise at full arousal (a = 1)
    "hr_exercise_bpm": (75.0, 90.0),  # rise at full exercise load (a steady run)
    # respiratory sinus arrhythmia (amplitude of the RR modulation) and beat-to-beat RR noise (SD)
    # at rest: together a resting RMSSD of ~29-59 ms, around the 42 +- 15 ms of healthy adults
    # (Nunan et al. 2010)
    "rsa_ms": (32.0, 70.0),
    "rr_noise_ms": (11.0, 20.0),
    "resp_rest_hz": (0.2, 0.28),  # breathing rate at rest (12-17 breaths/min)
    "arousal_onset_s": (20.0, 50.0),  # time constant of arousal rising to an episode's level
    "arousal_offset_s": (60.0, 150.0),  # time constant of its return to calm
    "scl_rest_us": (0.3, 5.0),  # skin conductance level at rest, wrist (E4: S02 ~0.6, S05 ~4 µS)
    "scl_anxiety_us": (0.6, 1.4),  # tonic rise at full arousal
    "scl_sweat_us": (1.0, 2.5),  # tonic rise from thermoregulatory sweating after a long run
    "scr_rest_per_min": (1.0, 2.5),  # non-specific SCRs at rest
    "scr_anxiety_per_min": (5.0, 9.0),  # extra SCRs at full arousal
    "scr_amplitude_us": (0.1, 0.2),  # median SCR amplitude at rest (lognormal)
    "scr_decay_s": (2.0, 4.0),  # recovery time constant of one SCR (Bateman)
    "temp_rest_c": (29.5, 35.5),  # wrist skin temperature at rest (E4: S05 ~29.5, S02 ~35.2 °C)
    "temp_anxiety_c": (0.25, 0.5),  # drop at full arousal (peripheral vasoconstriction)
    "bvp_amplitude": (60.0, 120.0),  # pulse amplitude, a.u. (E4-like)
    # hand/arm gestures while seated, 1-4 s each, lognormal amplitude with this median. Calibrated
    # on the seated rest phases of Stress-Predict S02/S05 (E4): per-second SD of |acc| above
    # 0.02 g in 18-28 % of seconds, above 0.1 g in 3-8 %; these ranges give 10-33 % and 1-11 %.
    "gesture_per_min": (6.0, 12.0),
    "gesture_g": (0.1, 0.25),
    # gestures x (1 + gain * arousal): S02 moved more during the stress tasks (46 % of seconds
    # above 0.02 g instead of 28 %), S05 did not (18 % and 18 %)
    "gesture_anxiety_gain": (0.0, 1.5),
    "walk_cadence_hz": (1.7, 2.0),  # steps per second
    "run_cadence_hz": (2.5, 2.9),
    "walk_acc_sd_g": (0.15, 0.25),  # per-second SD of |acc| at the wrist
    "run_acc_sd_g": (0.3, 0.5),
}

# What a scenario may set a profile value to (other keys: any number >= 0). The model divides by
# the heart rate and the time constants and steps once a second (time constants >= 1 s; an SCR's
# recovery must be slower than its 0.75 s rise); a resting level outside the wire contract's range
# would make the service refuse every batch.
PROFILE_LIMITS: dict[str, tuple[float, float]] = {
    "hr_rest_bpm": (SIGNALS["hr"].low, SIGNALS["hr"].high),
    "arousal_onset_s": (1.0, math.inf),
    "arousal_offset_s": (1.0, math.inf),
    "scr_decay_s": (1.0, math.inf),
    "scl_rest_us": (SIGNALS["eda"].low, SIGNALS["eda"].high),
    "temp_rest_c": (SIGNALS["temp"].low, SIGNALS["temp"].high),
}

# Faults: off by default (the calm baseline is clean).
FAULT_DEFAULTS: dict[str, Any] = {
    "ppg_motion_artifacts": False,  # movement adds waves to the PPG and hides beats from hr/ibi
    "contact_loss_per_hour": 0.0,  # a loose or removed band: EDA ~0 µS, BVP noise, TEMP 3-6 °C low, no hr/ibi
    "contact_loss_s": (30.0, 120.0),  # their duration, drawn in [low, high]
    "dropouts_per_hour": 0.0,  # runs of lost batches (every signal; seq numbers skip)
    "dropout_s": (2.0, 15.0),  # their duration in seconds, drawn in [low, high]
    "jitter_s": 0.0,  # SD of the error of each batch's timestamp (s)
    "clock_offset_s": 0.0,  # device clock minus true time (s): a number or [low, high]
    "clock_drift_ppm": 0.0,  # device clock running fast (+) or slow (-)
}

_TOP_KEYS = {"description", "duration_s", "wearers", "kinds"}
_KIND_KEYS = {"description", "signals", "episodes", "profile", "faults"}
_EPISODE_KEYS = {"kind", "start_s", "duration_s", "end_s", "intensity"}


@dataclass(frozen=True)
class Episode:
    """One episode of a wearer kind: ``kind`` from ``start_s`` to ``end_s`` (s from run start)."""

    kind: str
    start_s: float
    end_s: float
    intensity: float

    def active(self, t_s: float) -> bool:
        return self.start_s <= t_s < self.end_s


@dataclass(frozen=True)
class WearerKind:
    """What every wearer of one kind shares: timeline, physiology ranges, faults, signals."""

    name: str
    description: str = ""
    signals: tuple[str, ...] = DEFAULT_SIGNALS
    episodes: tuple[Episode, ...] = ()
    profile: dict = field(default_factory=lambda: dict(PROFILE_DEFAULTS))
    faults: dict = field(default_factory=lambda: dict(FAULT_DEFAULTS))


@dataclass(frozen=True)
class Scenario:
    name: str
    source: str
    description: str
    duration_s: float
    wearers: tuple[str, ...]
    kinds: dict[str, WearerKind]

    def kind_of(self, index: int) -> WearerKind:
        """Kind of the wearer at ``index`` (0-based): the ``wearers`` list, cycled."""
        return self.kinds[self.wearers[index % len(self.wearers)]]


def scenarios_dir() -> Path:
    """``$ANXMON_SCENARIOS_DIR`` or anxmon's own ``configs/scenarios``."""
    env = os.environ.get("ANXMON_SCENARIOS_DIR")
    return Path(env) if env else SCENARIOS_DIR


def load_scenario(name_or_path: str | Path) -> Scenario:
    """Load and validate a scenario by name (``"demo"``) or by path to a TOML file."""
    path = Path(name_or_path)
    if path.suffix != ".toml":
        path = scenarios_dir() / f"{name_or_path}.toml"
        if not path.exists():
            known = ", ".join(p.stem for p in toml_files(scenarios_dir(), "scenarios", "$ANXMON_SCENARIOS_DIR "
                                                         f"(anxmon's own: {SCENARIOS_DIR}), or "
                                                         "simulate --scenario FILE.toml"))
            raise ConfigError(f"no scenario {path}: known scenarios are {known or 'none'}")
    return parse_scenario(read_toml(path), path)


def _number(where: str, key: str, value, low: float = -math.inf, high: float = math.inf,
            low_open: bool = False) -> float:
    if not is_number(value):
        raise bad_value(where, key, "a number", value)
    if value < low or value > high or (low_open and value == low):
        bound = f"> {low:g}" if low_open else f">= {low:g}"
        rng = bound if high == math.inf else f"in {'(' if low_open else '['}{low:g}, {high:g}]"
        raise bad_value(where, key, f"a number {rng}", value)
    return float(value)


def _range_or_number(where: str, key: str, value, low: float, high: float = math.inf):
    """A fixed number or a ``[low, high]`` range; returns (low, high)."""
    if isinstance(value, list):
        if len(value) != 2:
            raise bad_value(where, key, "a number or [low, high]", value)
        lo = _number(where, key, value[0], low, high)
        hi = _number(where, key, value[1], low, high)
        if lo > hi:
            raise bad_value(where, key, "[low, high] with low <= high", value)
        return (lo, hi)
    x = _number(where, key, value, low, high)
    return (x, x)


def parse_scenario(raw: dict, path: Path | str = "<scenario>") -> Scenario:
    """Validate an already-parsed TOML mapping; ``path`` is used in error messages."""
    path = Path(path)
    where = str(path)
    check_table(raw, _TOP_KEYS, where)
    duration_s = _number(where, "duration_s", raw.get("duration_s", 3600), 1.0)
    kinds_raw = raw.get("kinds")
    if not kinds_raw:
        raise ConfigError(f"{where}: missing [kinds.<name>] tables: a scenario defines at least one wearer kind")
    if not isinstance(kinds_raw, dict):
        raise bad_value(where, "kinds", "[kinds.<name>] tables", kinds_raw)
    kinds = {name: _parse_kind(where, name, table) for name, table in kinds_raw.items()}
    wearers = raw.get("wearers", list(kinds))
    if not isinstance(wearers, list) or not wearers or not all(isinstance(w, str) for w in wearers):
        raise bad_value(where, "wearers", "a non-empty list of kind names", wearers)
    for w in wearers:
        if w not in kinds:
            raise ConfigError(f"{where}: 'wearers': unknown kind {w!r}; defined kinds: {', '.join(kinds)}")
    description = check_value(raw.get("description", ""), str, where, "description")
    return Scenario(path.stem, where, description, duration_s, tuple(wearers), kinds)


def _parse_kind(where: str, name: str, table) -> WearerKind:
    base = f"kinds.{name}"
    check_table(table, _KIND_KEYS, f"{where}: [{base}]")
    description = check_value(table.get("description", ""), str, where, f"{base}.description")
    signals = table.get("signals", list(DEFAULT_SIGNALS))
    if not isinstance(signals, list) or not signals or any(s not in ALLOWED_SIGNALS for s in signals):
        raise bad_value(where, f"{base}.signals", f"a non-empty list of {', '.join(ALLOWED_SIGNALS)}", signals)
    if len(set(signals)) != len(signals):
        raise bad_value(where, f"{base}.signals", "a list of different signals", signals)
    episodes_raw = table.get("episodes", [])
    if not isinstance(episodes_raw, list):
        raise bad_value(where, f"{base}.episodes", "a list of tables", episodes_raw)
    episodes = [_parse_episode(where, f"{base}.episodes[{i}]", e) for i, e in enumerate(episodes_raw)]
    episodes.sort(key=lambda e: e.start_s)
    for i, a in enumerate(episodes):  # anxiety may overlap exercise, not another anxiety
        for b in episodes[i + 1:]:
            if b.start_s < a.end_s and (a.kind == "anxiety") == (b.kind == "anxiety"):
                raise ConfigError(f"{where}: '{base}.episodes': {a.kind} ({a.start_s:g}-{a.end_s:g} s) overlaps "
                                  f"{b.kind} ({b.start_s:g}-{b.end_s:g} s)")
    profile_raw = table.get("profile", {})
    check_table(profile_raw, PROFILE_DEFAULTS, f"{where}: [{base}.profile]")
    profile = dict(PROFILE_DEFAULTS)
    for key, value in profile_raw.items():
        low, high = PROFILE_LIMITS.get(key, (0.0, math.inf))
        profile[key] = _range_or_number(where, f"{base}.profile.{key}", value, low, high)
    faults_raw = table.get("faults", {})
    check_table(faults_raw, FAULT_DEFAULTS, f"{where}: [{base}.faults]")
    faults = dict(FAULT_DEFAULTS)
    for key, value in faults_raw.items():
        k = f"{base}.faults.{key}"
        if key == "ppg_motion_artifacts":
            faults[key] = check_value(value, bool, where, k)
        elif key in ("contact_loss_s", "dropout_s"):
            faults[key] = _range_or_number(where, k, value, 1.0, 3600.0)
        elif key == "clock_offset_s":
            faults[key] = _range_or_number(where, k, value, -86400.0, 86400.0)
        elif key == "clock_drift_ppm":
            faults[key] = _number(where, k, value, -1000.0, 1000.0)
        elif key == "jitter_s":
            faults[key] = _number(where, k, value, 0.0, 1.0)
        else:
            faults[key] = _number(where, k, value, 0.0, 3600.0)
    return WearerKind(name, description, tuple(signals), tuple(episodes), profile, faults)


def _parse_episode(where: str, key: str, e) -> Episode:
    check_table(e, _EPISODE_KEYS, f"{where}: {key}")
    kind = e.get("kind")
    if kind not in EPISODE_KINDS:
        raise bad_value(where, f"{key}.kind", f"one of {', '.join(EPISODE_KINDS)}", kind)
    if "start_s" not in e:
        raise ConfigError(f"{where}: missing key '{key}.start_s'")
    start = _number(where, f"{key}.start_s", e["start_s"], 0.0)
    if ("duration_s" in e) == ("end_s" in e):
        raise ConfigError(f"{where}: {key}: give exactly one of 'duration_s' or 'end_s'")
    if "duration_s" in e:
        end = start + _number(where, f"{key}.duration_s", e["duration_s"], 0.0, low_open=True)
    else:
        end = _number(where, f"{key}.end_s", e["end_s"], start, low_open=True)
    intensity = _number(where, f"{key}.intensity", e.get("intensity", DEFAULT_INTENSITY[kind]), 0.0, 1.0,
                        low_open=True)
    return Episode(kind, start, end, intensity)
