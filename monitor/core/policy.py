"""The check-in policy: when to ask a wearer how they feel, and what they taught us.

Pure and in event time: the policy reads no clock, no file and no random source. It is fed one
stress score per output tick (``update``), the wearer's answers (``answer``) and their
pause / resume / snooze requests (``control``), each with the event time ``t_s`` (unix seconds).

In plain words (details and the reasons for every default in ``docs/checkins.md``):

* A **trigger** needs the score at or above the wearer's threshold on every usable tick for
  ``sustain_s`` seconds (a short spike never triggers). Ticks without a usable score (``score``
  is None or NaN, or a ``gate`` such as ``"motion"`` is given) break the run.
* After a trigger decision, sent or suppressed, the policy is **disarmed** until the score falls
  below ``rearm_below`` (hysteresis): one elevation gives at most one decision.
* A trigger is **sent** unless, in this order, the wearer paused, the wearer snoozed, it is
  quiet hours in the wearer's time zone, the local day's cap is reached, or the last sent prompt
  is younger than the cooldown. A suppressed trigger is never sent later.
* An unanswered prompt **expires** after ``expiry_s`` (an ``Expired`` event).
* **Answers** move a per-wearer threshold offset: "fine"/"exercising" raise it by ``step_up``,
  confirmed anxiety ("anxious" or "stressed" with a rating >= 3) lowers it by ``step_down``,
  always within ``[offset_min, offset_max]``.

anxmon is not a medical device: the prompt describes what the body signals did, never diagnoses
and never mentions medication.

Example
-------
>>> p = CheckinPolicy(PolicyConfig(sustain_s=10.0, quiet_hours=None), wearer_id="alice")
>>> [d.reason for t in range(0, 20, 5) for d in p.update(1.7e9 + t, 3.0, {"HR_Mean": 2.5})]
['sent']
>>> p.update(1.7e9 + 20, 3.0, {})  # still elevated, but disarmed: nothing new
[]
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from datetime import datetime
from collections.abc import Mapping
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from monitor.core.base import Processor
from monitor.errors import AnxmonError, ConfigError
from monitor.toml_tables import bad_value, is_integer, is_number

# Reasons of a trigger decision, in the order they are checked.
REASON_SENT = "sent"
REASON_PAUSED = "paused"
REASON_SNOOZED = "snoozed"
REASON_QUIET_HOURS = "quiet_hours"
REASON_DAILY_CAP = "daily_cap"
REASON_COOLDOWN = "cooldown"

# Gates: why a tick has no usable score (the scorer's motion, motion_unknown, poor_quality,
# warmup; the live service's stale). Any other string works too.
GATES = ("motion", "motion_unknown", "poor_quality", "warmup", "stale")
ANSWER_CLOCK_SKEW_S = 30.0  # an answer up to this much before its prompt (phone and band clocks apart) counts as at the prompt
MAX_THRESHOLD = 100.0  # score units: scores stay below the score's z_cap (4 by default); this bounds typos

CONTROL_ACTIONS = ("pause", "resume", "snooze", "quiet_hours")

_HHMM = re.compile(r"([01]\d|2[0-3]):([0-5]\d)")
QUIET_HOURS_EXPECTED = ('two different "HH:MM" times (start, end), or false for none (equal times would '
                        'be all day: a wearer who wants no check-ins pauses them)')  # in a config file


class PolicyError(AnxmonError, ValueError):
    """A call of the check-in policy with arguments it cannot act on."""


class AnswerError(PolicyError):
    """An answer the policy refuses: unknown, expired or already answered prompt, bad rating
    or label. The message says which and what was expected."""


class ControlError(PolicyError):
    """A control request (pause / resume / snooze) with an unknown action or a bad duration."""


@dataclass(frozen=True)
class PolicyConfig:
    """Parameters of the check-in policy (one instance per wearer uses them).

    Attributes
    ----------
    threshold : float
        Score (baseline SDs above the wearer's normal, higher = more stressed) at or above which
        the body counts as elevated. Default 2.0.
    rearm_below : float or None
        Hysteresis: after a trigger decision the policy re-arms only once a usable score falls
        below this level (score units). None means ``0.6 * threshold`` (1.2 by default). Must be
        below ``threshold``. The wearer's learned offset shifts it together with the threshold.
    sustain_s : float
        Seconds the score must stay at or above the threshold, on consecutive usable ticks,
        before a trigger. Default 60 (one WESAD window; filters out a startle or a sneeze).
    max_tick_gap_s : float
        Ticks further apart than this (s) break a sustained run (missing data is not evidence
        that the elevation lasted). Default 30.
    cooldown_s : float
        Minimum seconds between two *sent* prompts. Default 1800 (30 min).
    daily_cap : int
        Most prompts sent per local calendar day of the wearer. Default 6.
    quiet_hours : tuple of two "HH:MM" strings, or None
        Local wall-clock start (inclusive) and end (exclusive) during which nothing is sent; may
        cross midnight. Default ("22:00", "07:00"). None = no quiet hours. From TOML also
        ``{start = "22:00", end = "07:00"}``, and ``[]`` or ``false`` for none.
    timezone : str
        IANA time zone of the wearer (e.g. "Europe/Berlin"), for quiet hours and the day of the
        daily cap. Default "UTC".
    expiry_s : float
        Seconds after which an unanswered prompt expires. Default 900 (15 min).
    snooze_default_s : float
        Length of a snooze without a duration, s. Default 3600 (1 h).
    step_up : float
        Offset added (score units) by an answer saying "fine" or "exercising". Default 0.1.
    step_down : float
        Offset removed (score units) by confirmed anxiety. Default 0.1.
    confirm_min_rating : int
        Confirmed anxiety = a label in ``lower_labels`` *and* a rating >= this. Default 3.
    offset_min, offset_max : float
        Bounds of the learned offset (score units). Defaults -0.5 and +1.0: the threshold stays
        within [1.5, 3.0] with the default threshold. Easier to raise than to lower, because a
        monitor that asks too often gets switched off.
    raise_labels, lower_labels : tuple of str
        Labels that raise (false alarm) and, with the rating, lower (confirmed) the threshold.
    message : str
        The prompt text: short, warm, non-clinical.
    rating_question : str
        The question of the 1-5 rating.
    rating_labels : tuple of 5 str
        Captions of ratings 1..5.
    labels : tuple of str
        Labels the wearer can pick (any number of them).
    why_min_sd : float
        Smallest deviation (baseline SDs) an indicator needs to be named in the prompt's "why".
        Default 0.5.
    why_max_items : int
        Most indicators named in the "why". Default 3.
    answer_history : int
        Answers kept in the state (the oldest are dropped). Default 64.

    Example
    -------
    >>> PolicyConfig(threshold=2.5).rearm_level
    1.5
    """

    threshold: float = 2.0
    rearm_below: float | None = None
    sustain_s: float = 60.0
    max_tick_gap_s: float = 30.0
    cooldown_s: float = 1800.0
    daily_cap: int = 6
    quiet_hours: tuple[str, str] | None = ("22:00", "07:00")
    timezone: str = "UTC"
    expiry_s: float = 900.0
    snooze_default_s: float = 3600.0
    step_up: float = 0.1
    step_down: float = 0.1
    confirm_min_rating: int = 3
    offset_min: float = -0.5
    offset_max: float = 1.0
    raise_labels: tuple[str, ...] = ("fine", "exercising")
    lower_labels: tuple[str, ...] = ("anxious", "stressed")
    message: str = "Your body seems tense right now. How are you feeling?"
    rating_question: str = "How tense do you feel right now?"
    rating_labels: tuple[str, ...] = ("Not at all", "A little", "Somewhat", "Quite", "Very")
    labels: tuple[str, ...] = ("anxious", "stressed", "excited", "exercising", "fine")
    why_min_sd: float = 0.5
    why_max_items: int = 3
    answer_history: int = 64

    def __post_init__(self) -> None:
        def bad(key: str, expected: str) -> ConfigError:
            return bad_value("policy", key, expected, getattr(self, key))

        def number(key: str) -> float:
            if not is_number(getattr(self, key)):
                raise bad(key, "a finite number")
            return float(getattr(self, key))

        def integer(key: str, low: int) -> None:
            if not is_integer(getattr(self, key)) or getattr(self, key) < low:
                raise bad(key, f"an integer >= {low}")

        if not 0 < number("threshold") <= MAX_THRESHOLD:
            raise bad("threshold", f"> 0 and <= {MAX_THRESHOLD:g} (score units)")
        if self.rearm_below is not None:
            if not 0 < number("rearm_below") < self.threshold:  # (scores are >= 0: at 0 it never re-arms)
                raise bad("rearm_below", f"in (0, threshold={self.threshold})")
        for key in ("sustain_s", "cooldown_s", "step_up", "step_down", "why_min_sd"):
            if number(key) < 0:
                raise bad(key, ">= 0")
        for key in ("max_tick_gap_s", "expiry_s", "snooze_default_s"):
            if number(key) <= 0:
                raise bad(key, "> 0")
        integer("daily_cap", 0)
        integer("confirm_min_rating", 1)
        integer("why_max_items", 0)
        integer("answer_history", 0)
        if self.confirm_min_rating > 5:
            raise bad("confirm_min_rating", "in 1..5")
        if not number("offset_min") <= 0 <= number("offset_max"):
            raise bad("offset_min", "<= 0 <= offset_max")
        if self.threshold + self.offset_min <= 0:
            raise bad("offset_min", f"> -threshold ({-self.threshold}) so the threshold stays > 0")
        if self.rearm_level + self.offset_min <= 0:
            # the wearer's offset moves the re-arm level too; scores are >= 0, so a level at or
            # below 0 would never re-arm: after a few confirmed answers, no check-in ever again
            raise bad("offset_min", f"> -{self.rearm_level:g} (the re-arm level) so the re-arm level stays > 0")
        try:
            object.__setattr__(self, "quiet_hours", check_quiet_hours(self.quiet_hours))
        except ControlError:
            raise bad("quiet_hours", QUIET_HOURS_EXPECTED) from None
        if not isinstance(self.timezone, str):
            raise bad("timezone", "an IANA time zone name such as 'Europe/Berlin'")
        try:
            check_timezone(self.timezone)
        except ControlError:
            raise bad("timezone", "an IANA time zone name such as 'Europe/Berlin'") from None
        for key in ("raise_labels", "lower_labels", "labels", "rating_labels"):
            value = getattr(self, key)
            if not isinstance(value, (list, tuple)) or not all(isinstance(s, str) for s in value):
                raise bad(key, "a list of strings")
            object.__setattr__(self, key, tuple(value))
        if len(self.rating_labels) != 5:
            raise bad("rating_labels", "five captions (ratings 1..5)")
        folded = [x.strip().lower() for x in self.labels]
        if len(set(folded)) != len(folded) or "" in folded:
            # answers match labels ignoring case and spaces: two spellings of one would be one button twice
            raise bad("labels", "different, non-empty labels (case and spaces ignored)")
        unknown = set(self.raise_labels + self.lower_labels) - set(self.labels)
        if unknown:
            raise bad("raise_labels", f"labels listed in 'labels' (unknown: {sorted(unknown)})")
        for key in ("message", "rating_question"):
            if not isinstance(getattr(self, key), str) or not getattr(self, key).strip():
                raise bad(key, "a non-empty string")

    @property
    def rearm_level(self) -> float:
        """The hysteresis level before the wearer's offset (score units)."""
        return 0.6 * self.threshold if self.rearm_below is None else float(self.rearm_below)


@dataclass(frozen=True)
class Why:
    """Why a prompt was sent: indicators that moved towards stress, and a sentence about them.

    ``indicators`` maps an indicator key to its deviation from the wearer's baseline in baseline
    SDs (positive = higher than usual), largest first.
    """

    indicators: dict[str, float]
    sentence: str

    def to_dict(self) -> dict:
        return {"indicators": dict(self.indicators), "sentence": self.sentence}


@dataclass(frozen=True)
class Prompt:
    """A check-in sent to the wearer (the payload of ``anxmon/v1/{wearer}/checkin``)."""

    id: str  # f"{wearer_id}-{t in ms}", deterministic
    t_s: float  # event time of the trigger, unix s
    message: str
    rating_question: str
    rating_labels: tuple[str, ...]  # captions of ratings 1..5
    labels: tuple[str, ...]
    why: Why
    expires_at_s: float

    def to_dict(self) -> dict:
        """JSON-ready dict (wire field names: ``t``, ``expires_at``)."""
        return {
            "id": self.id,
            "t": self.t_s,
            "message": self.message,
            "options": {
                "rating": {
                    "question": self.rating_question,
                    "min": 1,
                    "max": len(self.rating_labels),
                    "labels": {str(i + 1): s for i, s in enumerate(self.rating_labels)},
                },
                "labels": list(self.labels),
            },
            "why": self.why.to_dict(),
            "expires_at": self.expires_at_s,
        }


@dataclass(frozen=True)
class Decision:
    """One trigger decision, sent or suppressed (a line of ``checkins.jsonl``)."""

    t_s: float
    sent: bool
    reason: str  # "sent", "paused", "snoozed", "quiet_hours", "daily_cap" or "cooldown"
    prompt: Prompt | None  # the prompt when sent, else None
    explanation: dict[str, float]  # the score's explanation at this tick (copied)
    score: float
    threshold: float  # the wearer's effective threshold at this tick

    def to_dict(self) -> dict:
        return {
            "t": self.t_s,
            "sent": self.sent,
            "reason": self.reason,
            "score": self.score,
            "threshold": self.threshold,
            "explanation": dict(self.explanation),
            "prompt_id": None if self.prompt is None else self.prompt.id,
        }


@dataclass(frozen=True)
class Expired:
    """An unanswered prompt expired at ``t_s`` (= its ``expires_at_s``)."""

    t_s: float
    prompt_id: str
    prompt_t_s: float

    def to_dict(self) -> dict:
        return {"t": self.t_s, "expired": self.prompt_id, "prompt_t": self.prompt_t_s}


@dataclass(frozen=True)
class AnswerResult:
    """A stored answer and what the policy learned from it."""

    prompt_id: str
    t_s: float
    rating: int | None
    labels: tuple[str, ...]
    learned: str  # "raise" (false alarm), "lower" (confirmed anxiety) or "none"
    offset: float  # the wearer's threshold offset after this answer
    threshold: float  # the effective threshold after this answer


@dataclass(frozen=True)
class ControlResult:
    """The hold in force after a control request."""

    action: str
    t_s: float
    until_s: float | None  # end of the pause/snooze; None: until resumed (pause) or none (resume)


@dataclass
class PolicyState:
    last_t_s: float | None = None  # event time of the last tick
    armed: bool = True
    above_since_s: float | None = None  # start of the current sustained run
    last_sent_s: float | None = None
    day: str | None = None  # local date (ISO) that sent_today counts
    sent_today: int = 0
    paused_until_s: float | None = None  # math.inf = until resumed
    snoozed_until_s: float | None = None
    # the wearer's own quiet hours and time zone (control "quiet_hours"); None: the config's
    quiet_hours: tuple[str, str] | tuple[()] | None = None  # () = no quiet hours
    timezone: str | None = None
    offset: float = 0.0  # learned threshold offset, score units
    open_prompts: dict[str, Prompt] = field(default_factory=dict)  # sent, unanswered, unexpired
    closed: dict[str, str] = field(default_factory=dict)  # recent id -> "answered" | "expired"
    answers: list[AnswerResult] = field(default_factory=list)  # bounded by answer_history


# Known indicator keys: (body system, stress direction, phrase when higher, phrase when lower),
# in plain words (the wearer reads them: the check-in's "why", the app, push, Home Assistant).
# HRV falls and skin cools (peripheral vasoconstriction) under acute stress.
_HEART_FAST = "your heart is beating faster than usual"
_HEART_SLOW = "your heart is beating slower than usual"
_HRV_UP = "your heart rhythm is more relaxed than usual"
_HRV_DOWN = "your heart rhythm is less relaxed than usual"
_SCL_UP = "your skin shows more sweat activity than usual"
_SCL_DOWN = "your skin shows less sweat activity than usual"
_SCR_UP = "your skin shows more small bursts of sweat than usual"
_SCR_DOWN = "your skin shows fewer small bursts of sweat than usual"
_BREATH_FAST = "you're breathing faster than usual"
_BREATH_SLOW = "you're breathing slower than usual"
INDICATOR_WORDS: dict[str, tuple[str, int, str, str]] = {
    "HR_Mean": ("heart", +1, _HEART_FAST, _HEART_SLOW),
    "HR": ("heart", +1, _HEART_FAST, _HEART_SLOW),
    "ECG_Rate_Mean": ("heart", +1, _HEART_FAST, _HEART_SLOW),
    "PPG_Rate_Mean": ("heart", +1, _HEART_FAST, _HEART_SLOW),
    "HRV_MeanNN": ("heart", -1, _HEART_SLOW, _HEART_FAST),
    "HRV_RMSSD": ("heart", -1, _HRV_UP, _HRV_DOWN),
    "HRV_SDNN": ("heart", -1, _HRV_UP, _HRV_DOWN),
    "HRV_SDSD": ("heart", -1, _HRV_UP, _HRV_DOWN),
    "HRV_pNN50": ("heart", -1, _HRV_UP, _HRV_DOWN),
    "HRV_HF": ("heart", -1, _HRV_UP, _HRV_DOWN),
    "EDA_Tonic_Mean": ("skin", +1, _SCL_UP, _SCL_DOWN),
    "EDA_Tonic": ("skin", +1, _SCL_UP, _SCL_DOWN),
    "EDA_Mean": ("skin", +1, _SCL_UP, _SCL_DOWN),
    "EDA_Tonic_Slope": ("skin", +1, "your skin's sweat activity is rising", "your skin's sweat activity is falling"),
    "SCR_Rate": ("skin", +1, _SCR_UP, _SCR_DOWN),
    "SCR_Peaks_N": ("skin", +1, _SCR_UP, _SCR_DOWN),
    "SCR_Peaks_Amplitude_Mean": ("skin", +1, "your skin's bursts of sweat are stronger than usual",
                                 "your skin's bursts of sweat are weaker than usual"),
    "TEMP_Mean": ("temperature", -1, "your skin is warmer than usual", "your skin is cooler than usual"),
    "RSP_Rate": ("breathing", +1, _BREATH_FAST, _BREATH_SLOW),
    "RSP_Rate_Mean": ("breathing", +1, _BREATH_FAST, _BREATH_SLOW),
    "ACC_Restlessness": ("movement", +1, "you seem more restless than usual", "you seem stiller than usual"),
}
GENERIC_WHY = "Your body signals have moved away from your own calm level for a little while."  # (the app shows it too)


def explain(explanation: Mapping[str, float], min_sd: float = 0.5, max_items: int = 3,
            known_only: bool = False) -> Why:
    """The "why" of a prompt from the score's explanation.

    Parameters
    ----------
    explanation : mapping of str to float
        Indicator key -> deviation from the wearer's baseline in baseline SDs (positive = higher
        than usual). Non-finite values are ignored.
    min_sd : float
        Smallest |deviation| named.
    max_items : int
        Most body systems named (heart, skin, temperature, breathing, movement): each system
        once, by its largest deviation, so two skin measures never crowd out the heart.
    known_only : bool
        Leave out keys without plain words (else they are named generically).

    Known keys (``INDICATOR_WORDS``: ``HR_Mean``, ``HRV_RMSSD``, ``EDA_Tonic_Mean``, ``SCR_Rate``,
    ``TEMP_Mean`` ...) are named only when they moved in the stress direction (a *drop* of HRV
    or skin temperature); unknown keys are named generically whenever they moved by ``min_sd``.

    Example
    -------
    >>> explain({"HR_Mean": 2.1, "HRV_RMSSD": -0.2, "EDA_Tonic_Mean": 1.4}).sentence
    'Your heart is beating faster than usual and your skin shows more sweat activity than usual.'
    >>> explain({"EDA_Tonic_Mean": 4.0, "SCR_Rate": 3.8, "HR_Mean": 3.5}).sentence
    'Your skin shows more sweat activity than usual and your heart is beating faster than usual.'
    """
    chosen: list[tuple[float, str, str, float]] = []
    systems: set[str] = set()
    candidates = []
    for key in sorted(explanation):  # sorted: deterministic ties
        z = float(explanation[key])
        if not math.isfinite(z) or abs(z) < min_sd or z == 0:
            continue
        known = INDICATOR_WORDS.get(key)
        if known is None:
            if known_only:
                continue
            system, phrase = key, f"your {key} signal is {'higher' if z > 0 else 'lower'} than usual"
        elif z * known[1] > 0:
            system, phrase = known[0], known[2] if z > 0 else known[3]
        else:
            continue  # moved in the calm direction: not a reason to ask
        candidates.append((abs(z), key, phrase, z, system))
    candidates.sort(key=lambda item: -item[0])  # stable: equal sizes keep key order
    for size, key, phrase, z, system in candidates:
        if system not in systems and len(chosen) < max_items:
            systems.add(system)
            chosen.append((size, key, phrase, z))
    if not chosen:
        sentence = GENERIC_WHY
    else:
        phrases = [phrase for _, _, phrase, _ in chosen]
        text = phrases[0] if len(phrases) == 1 else ", ".join(phrases[:-1]) + " and " + phrases[-1]
        sentence = text[0].upper() + text[1:] + "."
    return Why(indicators={key: round(z, 2) for _, key, _, z in chosen}, sentence=sentence)


def check_timezone(name: object) -> ZoneInfo:
    """The ``ZoneInfo`` of an IANA time zone name; ``ControlError`` for anything else.

    >>> check_timezone("Europe/Berlin").key
    'Europe/Berlin'
    >>> try:
    ...     check_timezone("Europe")  # a folder of the zone database, not a zone
    ... except ControlError as exc:
    ...     print(exc)
    unknown time zone: expected an IANA name such as Europe/Berlin
    """
    # the name is not quoted back: it is the wearer's own text
    unknown = ControlError("unknown time zone: expected an IANA name such as Europe/Berlin")
    if not isinstance(name, str) or not 0 < len(name) <= 64:
        raise unknown
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):  # "Europe" is a folder: IsADirectoryError
        raise unknown from None


def check_quiet_hours(value: object) -> tuple[str, str] | None:
    """Quiet hours as ``(start, end)`` "HH:MM" times (local; crossing midnight when start > end),
    or None for none (also from ``[]``, ``false`` or ``{}``: TOML and JSON have no None);
    ``ControlError`` for anything else, equal times included. TOML's ``{start=..., end=...}``
    works too. The one check for the policy's config, its control message and the app.

    >>> check_quiet_hours(["22:00", "07:00"])
    ('22:00', '07:00')
    >>> check_quiet_hours([]) is None
    True
    """
    q = value
    if isinstance(q, Mapping) and set(q) == {"start", "end"}:
        q = (q["start"], q["end"])
    if q is None or q is False or (isinstance(q, (tuple, list, Mapping)) and len(q) == 0):
        return None
    if not (isinstance(q, (tuple, list)) and len(q) == 2
            and all(isinstance(x, str) and _HHMM.fullmatch(x) for x in q)):
        raise ControlError(f'quiet hours must be two "HH:MM" times (start, end) or none, got {q!r}')
    if q[0] == q[1]:
        raise ControlError(f"quiet hours must be two different times (or none), got {list(q)!r}; "
                           "to hold every check-in, pause instead")
    return (q[0], q[1])


def _minutes(hhmm: str) -> int:
    hours, minutes = hhmm.split(":")
    return int(hours) * 60 + int(minutes)


class CheckinPolicy(Processor):
    """Per-wearer check-in policy (see the module docstring and ``docs/checkins.md``).

    Parameters
    ----------
    config : PolicyConfig
        The parameters (defaults as documented there).
    wearer_id : str
        The wearer's id; prompt ids are ``f"{wearer_id}-{int(round(t_s * 1000))}"``.

    Event times (``t_s``, unix s) of ``update`` must not decrease; ``answer`` and ``control``
    may come at any time between ticks.

    Example
    -------
    >>> p = CheckinPolicy(PolicyConfig(sustain_s=0.0, quiet_hours=None), wearer_id="w1")
    >>> d = p.update(1.7e9, 2.5, {"EDA_Tonic_Mean": 2.0})[0]
    >>> d.sent, d.prompt.id, d.prompt.why.sentence
    (True, 'w1-1700000000000', 'Your skin shows more sweat activity than usual.')
    >>> p.answer(1.7e9 + 60, d.prompt.id, rating=1, labels=["fine"]).threshold
    2.1
    """

    def __init__(self, config: PolicyConfig | None = None, wearer_id: str = "wearer"):
        self.config = config if config is not None else PolicyConfig()
        self.wearer_id = wearer_id
        self._tz = ZoneInfo(self.config.timezone)
        q = self.config.quiet_hours
        self._quiet = None if q is None else (_minutes(q[0]), _minutes(q[1]))
        self.reset()

    def reset(self) -> None:
        self.state = PolicyState()

    # --- what the wearer sees -------------------------------------------------------------

    def effective_threshold(self) -> float:
        """The wearer's threshold now: ``threshold + offset`` (score units)."""
        return self.config.threshold + self.state.offset

    def _zone(self) -> ZoneInfo:
        """The wearer's own time zone, else the config's. A zone the wearer set that this
        machine's zone database no longer has (a tzdata update that moved old names such as
        US/Eastern out) falls back to the config's: raising here failed every batch of the
        wearer, and the data with it."""
        tz = self.state.timezone
        if tz is None:
            return self._tz
        try:
            return check_timezone(tz)
        except ControlError:
            return self._tz

    def missing_timezone(self) -> str | None:
        """The wearer's own time zone when this machine's zone database does not have it (the
        config's stands in for it), else None.

        >>> p = CheckinPolicy(wearer_id="w1")
        >>> p.state.timezone = "Gone/Nowhere"   # (from a checkpoint, before a tzdata update)
        >>> p.missing_timezone()
        'Gone/Nowhere'
        """
        try:
            if self.state.timezone is not None:
                check_timezone(self.state.timezone)
        except ControlError:
            return self.state.timezone
        return None

    def is_quiet(self, t_s: float) -> bool:
        """Whether ``t_s`` lies in quiet hours, on the wearer's local wall clock (the wearer's own
        quiet hours and time zone when they set them, else the config's)."""
        own = self.state.quiet_hours
        window = self._quiet if own is None else (None if not own else (_minutes(own[0]), _minutes(own[1])))
        if window is None:
            return False
        local = datetime.fromtimestamp(t_s, self._zone())
        minute = local.hour * 60 + local.minute + local.second / 60.0
        start, end = window
        if start < end:
            return start <= minute < end
        return minute >= start or minute < end  # crosses midnight

    def local_day(self, t_s: float) -> str:
        """The wearer's local calendar date of ``t_s`` (ISO), the unit of the daily cap."""
        return datetime.fromtimestamp(t_s, self._zone()).date().isoformat()

    # --- the tick -------------------------------------------------------------------------

    def update(
        self,
        t_s: float,
        score: float | None,
        explanation: Mapping[str, float],
        gate: str | None = None,
    ) -> list[Decision | Expired]:
        """Advance to the tick at ``t_s``; returns expiries (first) and a trigger decision.

        Parameters
        ----------
        t_s : float
            Event time of the tick, unix s (not decreasing).
        score : float or None
            Stress score (score units); None or NaN = no usable score.
        explanation : mapping of str to float
            Indicator key -> deviation from baseline in baseline SDs (positive = higher).
        gate : str or None
            Why there is no usable score ("motion", "poor_quality", "warmup", "stale"...).

        A tick without a usable score never triggers, breaks a sustained run and does not
        re-arm.
        """
        s = self.state
        cfg = self.config
        t_s = float(t_s)
        if not math.isfinite(t_s):
            raise PolicyError(f"tick time must be a finite unix time in s, got {t_s!r}")
        if s.last_t_s is not None and t_s < s.last_t_s:
            raise PolicyError(
                f"tick times must not decrease: got {t_s} after {s.last_t_s} (event time)"
            )
        out: list[Decision | Expired] = self._expire(t_s)
        gap = s.last_t_s is not None and t_s - s.last_t_s > cfg.max_tick_gap_s
        s.last_t_s = t_s
        usable = gate is None and score is not None and math.isfinite(score)
        if not usable:
            s.above_since_s = None
            return out
        threshold = self.effective_threshold()
        if score < cfg.rearm_level + s.offset:
            s.armed = True
        if score < threshold:
            s.above_since_s = None
            return out
        if s.above_since_s is None or gap:
            s.above_since_s = t_s
        if not s.armed or t_s - s.above_since_s < cfg.sustain_s:
            return out
        # A trigger decision: disarm whatever happens, so a suppressed elevation is not sent
        # later (the wearer is asked about a fresh elevation, not a stale one).
        s.armed = False
        s.above_since_s = None
        reason = self._suppression(t_s)
        prompt = None
        if reason is None:
            reason = REASON_SENT
            prompt = self._prompt(t_s, explanation)
            s.open_prompts[prompt.id] = prompt
            s.last_sent_s = t_s
            s.sent_today += 1
        out.append(
            Decision(
                t_s=t_s,
                sent=prompt is not None,
                reason=reason,
                prompt=prompt,
                explanation=dict(explanation),
                score=float(score),
                threshold=threshold,
            )
        )
        return out

    def _suppression(self, t_s: float) -> str | None:
        s = self.state
        cfg = self.config
        if s.paused_until_s is not None and t_s < s.paused_until_s:
            return REASON_PAUSED
        if s.snoozed_until_s is not None and t_s < s.snoozed_until_s:
            return REASON_SNOOZED
        if self.is_quiet(t_s):
            return REASON_QUIET_HOURS
        day = self.local_day(t_s)
        if s.day is None or day > s.day:  # (ISO dates sort as text) a day already counted
            s.day, s.sent_today = day, 0  # again after a move west keeps its count
        if s.sent_today >= cfg.daily_cap:
            return REASON_DAILY_CAP
        if s.last_sent_s is not None and t_s - s.last_sent_s < cfg.cooldown_s:
            return REASON_COOLDOWN
        return None

    def _prompt(self, t_s: float, explanation: Mapping[str, float]) -> Prompt:
        cfg = self.config
        return Prompt(
            id=f"{self.wearer_id}-{int(round(t_s * 1000))}",
            t_s=t_s,
            message=cfg.message,
            rating_question=cfg.rating_question,
            rating_labels=cfg.rating_labels,
            labels=cfg.labels,
            why=explain(explanation, cfg.why_min_sd, cfg.why_max_items),
            expires_at_s=t_s + cfg.expiry_s,
        )

    def _expire(self, t_s: float) -> list[Decision | Expired]:
        s = self.state
        due = [p for p in s.open_prompts.values() if p.expires_at_s <= t_s]
        due.sort(key=lambda p: (p.expires_at_s, p.id))
        for p in due:
            del s.open_prompts[p.id]
            self._close(p.id, "expired")
        return [Expired(t_s=p.expires_at_s, prompt_id=p.id, prompt_t_s=p.t_s) for p in due]

    def _close(self, prompt_id: str, how: str) -> None:
        closed = self.state.closed
        closed[prompt_id] = how
        while len(closed) > max(self.config.answer_history, 1):
            del closed[next(iter(closed))]  # oldest first (dicts keep insertion order)

    # --- answers and control --------------------------------------------------------------

    def answer(
        self, t_s: float, prompt_id: str, rating: int | None, labels: list[str]
    ) -> AnswerResult:
        """Store the wearer's answer to an open prompt and learn from it.

        Parameters
        ----------
        t_s : float
            When the answer was given, unix s (before the prompt's ``expires_at_s``). Up to
            ``ANSWER_CLOCK_SKEW_S`` (30 s) before the prompt's time counts as at the prompt's
            time: the answering phone's clock may run a few seconds behind the band's.
        prompt_id : str
            The prompt's id.
        rating : int or None
            How tense the wearer feels, 1 (not at all) to 5 (very).
        labels : list of str
            Any of the prompt's labels (case and surrounding spaces are ignored).

        "fine" or "exercising" raise the offset by ``step_up``; "anxious" or "stressed" with a
        rating >= ``confirm_min_rating`` lower it by ``step_down`` (this wins when both kinds of
        label are given); anything else teaches nothing. The offset stays in
        ``[offset_min, offset_max]``.

        Raises
        ------
        AnswerError
            Unknown, expired or already answered prompt; answer before the prompt; rating not an
            integer in 1..5; unknown label; neither rating nor label.
        """
        s = self.state
        cfg = self.config
        t_s = float(t_s)
        prompt = s.open_prompts.get(prompt_id)
        if prompt is None:
            how = s.closed.get(prompt_id)
            if how is not None:
                raise AnswerError(f"prompt {prompt_id!r} is {how} and takes no more answers")
            raise AnswerError(f"unknown prompt id {prompt_id!r}")
        if not math.isfinite(t_s) or t_s < prompt.t_s - ANSWER_CLOCK_SKEW_S:
            raise AnswerError(
                f"answer time {t_s!r} is before prompt {prompt_id!r} was sent ({prompt.t_s})"
            )
        t_s = max(t_s, prompt.t_s)  # a phone clock a few seconds behind the band's
        if t_s >= prompt.expires_at_s:
            raise AnswerError(
                f"prompt {prompt_id!r} expired at {prompt.expires_at_s} (answer at {t_s})"
            )
        n_ratings = len(cfg.rating_labels)
        if rating is not None and (
            isinstance(rating, bool) or not isinstance(rating, int) or not 1 <= rating <= n_ratings
        ):
            raise AnswerError(f"rating must be an integer in 1..{n_ratings} or None, got {rating!r}")
        if isinstance(labels, str) or not all(isinstance(x, str) for x in labels):
            raise AnswerError(f"labels must be a list of strings, got {labels!r}")
        known = {x.strip().lower(): x for x in cfg.labels}  # the config's spelling, e.g. "Fine"
        clean: list[str] = []
        for label in labels:
            name = known.get(label.strip().lower())
            if name is None:
                raise AnswerError(f"unknown label {label!r}; expected any of {list(cfg.labels)}")
            if name not in clean:
                clean.append(name)
        if rating is None and not clean:
            raise AnswerError("an answer needs a rating, a label, or both")

        confirmed = (
            rating is not None
            and rating >= cfg.confirm_min_rating
            and any(x in cfg.lower_labels for x in clean)
        )
        if confirmed:
            learned, delta = "lower", -cfg.step_down
        elif any(x in cfg.raise_labels for x in clean):
            learned, delta = "raise", cfg.step_up
        else:
            learned, delta = "none", 0.0
        # round() keeps repeated 0.1 steps from drifting (0.1 * 3 != 0.3 in binary).
        s.offset = round(min(cfg.offset_max, max(cfg.offset_min, s.offset + delta)), 9)
        del s.open_prompts[prompt_id]
        self._close(prompt_id, "answered")
        result = AnswerResult(
            prompt_id=prompt_id,
            t_s=t_s,
            rating=rating,
            labels=tuple(clean),
            learned=learned,
            offset=s.offset,
            threshold=self.effective_threshold(),
        )
        s.answers.append(result)
        del s.answers[: max(0, len(s.answers) - cfg.answer_history)]
        return result

    def control(self, t_s: float, action: str, duration_s: float | None = None,
                quiet_hours: tuple[str, ...] | list[str] | None = None, timezone: str | None = None) -> ControlResult:
        """Pause, resume or snooze prompts at event time ``t_s``, or set the wearer's quiet hours.

        ``"pause"`` holds prompts until ``"resume"`` (or for ``duration_s`` if given);
        ``"snooze"`` holds them for ``duration_s`` (default ``snooze_default_s``, 1 h);
        ``"resume"`` ends both. Trigger decisions still happen while held (reason "paused" or
        "snoozed"), so the record stays complete. ``"quiet_hours"`` sets the wearer's own quiet
        hours (``quiet_hours``: two "HH:MM" times, or an empty list for none; None keeps them) and,
        when given, their IANA ``timezone``; they replace the config's from then on.

        Raises
        ------
        ControlError
            Unknown action, a time that is not finite, a duration that is not a positive finite
            number of seconds, or quiet hours / a time zone that are not valid.
        """
        s = self.state
        t_s = float(t_s)
        if not math.isfinite(t_s):  # a NaN snooze would end at NaN: never in force, silently
            raise ControlError(f"control time must be a finite unix time in s, got {t_s!r}")
        if action not in CONTROL_ACTIONS:
            raise ControlError(f"unknown control action {action!r}; expected one of {CONTROL_ACTIONS}")
        if action == "quiet_hours":
            if duration_s is not None:
                raise ControlError("'quiet_hours' takes no duration")
            if quiet_hours is None and timezone is None:
                raise ControlError("'quiet_hours' needs quiet hours (an empty list for none), a time zone, or both")
            # missing quiet hours keep the wearer's (a time zone alone, e.g. when travelling)
            q = None if quiet_hours is None else check_quiet_hours(quiet_hours) or ()
            if timezone is not None:
                check_timezone(timezone)
                s.timezone = timezone
            if q is not None:
                s.quiet_hours = q
            return ControlResult(action, t_s, None)
        if quiet_hours is not None or timezone is not None:
            raise ControlError(f"{action!r} takes no quiet hours or time zone")
        if duration_s is not None and (
            isinstance(duration_s, bool)
            or not isinstance(duration_s, (int, float))
            or not math.isfinite(duration_s)
            or duration_s <= 0
        ):
            raise ControlError(f"duration_s must be a positive number of seconds, got {duration_s!r}")
        if action == "resume":
            if duration_s is not None:
                raise ControlError("'resume' takes no duration")
            s.paused_until_s = s.snoozed_until_s = None
            return ControlResult(action, t_s, None)
        if action == "pause":
            s.paused_until_s = math.inf if duration_s is None else t_s + duration_s
            until = None if duration_s is None else s.paused_until_s
            return ControlResult(action, t_s, until)
        length = self.config.snooze_default_s if duration_s is None else float(duration_s)
        s.snoozed_until_s = t_s + length
        return ControlResult(action, t_s, s.snoozed_until_s)
