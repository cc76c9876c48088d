"""The wire contract v1 in code: topics, sample batches, and per-stream sequence tracking.

Everything that crosses MQTT is built and parsed here and nowhere else. Bad input raises a
subclass of ``WireError`` whose message names what was wrong.

Topics (ids are ``[a-z0-9_-]{1,64}``)::

    anxmon/v1/{wearer}/{device}/{signal}         sample batch          bridge -> monitor
    anxmon/v1/{wearer}/{device}/availability     online / offline      bridge (retained, LWT)
    anxmon/v1/{wearer}/{device}/battery          {"v","t","percent"}   bridge (retained)
    anxmon/v1/{wearer}/{device}/contact          {"v","t","contact"}   bridge (retained)
    anxmon/v1/{wearer}/{source}/marker           event marker          device/annotate/replay -> monitor
    anxmon/v1/{wearer}/indicators                features and score    monitor -> out
    anxmon/v1/{wearer}/checkin                   prompt                monitor -> wearer
    anxmon/v1/{wearer}/checkin/response          answer                wearer -> monitor
    anxmon/v1/{wearer}/control                   pause/resume/snooze   wearer -> monitor
    anxmon/v1/{wearer}/rejected                  why input was refused monitor -> bridge
    anxmon/v1/monitor/{instance}/state           online / offline      monitor (retained, LWT)

A sample batch is JSON: ``{"v": 1, "seq": 42, "t0": 1700000000.0, "fs": 64.0, "values": [...]}``
for regular streams and ``{"v": 1, "seq": 43, "t": [...], "values": [...]}`` for irregular ones
(``hr``, ``ibi``). ``acc`` values are ``[x, y, z]`` triples in g.

Example
-------
>>> b = SampleBatch("eda", seq=0, values=np.array([5.0, 5.1]), t0=1.7e9, fs=4.0)
>>> decode_batch(encode_batch(b), "eda").times_s().tolist()
[1700000000.0, 1700000000.25]
>>> parse_topic(data_topic("alice", "e4", "eda")).signal
'eda'
"""

from __future__ import annotations

import json
import math
import re
from itertools import chain
from dataclasses import dataclass, field

import numpy as np
import orjson

from monitor.errors import PayloadError, TopicError, ValueRangeError

VERSION = 1
PREFIX = "anxmon/v1"
ID_PATTERN = re.compile(r"[a-z0-9_-]{1,64}")

MAX_SAMPLES_PER_BATCH = 10_000
MAX_NESTING = 1024  # JSON nesting depth orjson reads; deeper payloads are refused
MAX_SAMPLING_RATE_HZ = 1000.0
EARLIEST_T_S = 946_684_800.0  # 2000-01-01T00:00:00Z
LATEST_T_S = 4_102_444_800.0  # 2100-01-01T00:00:00Z: a later "unix time" is in ms, us or ns, or garbage
MAX_FUTURE_S = 300.0  # a batch may not run more than 5 min ahead of its stream's last sample
AHEAD_SPAN_S = 300.0  # ... unless it stays that far ahead for this long of its own data, batch after batch
AHEAD_MIN_BATCHES = 3  # ... in at least this many batches (the first one's own span never counts)


@dataclass(frozen=True)
class SignalSpec:
    """What the contract says about one signal: unit, regular or not, physiological range."""

    unit: str
    regular: bool
    low: float = -math.inf  # inclusive bounds of a valid value
    high: float = math.inf
    axes: int = 1


SIGNALS: dict[str, SignalSpec] = {
    "bvp": SignalSpec("a.u.", regular=True),
    "ecg": SignalSpec("mV", regular=True),
    "eda": SignalSpec("uS", regular=True, low=0.0, high=100.0),
    "temp": SignalSpec("degC", regular=True, low=15.0, high=45.0),
    "acc": SignalSpec("g", regular=True, axes=3),
    "rsp": SignalSpec("a.u.", regular=True),  # respiration belt or a device's breathing channel
    "cadence": SignalSpec("steps/min", regular=True, low=0.0, high=300.0),  # a device's own step cadence
    "hr": SignalSpec("bpm", regular=False, low=25.0, high=250.0),
    "ibi": SignalSpec("ms", regular=False, low=250.0, high=2000.0),
}


# --------------------------------------------------------------------------------------------
# Topics


def check_id(kind: str, value: str) -> str:
    """Return ``value`` if it is a valid wearer/device/instance id, else raise ``TopicError``."""
    if not isinstance(value, str) or not ID_PATTERN.fullmatch(value):
        raise TopicError(f"{kind} id {value!r} is not valid: expected 1-64 characters of a-z, 0-9, _ or -")
    return value


def check_signal(signal: str) -> str:
    if signal not in SIGNALS:
        raise TopicError(f"unknown signal {signal!r}: expected one of {', '.join(SIGNALS)}")
    return signal


def data_topic(wearer: str, device: str, signal: str) -> str:
    return f"{PREFIX}/{check_id('wearer', wearer)}/{check_id('device', device)}/{check_signal(signal)}"


def availability_topic(wearer: str, device: str) -> str:
    return f"{PREFIX}/{check_id('wearer', wearer)}/{check_id('device', device)}/availability"


STATUS_KINDS = ("battery", "contact")
MAX_DEVICES_PER_WEARER = 16  # device statuses a reader keeps per wearer (the longest silent one goes first)
MARKER_KIND = "marker"  # anxmon/v1/{wearer}/{source}/marker: an event marker (see ``marker_topic``)


def status_topic(wearer: str, device: str, kind: str) -> str:
    """Retained device status: ``battery`` (percent) or ``contact`` (sensor on the skin)."""
    if kind not in STATUS_KINDS:
        raise TopicError(f"unknown status kind {kind!r}: expected one of {', '.join(STATUS_KINDS)}")
    return f"{PREFIX}/{check_id('wearer', wearer)}/{check_id('device', device)}/{kind}"


def status_payload(kind: str, value: float | bool, t_s: float) -> bytes:
    """JSON of a status reading: ``{"v":1,"t":...,"percent":87.0}`` or ``{"v":1,"t":...,"contact":true}``.

    >>> status_payload("contact", True, 1.7e9)
    b'{"v":1,"t":1700000000.0,"contact":true}'
    """
    key = "percent" if kind == "battery" else "contact"
    value = float(value) if kind == "battery" else bool(value)
    return json.dumps({"v": VERSION, "t": float(t_s), key: value}, separators=(",", ":")).encode()


def wearer_topic(wearer: str, kind: str) -> str:
    """``kind`` is one of ``indicators``, ``checkin``, ``checkin/response``, ``control``, ``rejected``."""
    if kind not in WEARER_TOPICS:
        raise TopicError(f"unknown wearer topic {kind!r}: expected one of {', '.join(WEARER_TOPICS)}")
    return f"{PREFIX}/{check_id('wearer', wearer)}/{kind}"


def monitor_state_topic(instance: str) -> str:
    return f"{PREFIX}/monitor/{check_id('instance', instance)}/state"


WEARER_TOPICS = ("indicators", "checkin", "checkin/response", "control", "rejected")
DATA_SUBSCRIPTION = f"{PREFIX}/+/+/+"  # every wearer's data, availability, battery, contact, marker, checkin/response


@dataclass(frozen=True)
class Topic:
    """A parsed topic. ``kind``: ``data``, ``availability``, ``battery``, ``contact``, a wearer topic
    kind (``indicators``, ``checkin``, ...) or ``monitor_state``."""

    kind: str
    wearer: str | None = None
    device: str | None = None
    signal: str | None = None
    instance: str | None = None


def parse_topic(topic: str) -> Topic:
    """Parse any contract topic; raise ``TopicError`` naming what is wrong."""
    parts = topic.split("/")
    if len(parts) < 4 or "/".join(parts[:2]) != PREFIX:
        raise TopicError(f"topic {topic!r} is not an anxmon v1 topic ({PREFIX}/...)")
    rest = parts[2:]
    if rest[0] == "monitor" and len(rest) == 3 and rest[2] == "state":
        return Topic("monitor_state", instance=check_id("instance", rest[1]))
    wearer = check_id("wearer", rest[0])
    tail = "/".join(rest[1:])
    if tail in WEARER_TOPICS:
        return Topic(tail, wearer=wearer)
    if len(rest) == 3:
        device = check_id("device", rest[1])
        if rest[2] == "availability" or rest[2] in STATUS_KINDS or rest[2] == MARKER_KIND:
            return Topic(rest[2], wearer=wearer, device=device)
        return Topic("data", wearer=wearer, device=device, signal=check_signal(rest[2]))
    raise TopicError(f"topic {topic!r} is not one of the contract's topics")


# --------------------------------------------------------------------------------------------
# Sample batches


@dataclass(frozen=True)
class SampleBatch:
    """One batch of one signal. Regular streams have ``t0``/``fs``; irregular ones have ``t``.

    ``values`` is float64, shape ``(n,)`` or ``(n, 3)`` for ``acc``.
    """

    signal: str
    seq: int
    values: np.ndarray
    t0: float | None = None
    fs: float | None = None
    t: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.values)

    @property
    def regular(self) -> bool:
        return self.t is None

    def times_s(self) -> np.ndarray:
        """Event time of every sample, unix seconds."""
        if self.t is not None:
            return self.t
        return self.t0 + np.arange(len(self.values)) / self.fs

    @property
    def start_s(self) -> float:
        return float(self.t[0]) if self.t is not None else float(self.t0)

    @property
    def end_s(self) -> float:
        """Time of the last sample (the first one for an empty batch)."""
        if self.t is not None:
            return float(self.t[-1])
        return float(self.t0 + (len(self.values) - 1) / self.fs)


def encode_batch(batch: SampleBatch) -> bytes:
    """JSON v1 bytes of a batch (compact, no NaN: validate before encoding)."""
    body: dict = {"v": VERSION, "seq": int(batch.seq)}
    if batch.regular:
        body["t0"] = float(batch.t0)
        body["fs"] = float(batch.fs)
    else:
        body["t"] = np.asarray(batch.t, dtype=float).tolist()
    body["values"] = np.asarray(batch.values, dtype=float).tolist()
    return json.dumps(body, separators=(",", ":"), allow_nan=False).encode()


def _reject_constant(name: str):
    raise PayloadError(f"payload contains {name}, which is not a finite number")


def _json_int(text: str) -> int | float:
    """A JSON integer; one of more than 300 digits is infinite, as ``1e400`` is (the range checks
    then refuse it), not an OverflowError in ``float()`` or a ValueError past 4300 digits.

    >>> _json_int("42"), _json_int("-" + "9" * 400)
    (42, -inf)
    """
    return int(text) if len(text.lstrip("-")) <= 300 else float(text)


_NUMBER = (int, float)
_NUMBER_SET = frozenset(_NUMBER)


def _number(body: dict, key: str) -> float:
    value = body.get(key)
    if type(value) not in _NUMBER:
        if key not in body:
            raise PayloadError(f"missing field {key!r}")
        raise PayloadError(f"field {key!r} must be a number, got {type(value).__name__}")
    return float(value)


def _number_list(body: dict, key: str, axes: int = 1) -> np.ndarray:
    value = body.get(key)
    if not isinstance(value, list):
        if key not in body:
            raise PayloadError(f"missing field {key!r}")
        raise PayloadError(f"field {key!r} must be a list, got {type(value).__name__}")
    # (set(map(type, ...)) checks every element in C; bool is not a number here)
    if axes == 1:
        if not set(map(type, value)) <= _NUMBER_SET:
            bad = next(x for x in value if type(x) not in _NUMBER)
            raise PayloadError(f"field {key!r} must hold numbers only, found {type(bad).__name__}")
        return np.asarray(value, dtype=float)
    if not (set(map(type, value)) <= {list} and set(map(len, value)) <= {axes}
            and set(map(type, chain.from_iterable(value))) <= _NUMBER_SET):
        i = next(i for i, row in enumerate(value) if not (
            isinstance(row, list) and len(row) == axes and {type(x) for x in row} <= _NUMBER_SET))
        raise PayloadError(f"field {key!r} must hold [x, y, z] lists of {axes} numbers (row {i} is not)")
    return np.asarray(value, dtype=float).reshape(len(value), axes)


_FIELDS_REGULAR = {"v", "seq", "t0", "fs", "values"}
_FIELDS_IRREGULAR = {"v", "seq", "t", "values"}


def decode_batch(payload: bytes | str, signal: str) -> SampleBatch:
    """Parse and validate one JSON v1 batch of ``signal`` (the topic says which signal).

    Checks everything that does not need the stream's history (``StreamTracker`` does the rest).
    """
    spec = SIGNALS[check_signal(signal)]
    body = _load_object(payload, "payload")
    expected = _FIELDS_REGULAR if spec.regular else _FIELDS_IRREGULAR
    extra = set(body) - expected
    if extra:
        form = "v, seq, t0, fs, values" if spec.regular else "v, seq, t, values"
        raise PayloadError(f"unexpected field(s) {', '.join(sorted(extra))} for {signal} (a {signal} batch has {form})")
    seq = body.get("seq")
    if type(seq) is not int or seq < 0:
        if "seq" not in body:
            raise PayloadError("missing field 'seq'")
        raise PayloadError(f"field 'seq' must be a non-negative integer, got {seq!r:.40}")
    values = _number_list(body, "values", spec.axes)
    if len(values) > MAX_SAMPLES_PER_BATCH:  # before reading anything else of a huge payload
        raise ValueRangeError(f"batch has {len(values)} samples, more than the limit of {MAX_SAMPLES_PER_BATCH}")
    if spec.regular:
        batch = SampleBatch(signal, seq, values, t0=_number(body, "t0"), fs=_number(body, "fs"))
    else:
        t = _number_list(body, "t")
        if len(t) != len(values):
            raise PayloadError(f"fields 't' and 'values' differ in length ({len(t)} vs {len(values)})")
        batch = SampleBatch(signal, seq, values, t=t)
    return validate_batch(batch)


def validate_batch(batch: SampleBatch) -> SampleBatch:
    """Check a batch's size, rate, times and values against the contract; return it unchanged.

    ``decode_batch`` calls it; readers of recordings call it directly, so a recording goes
    through exactly the checks a live stream does.
    """
    spec = SIGNALS[check_signal(batch.signal)]
    n = len(batch.values)
    if n > MAX_SAMPLES_PER_BATCH:
        raise ValueRangeError(f"batch has {n} samples, more than the limit of {MAX_SAMPLES_PER_BATCH}")
    if spec.regular:
        if batch.t0 is None or batch.fs is None:
            raise PayloadError(f"a {batch.signal} batch needs t0 and fs")
        if not (0.0 < batch.fs <= MAX_SAMPLING_RATE_HZ):
            raise ValueRangeError(
                f"sample rate fs={batch.fs:g} Hz is outside 0 < fs <= {MAX_SAMPLING_RATE_HZ:g} Hz"
            )
        _check_times(batch.t0, "t0")
        if n > 1 and batch.end_s >= LATEST_T_S:  # (a tiny fs stretches a few samples over centuries)
            raise ValueRangeError("the batch's last sample (t0 + (n - 1) / fs) is after the year 2100")
    else:
        if batch.t is None:
            raise PayloadError(f"a {batch.signal} batch needs t")
        _check_times(batch.t, "t")
        if n > 1 and np.any(np.diff(batch.t) < 0):
            raise ValueRangeError("timestamps in 't' are not in increasing order")
    _check_values(batch, spec)
    return batch


def unix_s_problem(t: float) -> str | None:
    """Why ``t`` is not a plausible unix time in seconds (2000 to 2100), or None when it is.

    The one definition of the plausible range of every time a device, a user or a file gives
    anxmon (batches, answers, controls, markers, recordings). Callers put the value and its
    place first.

    >>> unix_s_problem(1644228000.0) is None, unix_s_problem(1644228000000.0)
    (True, 'looks like milliseconds; give unix seconds')
    """
    if not math.isfinite(t):
        return "is not a number"
    if t < EARLIEST_T_S:
        return "is before the year 2000; give unix seconds"
    if t < LATEST_T_S:
        return None
    for unit, per_s in (("milliseconds", 1e3), ("microseconds", 1e6), ("nanoseconds", 1e9)):
        if EARLIEST_T_S <= t / per_s < LATEST_T_S:
            return f"looks like {unit}; give unix seconds"
    return "is after the year 2100; give unix seconds"


def _check_times(t: np.ndarray | float, key: str) -> None:
    """Every time (an array, or one number: no array made for it) finite and plausible unix
    seconds (``unix_s_problem``: 2000 to 2100; how far ahead of the stream a batch may be is
    ``StreamTracker``'s business)."""
    if isinstance(t, np.ndarray):
        finite = bool(np.all(np.isfinite(t)))
        extremes = (float(t.min()), float(t.max())) if finite and t.size else ()
    else:
        finite, extremes = math.isfinite(t), (t,)
    if not finite:
        raise ValueRangeError(f"timestamp field {key!r} is not finite")
    for value in extremes:
        if problem := unix_s_problem(value):
            shown = f"{value:.0f}" if abs(value) < 1e13 else f"{value:.4g}"  # (1e308 has 309 digits)
            raise ValueRangeError(f"timestamp {shown} in {key!r} {problem}")


def _check_values(batch: SampleBatch, spec: SignalSpec) -> None:
    v = batch.values
    if not v.size:
        return
    low, high = float(v.min()), float(v.max())  # NaN propagates into both
    if spec.low <= low and high <= spec.high and math.isfinite(low) and math.isfinite(high):
        return  # the common case, in two reductions
    if not np.all(np.isfinite(v)):
        raise ValueRangeError(f"{batch.signal} values contain a non-finite number")
    if low < spec.low or high > spec.high:
        bad = int(np.argmax((v < spec.low) | (v > spec.high)))
        raise ValueRangeError(
            f"{batch.signal} sample {bad} is outside the physiological range "
            f"{spec.low:g}-{spec.high:g} {spec.unit}"
        )


# --------------------------------------------------------------------------------------------
# Per-stream sequence and time tracking


class FutureError(ValueRangeError):
    """A batch too far ahead of its stream's last sample and of the clock (reason ``future``)."""


class FutureGapError(FutureError):
    """A batch that jumps into the future by itself: a sample more than ``MAX_FUTURE_S`` after
    the one before it in the batch and after the stream's clock (one batch spanning now .. a day
    from now: a device clock gone wrong, or a forged batch). The whole batch is refused."""


@dataclass
class StreamStats:
    """Counters of one (wearer, device, signal) stream."""

    accepted: int = 0
    duplicates: int = 0
    missing_batches: int = 0  # batches lost in sequence gaps (never received, or refused before tracking)
    restarts: int = 0  # the device started counting again from a lower seq, later in time
    duplicate_run: int = 0  # duplicates since the last accepted batch (a long run: see the service)
    last_seq: int | None = None
    last_t_s: float | None = None
    jumps: int = 0  # times the stream was taken up again far ahead (after AHEAD_SPAN_S of data there)
    # the run of batches refused as too far ahead, each the next seq and continuing the one before:
    ahead_from_s: float | None = None  # start of its first batch
    ahead_seq: int | None = None  # seq and end of its last batch
    ahead_end_s: float | None = None
    ahead_first_end_s: float | None = None  # end of its first batch: the time confirmed starts there
    ahead_batches: int = 0  # batches in it


@dataclass(frozen=True)
class Verdict:
    """What ``StreamTracker.check`` decided for one batch."""

    accept: bool
    duplicate: bool = False
    gap_batches: int = 0  # batches missing before this one (0 when none)
    restart: bool = False
    jump_s: float = 0.0  # the stream was taken up again this far ahead of its reference (s)
    behind_s: float = 0.0  # the batch ends this far before the stream's newest sample (time went back)
    ahead_batches: int = 0  # with jump_s: the batches of the run that took it up (this one included)
    ahead_confirmed_s: float = 0.0  # ... and the data time they confirmed (s, after the first's end)


@dataclass
class StreamTracker:
    """Drops duplicate batches, reports sequence gaps, refuses timestamps far in the future.

    A batch whose ``seq`` is not above the last one is a duplicate (dropped, counted), unless it
    starts after the stream's last sample, which means the device restarted its counter. A gap
    in ``seq`` counts the batches skipped as missing; a batch refused as too far ahead that was
    the next ``seq`` moves the count on (it was received, not lost).
    "Future" is relative to the stream's last sample and, when the caller passes one, to the
    wall clock: a batch ending more than 5 min beyond both is refused (``FutureError``), so
    wrong time stamps (a clock glitch) cannot drag the stream into the future.

    A stream that stays there is taken up again from there: a simulation running faster than
    real time after the service missed some of it (a crash, a late start), a device clock
    corrected forward. Only time confirmed by several batches counts: a run of refused batches,
    each the next ``seq``, starting where the one before ended (or up to 5 min later) and reaching
    at most 5 min beyond it, is taken up once ``AHEAD_SPAN_S`` (5 min) of data lie after the end
    of its first batch, in at least ``AHEAD_MIN_BATCHES`` batches. One batch's own span never
    counts: a single batch spanning now .. a day from now moved a wearer a day ahead. A batch that
    jumps into the future by itself (a sample more than 5 min after the one before it and after
    the stream's clock) is refused as a whole (``FutureGapError``) and breaks the run; a band
    syncing its memory (readings a day old, then now) does not: its gap lies in the past.

    Example
    -------
    >>> tr = StreamTracker()
    >>> b = SampleBatch("hr", seq=3, values=np.array([60.0]), t=np.array([1.7e9]))
    >>> tr.check(b).accept, tr.check(b).duplicate, tr.stats.duplicates
    (True, True, 1)
    """

    stats: StreamStats = field(default_factory=StreamStats)

    def check(self, batch: SampleBatch, now_s: float | None = None) -> Verdict:
        s = self.stats
        if len(batch) == 0:
            return Verdict(accept=False)
        references = [x for x in (s.last_t_s, now_s) if x is not None]
        reference = max(references) if references else None
        jump_s, run_batches, confirmed_s = 0.0, 0, 0.0
        if reference is not None and batch.end_s > reference + MAX_FUTURE_S:
            try:
                run_batches, confirmed_s = self._ahead(batch, reference)
            except FutureError:
                if s.last_seq is not None and batch.seq == s.last_seq + 1:
                    s.last_seq = batch.seq  # received, though refused: not missing when the next one comes
                raise
            jump_s = batch.end_s - reference
            s.jumps += 1
        self._end_run()
        restart = False
        gap = 0
        if s.last_seq is not None:
            if batch.seq <= s.last_seq:
                if s.last_t_s is not None and batch.start_s > s.last_t_s:
                    restart = True
                    s.restarts += 1
                else:
                    s.duplicates += 1
                    s.duplicate_run += 1
                    return Verdict(accept=False, duplicate=True)
            elif batch.seq > s.last_seq + 1:
                gap = batch.seq - s.last_seq - 1
                s.missing_batches += gap
        behind_s = 0.0 if s.last_t_s is None or restart else max(0.0, s.last_t_s - batch.end_s)
        s.accepted += 1
        s.duplicate_run = 0
        s.last_seq = batch.seq
        s.last_t_s = batch.end_s if s.last_t_s is None else max(s.last_t_s, batch.end_s)
        return Verdict(accept=True, gap_batches=gap, restart=restart, jump_s=jump_s, behind_s=behind_s,
                       ahead_batches=run_batches, ahead_confirmed_s=confirmed_s)

    def _ahead(self, batch: SampleBatch, reference: float) -> tuple[int, float]:
        """A batch ending more than ``MAX_FUTURE_S`` after ``reference`` (s): the run of such
        batches it makes (its length, and the data time it confirmed, s), or ``FutureError``
        while the run has not confirmed ``AHEAD_SPAN_S`` in ``AHEAD_MIN_BATCHES`` batches."""
        s = self.stats
        self._check_future_gaps(batch, reference)
        continues = (s.ahead_seq is not None and s.ahead_first_end_s is not None
                     and batch.seq == s.ahead_seq + 1
                     and s.ahead_end_s <= batch.start_s + 1.0 <= s.ahead_end_s + MAX_FUTURE_S + 1.0
                     and batch.end_s <= s.ahead_end_s + MAX_FUTURE_S)
        if continues:
            s.ahead_batches += 1
        else:
            s.ahead_from_s, s.ahead_first_end_s, s.ahead_batches = batch.start_s, batch.end_s, 1
        s.ahead_seq, s.ahead_end_s = batch.seq, batch.end_s
        run_batches, confirmed_s = s.ahead_batches, batch.end_s - s.ahead_first_end_s
        if confirmed_s < AHEAD_SPAN_S or run_batches < AHEAD_MIN_BATCHES:
            ahead_of = "after the stream's last sample" if reference == s.last_t_s else "in the future"
            raise FutureError(
                f"batch ends {batch.end_s - reference:.0f} s {ahead_of}; "
                f"at most {MAX_FUTURE_S:.0f} s ahead is accepted (is the device clock right?); "
                f"a stream that stays ahead for {AHEAD_SPAN_S:.0f} s of its data, batch after batch, "
                f"is taken up from there ({confirmed_s:.0f} s in {run_batches} batch(es) so far)"
            )
        return run_batches, confirmed_s

    def _end_run(self) -> None:
        s = self.stats
        s.ahead_from_s, s.ahead_seq, s.ahead_end_s, s.ahead_first_end_s, s.ahead_batches = None, None, None, None, 0

    def _check_future_gaps(self, batch: SampleBatch, reference: float) -> None:
        """Refuse (and end the run) a batch with a sample more than ``MAX_FUTURE_S`` after the
        one before it, where that sample also lies more than ``MAX_FUTURE_S`` beyond
        ``reference`` (the stream's clock): the batch jumps into the future by itself."""
        n = len(batch)
        if n < 2:
            return
        if batch.t is None:  # regular: every step is 1 / fs
            if 1.0 / batch.fs <= MAX_FUTURE_S:
                return
            step = 1.0 / batch.fs  # (the first sample beyond reference + MAX_FUTURE_S, not sample 0)
            i = min(n - 1, max(1, math.floor((reference + MAX_FUTURE_S - batch.t0) * batch.fs) + 1))
            at = batch.t0 + i * step
        else:
            t = batch.t
            steps = np.diff(t)
            bad = np.flatnonzero((steps > MAX_FUTURE_S) & (t[1:] > reference + MAX_FUTURE_S))
            if not bad.size:
                return
            i = int(bad[0]) + 1
            step, at = float(steps[i - 1]), float(t[i])
        self._end_run()
        raise FutureGapError(
            f"sample {i} of the batch is {step:.0f} s after the one before it and {at - reference:.0f} s "
            f"after the stream's last sample (and the clock): a batch may not reach more than "
            f"{MAX_FUTURE_S:.0f} s into the future by itself (is the device clock right?); the whole batch is refused"
        )


# --------------------------------------------------------------------------------------------
# Non-sample payloads: indicators, check-ins, answers, controls, rejections, monitor state
#
# All JSON objects with ``"v": 1``. The service (``monitor.service``) publishes indicators,
# check-ins, rejections and its state, and reads answers and controls; phones, dashboards and
# tests use the same functions from the other side.


class IdentityError(PayloadError):
    """A payload that names a wearer, device or prompt other than the one its topic says."""


REJECT_REASONS = (
    "topic",  # not a contract topic, or an id outside [a-z0-9_-]{1,64}
    "payload",  # not JSON v1, missing or mistyped field
    "range",  # values or times outside what the contract allows
    "future",  # the batch ends > 5 min after the stream's last sample and the wall clock
    "identity",  # the payload names another wearer / device / signal / prompt than its topic
    "conflict",  # another device of the wearer already sends this signal
    "unsupported",  # the core could not process the batch (e.g. a sample rate its filters cannot take)
    "answer",  # an answer the check-in policy refuses (unknown/expired prompt, bad rating...)
    "control",  # an unknown control action or a bad duration
    "internal",  # processing failed (a bug); the message is dropped, every other wearer goes on
)

CONTROL_SUBSCRIPTION = f"{PREFIX}/+/control"


def _dumps(body: dict) -> bytes:
    return json.dumps(body, separators=(",", ":"), allow_nan=False).encode()


def _finite_or_none(x) -> float | None:
    if x is None:
        return None
    x = float(x)
    return x if math.isfinite(x) else None


def _load_object(payload: bytes | str, what: str) -> dict:
    try:
        body = orjson.loads(payload)  # the fast path: orjson is ~5x faster than json on batches
    except orjson.JSONDecodeError:
        body = _load_slowly(payload, what)  # the standard library, for its precise messages
    if not isinstance(body, dict):
        raise PayloadError(f"{what} must be a JSON object, got {type(body).__name__}")
    version = body.get("v")
    if version != VERSION or type(version) is not int:
        raise PayloadError(f"{what} has unknown version {version!r}: this monitor reads v={VERSION}")
    return body


def _load_slowly(payload: bytes | str, what: str):
    """What orjson refused, parsed by ``json``: a precise error, or a body (orjson refuses
    some JSON that ``json`` reads, such as 1e400, which the range checks then refuse)."""
    if isinstance(payload, (bytes, bytearray, memoryview)):
        try:
            payload = bytes(payload).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise PayloadError(f"{what} is not UTF-8 text: {exc.reason} at byte {exc.start}") from None
    try:
        return json.loads(payload, parse_constant=_reject_constant, parse_int=_json_int)
    except json.JSONDecodeError as exc:
        raise PayloadError(f"{what} is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    except RecursionError:  # orjson refuses nesting deeper than 1024; json runs out of stack
        raise PayloadError(f"{what} is nested too deeply (at most {MAX_NESTING} levels)") from None


def _optional_time(body: dict, key: str = "t") -> float | None:
    if body.get(key) is None:
        return None
    t = _number(body, key)
    if problem := unix_s_problem(t):
        raise ValueRangeError(f"field {key!r} {problem}")
    return t


def _check_fields(body: dict, allowed: set[str], what: str) -> None:
    extra = set(body) - allowed
    if extra:
        raise PayloadError(f"{what}: unexpected field(s) {', '.join(sorted(extra))}; expected {', '.join(sorted(allowed))}")


def _check_wearer_field(body: dict, wearer: str, what: str) -> None:
    named = body.get("wearer")
    if named is not None and named != wearer:
        raise IdentityError(
            f"{what} names wearer {named!r:.70} but arrived on a topic of wearer {wearer!r} (the topic is the identity)"
        )


def identity_mismatch(payload: bytes | str, wearer: str, device: str | None = None, signal: str | None = None) -> str | None:
    """Why a data payload's own identity fields contradict its topic, or None.

    The contract's batches carry no identity (the topic is the identity), so ``decode_batch``
    refuses these fields anyway; this names the more useful reason for the ``rejected`` message.
    Only call it on a payload ``decode_batch`` already refused (it parses the JSON again).

    >>> identity_mismatch(b'{"v":1,"wearer":"bob","seq":0}', "alice")
    "payload names wearer 'bob' but arrived on a topic of wearer 'alice' (the topic is the identity)"
    """
    try:
        body = json.loads(bytes(payload).decode("utf-8") if not isinstance(payload, str) else payload)
    except (ValueError, RecursionError):  # (not UTF-8, not JSON, an integer of over 4300 digits)
        return None
    if not isinstance(body, dict):
        return None
    for key, expected in (("wearer", wearer), ("device", device), ("signal", signal)):
        if key in body and expected is not None and body[key] != expected:
            return (
                f"payload names {key} {body[key]!r:.70} but arrived on a topic of {key} {expected!r} "
                "(the topic is the identity)"
            )
    return None


def encode_indicators(
    t_s: float,
    score: float | None,
    gate: str | None,
    values: dict[str, float],
    quality: dict[str, str],
    contributions: dict[str, float] | None = None,
    deviations: dict[str, float] | None = None,
    threshold: float | None = None,
) -> bytes:
    """JSON of ``anxmon/v1/{wearer}/indicators``: one output tick of the wearer's monitor.

    ``score`` is None when withheld and ``gate`` then says why (``warmup``, ``motion``,
    ``poor_quality``, ``stale``...); ``values`` are the tick's indicators (NeuroKit-style keys);
    ``quality`` maps a modality to ``ok`` or a reason; ``contributions`` each indicator's share
    of the score; ``deviations`` each indicator's distance from the wearer's baseline in baseline
    SDs; ``threshold`` the wearer's effective check-in threshold. Non-finite numbers become null.

    >>> json.loads(encode_indicators(1.7e9, 1.25, None, {"HR_Mean": 71.0}, {"hrv": "ok"}))["score"]
    1.25
    """
    clean = lambda d: {str(k): _finite_or_none(v) for k, v in (d or {}).items()}  # noqa: E731
    return _dumps(
        {
            "v": VERSION,
            "t": float(t_s),
            "score": _finite_or_none(score),
            "gate": gate,
            "threshold": _finite_or_none(threshold),
            "values": clean(values),
            "quality": {str(k): str(v) for k, v in quality.items()},
            "contributions": clean(contributions),
            "deviations": clean(deviations),
        }
    )


def decode_indicators(payload: bytes | str) -> dict:
    """Parse an indicators payload (for dashboards, phones and tests); checks version and ``t``."""
    body = _load_object(payload, "indicators")
    _number(body, "t")
    for key in ("values", "quality"):
        if not isinstance(body.get(key), dict):
            raise PayloadError(f"indicators: field {key!r} must be an object")
    return body


def encode_checkin(prompt: dict) -> bytes:
    """JSON of ``anxmon/v1/{wearer}/checkin``: ``{"v": 1}`` plus ``Prompt.to_dict()``
    (``id``, ``t``, ``message``, ``options``, ``why``, ``expires_at``)."""
    return _dumps({"v": VERSION, **prompt})


def decode_checkin(payload: bytes | str) -> dict:
    """Parse a check-in prompt; checks version, ``id``, ``t`` and ``expires_at`` (null or unix s)."""
    body = _load_object(payload, "check-in")
    if not isinstance(body.get("id"), str):
        raise PayloadError("check-in: field 'id' must be a string")
    _number(body, "t")
    _optional_time(body, "expires_at")
    return body


@dataclass(frozen=True)
class Answer:
    """A wearer's answer to a check-in (``anxmon/v1/{wearer}/checkin/response``).

    ``t_s`` is when it was given (event time, unix s); None lets the monitor use the wearer's
    current event time (its newest sample), which is right for live use and for replays alike.
    """

    prompt_id: str
    rating: int | None = None
    labels: tuple[str, ...] = ()
    t_s: float | None = None


def encode_answer(prompt_id: str, rating: int | None = None, labels=(), t_s: float | None = None) -> bytes:
    """``{"v":1,"prompt_id":...,"rating":3,"labels":["anxious"]}`` (+ ``"t"`` when given).

    >>> decode_answer(encode_answer("alice-1700000000000", 4, ["anxious"]), "alice").rating
    4
    """
    body = {"v": VERSION, "prompt_id": prompt_id, "rating": rating, "labels": list(labels)}
    if t_s is not None:
        body["t"] = float(t_s)
    return _dumps(body)


def decode_answer(payload: bytes | str, wearer: str) -> Answer:
    """Parse an answer that arrived on ``wearer``'s topic.

    Types are checked here; what the policy accepts (open prompt, rating 1..5, known labels) is
    checked by the policy. A prompt id of another wearer (``{wearer}-{ms}``), or a ``wearer``
    field naming someone else, is an ``IdentityError``.
    """
    body = _load_object(payload, "answer")
    _check_fields(body, {"v", "prompt_id", "t", "rating", "labels", "wearer"}, "answer")
    _check_wearer_field(body, wearer, "answer")
    prompt_id = body.get("prompt_id")
    if not isinstance(prompt_id, str) or not prompt_id:
        raise PayloadError("answer: field 'prompt_id' must be a non-empty string")
    if not prompt_id.startswith(f"{wearer}-"):
        raise IdentityError(f"answer: prompt {prompt_id!r:.80} is not one of {wearer!r}'s prompts")
    rating = body.get("rating")
    if rating is not None and type(rating) is not int:
        raise PayloadError(f"answer: field 'rating' must be an integer or null, got {type(rating).__name__}")
    labels = body.get("labels", [])
    if not isinstance(labels, list) or not all(isinstance(x, str) for x in labels):
        raise PayloadError("answer: field 'labels' must be a list of strings")
    return Answer(prompt_id, rating, tuple(labels), _optional_time(body))


MAX_CONTROL_DURATION_S = 30 * 86400.0  # a pause or snooze of at most 30 days (the app offers up to 7)


@dataclass(frozen=True)
class Control:
    """A wearer's request on ``anxmon/v1/{wearer}/control``: ``pause``, ``resume``, ``snooze``
    or ``quiet_hours``.

    ``duration_s`` (s) is optional; ``t_s`` as in ``Answer``. ``quiet_hours`` (two "HH:MM"
    strings, or empty for none) and ``timezone`` (IANA name) go with ``quiet_hours``.
    """

    action: str
    duration_s: float | None = None
    t_s: float | None = None
    quiet_hours: tuple[str, ...] | None = None
    timezone: str | None = None


def encode_control(action: str, duration_s: float | None = None, t_s: float | None = None,
                   quiet_hours=None, timezone: str | None = None) -> bytes:
    """``{"v":1,"action":"snooze","duration_s":1800}`` (+ ``"t"`` when given);
    ``{"v":1,"action":"quiet_hours","quiet_hours":["22:00","07:00"],"timezone":"Europe/Berlin"}``.

    >>> decode_control(encode_control("snooze", 1800), "alice").duration_s
    1800.0
    >>> decode_control(encode_control("quiet_hours", quiet_hours=["23:00", "06:30"]), "alice").quiet_hours
    ('23:00', '06:30')
    """
    body: dict = {"v": VERSION, "action": action}
    if duration_s is not None:
        body["duration_s"] = float(duration_s)
    if t_s is not None:
        body["t"] = float(t_s)
    if quiet_hours is not None:
        body["quiet_hours"] = list(quiet_hours)
    if timezone is not None:
        body["timezone"] = str(timezone)
    return _dumps(body)


def decode_control(payload: bytes | str, wearer: str) -> Control:
    """Parse a control request that arrived on ``wearer``'s topic (the policy checks the action)."""
    body = _load_object(payload, "control")
    _check_fields(body, {"v", "action", "duration_s", "t", "wearer", "quiet_hours", "timezone"}, "control")
    _check_wearer_field(body, wearer, "control")
    action = body.get("action")
    if not isinstance(action, str):
        raise PayloadError("control: field 'action' must be a string (pause, resume, snooze or quiet_hours)")
    duration = None if body.get("duration_s") is None else _number(body, "duration_s")
    quiet = body.get("quiet_hours")
    if quiet is not None and (not isinstance(quiet, list) or not all(isinstance(x, str) for x in quiet)):
        raise PayloadError("control: field 'quiet_hours' must be a list of \"HH:MM\" strings")
    timezone = body.get("timezone")
    if timezone is not None and not isinstance(timezone, str):
        raise PayloadError("control: field 'timezone' must be a string (an IANA time zone name)")
    return Control(action, duration, _optional_time(body), None if quiet is None else tuple(quiet), timezone)


MAX_MARKER_TEXT = 200  # characters of a marker's kind or label


@dataclass(frozen=True)
class MarkerMessage:
    """An event marker on ``anxmon/v1/{wearer}/{source}/marker`` ("therapy session", an E4 tag...).

    ``t_s`` is the event time (unix s; None: the wearer's current event time); ``kind`` groups
    markers in reports; ``label`` is free text. Both may be empty (see ``monitor.markers``).
    """

    t_s: float | None
    kind: str = ""
    label: str = ""


def encode_marker(t_s: float | None, label: str = "", kind: str = "") -> bytes:
    """``{"v":1,"t":1700000000.0,"kind":"therapy session","label":"session 3"}``.

    >>> decode_marker(encode_marker(1.7e9, "session 3", "therapy session"), "alice").kind
    'therapy session'
    """
    body: dict = {"v": VERSION, "kind": str(kind), "label": str(label)}
    if t_s is not None:
        body["t"] = float(t_s)
    return _dumps(body)


def marker_topic(wearer: str, source: str) -> str:
    """``anxmon/v1/{wearer}/{source}/marker``: ``source`` is the device that marked the event (an
    E4's tag button) or what published it (``annotate``). Under the data subscription on purpose:
    nats-server's MQTT gives each subscription's backlog the session's whole window of
    unacknowledged messages, and drops (until its 30 s redelivery) what another subscription
    brings while that window is full."""
    return f"{PREFIX}/{check_id('wearer', wearer)}/{check_id('source', source)}/{MARKER_KIND}"


def decode_marker(payload: bytes | str, wearer: str) -> MarkerMessage:
    """Parse a marker that arrived on ``wearer``'s topic; kind and label are strings of at most
    ``MAX_MARKER_TEXT`` characters (at least one of them or the time must say something)."""
    body = _load_object(payload, "marker")
    _check_fields(body, {"v", "t", "kind", "label", "wearer"}, "marker")
    _check_wearer_field(body, wearer, "marker")
    texts = []
    for key in ("kind", "label"):
        value = body.get(key, "")
        if value is None:
            value = ""
        if not isinstance(value, str):
            raise PayloadError(f"marker: field {key!r} must be a string")
        if len(value) > MAX_MARKER_TEXT:
            raise ValueRangeError(f"marker: field {key!r} is longer than {MAX_MARKER_TEXT} characters")
        texts.append(value.strip())
    return MarkerMessage(_optional_time(body), texts[0], texts[1])


def encode_rejected(topic: str, reason: str, error: str, t_s: float) -> bytes:
    """JSON of ``anxmon/v1/{wearer}/rejected``: which topic, a reason code, and the error text.

    ``reason`` is one of ``REJECT_REASONS``; ``t`` is the monitor's wall clock. The payload
    itself is never echoed (it may hold health data).

    >>> decode_rejected(encode_rejected("anxmon/v1/a/e4/eda", "payload", "bad", 1.7e9))["reason"]
    'payload'
    """
    if reason not in REJECT_REASONS:
        raise ValueError(f"unknown reject reason {reason!r}; expected one of {REJECT_REASONS}")
    return _dumps({"v": VERSION, "t": float(t_s), "topic": topic, "reason": reason, "error": error})


def decode_rejected(payload: bytes | str) -> dict:
    body = _load_object(payload, "rejected")
    if body.get("reason") not in REJECT_REASONS:
        raise PayloadError(f"rejected: unknown reason {body.get('reason')!r:.40}")
    return body


MONITOR_STATES = ("online", "offline")


def encode_monitor_state(state: str, instance: str, version: str, t_s: float | None = None,
                         quiet_hours: tuple[str, str] | None | bool = False, timezone: str | None = None,
                         snooze_default_s: float | None = None) -> bytes:
    """JSON of the retained ``anxmon/v1/monitor/{instance}/state``: ``online`` / ``offline``.

    ``t`` (wall clock) is absent from the last will, which the broker sends at an unknown time.
    ``quiet_hours`` (two "HH:MM", or None for none; left out when False), ``timezone`` and
    ``snooze_default_s`` (s, how long a snooze without a duration lasts) are the service's
    ``[policy]`` defaults, which apply to a wearer who has not set their own: the app shows
    them, so they are set in one place. Each is optional (an older service does not say).

    >>> body = decode_monitor_state(encode_monitor_state("online", "main", "0.1.0", 1.7e9, ("22:00", "07:00"), "UTC", 1800))
    >>> body["state"], body["quiet_hours"], body["timezone"], body["snooze_default_s"]
    ('online', ['22:00', '07:00'], 'UTC', 1800.0)
    """
    if state not in MONITOR_STATES:
        raise ValueError(f"monitor state must be one of {MONITOR_STATES}, got {state!r}")
    body = {"v": VERSION, "state": state, "instance": check_id("instance", instance), "version": version}
    if t_s is not None:
        body["t"] = float(t_s)
    if quiet_hours is not False:
        body["quiet_hours"] = None if quiet_hours is None else list(quiet_hours)
    if timezone is not None:
        body["timezone"] = timezone
    if snooze_default_s is not None:
        body["snooze_default_s"] = float(snooze_default_s)
    return _dumps(body)


def decode_monitor_state(payload: bytes | str) -> dict:
    body = _load_object(payload, "monitor state")
    if body.get("state") not in MONITOR_STATES:
        raise PayloadError(f"monitor state: field 'state' must be one of {MONITOR_STATES}")
    if "snooze_default_s" in body and not 0 < _number(body, "snooze_default_s") < math.inf:
        raise PayloadError("monitor state: field 'snooze_default_s' must be a number of seconds > 0")
    return body


def decode_availability(payload: bytes) -> str:
    """A device's retained availability: ``online``, or ``offline`` (also its last will).

    >>> decode_availability(b"offline")
    'offline'
    """
    text = bytes(payload).decode("utf-8", errors="replace").strip()
    if text not in ("online", "offline"):
        raise PayloadError("availability must be 'online' or 'offline'")
    return text


def decode_status(payload: bytes | str, kind: str) -> float | bool:
    """The value of a retained device status: battery percent (0-100) or skin contact (bool).

    >>> decode_status(status_payload("battery", 87, 1.7e9), "battery")
    87.0
    """
    if kind not in STATUS_KINDS:
        raise TopicError(f"unknown status kind {kind!r}: expected one of {', '.join(STATUS_KINDS)}")
    body = _load_object(payload, kind)
    if kind == "battery":
        percent = _number(body, "percent")
        if not 0.0 <= percent <= 100.0:
            raise ValueRangeError("battery: 'percent' must be within 0-100")
        return percent
    contact = body.get("contact")
    if not isinstance(contact, bool):
        raise PayloadError("contact: field 'contact' must be true or false")
    return contact
