"""Personal baseline and stress score: how far this wearer's body is from its own calm normal.

``Baseline`` learns, per indicator, a mean and a spread from calm, still, good-quality ticks
only (an anomaly filter that does not learn from what it flags: stressed, moving or poor time
never becomes the wearer's new normal; a calm value, seen only below the cut that made its tick
calm, is learned as if from the whole distribution, or the mean would ratchet down). During
warm-up it averages every calm tick equally; afterwards it adapts slowly (exponential forgetting
with time constant ``adapt_tau_s``). A change that lasts (an indicator's recent level more than
one spread away for ``settle_s`` of still time, 6 h) is taken as the new normal: an anxious hour
is not, a new medication is.

``StressScorer`` turns each indicator row into one score: the weighted mean of the indicators'
deviations in their stress direction (heart rate up, RMSSD down, skin conductance level and
SCR rate up, skin temperature down), each in units of the wearer's own spread (floored so a very
steady baseline does not turn noise into alarm), clipped at ``z_cap``. Each indicator's share is
kept as the explanation. See ``docs/scoring.md`` for the choices and their sources.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from statistics import NormalDist

from monitor.core.base import Features, Processor
from monitor.errors import ConfigError
from monitor.toml_tables import bad_value, is_number

# indicator -> (modality, stress direction, default weight, spread floor in the indicator's unit,
# spread floor as a share of the baseline mean)
INDICATORS: dict[str, tuple[str, float, float, float, float]] = {
    "HR_Mean": ("heart", +1.0, 1.0, 3.0, 0.0),  # bpm
    "HRV_RMSSD": ("heart", -1.0, 0.7, 5.0, 0.0),  # ms
    "EDA_Tonic_Mean": ("eda", +1.0, 1.0, 0.05, 0.05),  # µS; its spread grows with its level
    "SCR_Rate": ("eda", +1.0, 0.8, 1.0, 0.0),  # per minute
    "TEMP_Mean": ("temp", -1.0, 0.3, 0.2, 0.0),  # °C
    "RSP_Rate": ("rsp", +1.0, 0.5, 2.0, 0.0),  # breaths/min
    "ACC_Restlessness": ("restlessness", +1.0, 0.3, 0.1, 0.0),  # share of restless seconds
}


@dataclass(frozen=True)
class ScoreConfig:
    """Parameters of baseline and score (``[score]`` in the config file; see docs/scoring.md).

    weights: indicator -> weight (>= 0, 0 removes it; at least one > 0). floors: indicator ->
    smallest baseline spread (> 0, the indicator's unit). relative_floors: indicator -> smallest
    baseline spread as a share of the baseline mean (>= 0; skin conductance level: 0.05, a
    level of 4 µS has a spread of at least 0.2 µS). warmup_s: calm data each indicator
    needs before it enters the score (s, >= 0). adapt_tau_s: time constant of the slow baseline
    adaptation after warm-up (s, > 0). learn_below: ticks scoring at or above this, or at or
    above the wearer's check-in threshold when that is lower, are not learned (> 0; the
    default is the threshold's). learn_z_below: nor are ticks with one indicator this many
    baseline spreads or more in its stress direction (> 0). z_cap: largest deviation one
    indicator may contribute (baseline spreads, > 0).
    motion_holdoff_s: the score stays withheld at least this long after movement stops (s, >= 0).
    recovery_ratio: after a bout of movement, the hold-off grows by this many seconds per second
    of movement in the bout (>= 0; heart rate and sweating take longer to settle after a run than
    after a walk to the kitchen). max_holdoff_s: the longest hold-off (s, >= motion_holdoff_s).
    settle_s: an indicator whose recent level (a 10 min average of still, good-quality ticks,
    whatever their score) stays more than one baseline spread away from its mean for this many
    seconds of such ticks moves its mean there: a lasting change becomes the new normal (s, > 0).
    A value out of range is a ``ConfigError``.
    """

    weights: dict = field(default_factory=lambda: {k: v[2] for k, v in INDICATORS.items()})
    floors: dict = field(default_factory=lambda: {k: v[3] for k, v in INDICATORS.items()})
    relative_floors: dict = field(default_factory=lambda: {k: v[4] for k, v in INDICATORS.items()})
    warmup_s: float = 300.0
    adapt_tau_s: float = 3600.0
    learn_below: float = 2.0
    learn_z_below: float = 3.0
    z_cap: float = 4.0
    motion_holdoff_s: float = 120.0
    recovery_ratio: float = 1.5
    max_holdoff_s: float = 2700.0
    settle_s: float = 21600.0

    def __post_init__(self) -> None:
        def check(key: str, value, positive: bool, unit: str) -> None:
            if not is_number(value):
                raise bad_value("score", key, "a finite number", value)
            if value <= 0 if positive else value < 0:
                raise bad_value("score", key, f"{'>' if positive else '>='} 0 ({unit})", value)

        for table, positive, unit in (("weights", False, "0 leaves the indicator out"),
                                      ("floors", True, "in the indicator's unit"),
                                      ("relative_floors", False, "a share of the baseline mean")):
            if not isinstance(getattr(self, table), dict):
                raise ConfigError(f"score: '{table}' must be a table of indicator = number")
            for name, value in getattr(self, table).items():
                check(f"{table}.{name}", value, positive, unit)
        if not any(w > 0 for w in self.weights.values()):
            raise ConfigError(f"score: 'weights' must have at least one weight > 0, got {self.weights!r}")
        for key, positive, unit in (("warmup_s", False, "s"), ("adapt_tau_s", True, "s"),
                                    ("learn_below", True, "score units"), ("learn_z_below", True, "baseline spreads"),
                                    ("z_cap", True, "baseline spreads"),
                                    ("motion_holdoff_s", False, "s"), ("recovery_ratio", False, "s per s moving"),
                                    ("max_holdoff_s", False, "s"), ("settle_s", True, "s")):
            check(key, getattr(self, key), positive, unit)
        if self.max_holdoff_s < self.motion_holdoff_s:
            raise ConfigError(f"score: 'max_holdoff_s' must be >= motion_holdoff_s ({self.motion_holdoff_s!r}), "
                              f"got {self.max_holdoff_s!r}")


RECENT_TAU_S = 600.0  # time constant of an indicator's recent level (s)
SHIFT_Z = 1.0  # a recent level this many spreads from the mean is a change (baseline spreads)
MOVING_KEYS = ("ACC_Moving", "CADENCE_Moving")  # 0/1: the accelerometer's or the device's step cadence
MOTION_MEMORY_S = 3600.0  # a wearer whose motion signal has been silent this long has none (s)
MIN_CUT_SD = 0.5  # a value learned only below a lower cut than this is not learned (learned SDs)
_NORMAL = NormalDist()


@dataclass
class _Stat:
    n_s: float = 0.0  # calm seconds learned
    mean: float = 0.0
    var: float = 0.0
    recent: float | None = None  # exponential average of every still, good-quality value (RECENT_TAU_S)
    shift_side: float = 0.0  # +1 / -1 while ``recent`` is a change above / below the mean, else 0
    shifted_s: float = 0.0  # still, good-quality seconds it has been so
    watched_t: float | None = None  # event time of the last tick watched (a longer gap: old news)


@dataclass
class BaselineState:
    stats: dict = field(default_factory=dict)  # indicator -> _Stat


class Baseline(Processor):
    """Mean and spread of each indicator over the wearer's calm, still, good-quality time.

    Example
    -------
    >>> b = Baseline(ScoreConfig(warmup_s=15.0))
    >>> for hr in (60.0, 62.0, 64.0):
    ...     b.learn({"HR_Mean": hr}, seconds=5.0)
    >>> b.ready("HR_Mean"), round(b.mean("HR_Mean"), 1)
    (True, 62.0)
    """

    def __init__(self, config: ScoreConfig):
        self.config = config
        self.state = BaselineState()

    def learn(self, values: dict[str, float], seconds: float, cuts: dict[str, float] | None = None) -> None:
        """Learn one tick's ``values`` (indicator -> value in its own unit) standing for
        ``seconds`` of data: a running mean and variance during warm-up, then an exponential
        one with time constant ``adapt_tau_s``.

        ``cuts`` (indicator -> baseline spreads) says that a value was offered only because its
        deviation in the stress direction stayed below the cut (a calm tick). Such a value is
        learned as if from the whole normal distribution, not from its part below the cut
        (``untruncated``)."""
        for name, x in values.items():
            st = self.state.stats.setdefault(name, _Stat())
            if cuts and name in cuts and st.n_s >= self.config.warmup_s:
                x = self.untruncated(name, x, cuts[name])
                if x is None:
                    continue
            if st.n_s < self.config.warmup_s:
                weight = seconds / (st.n_s + seconds)  # plain running mean during warm-up
            else:
                weight = 1.0 - math.exp(-seconds / self.config.adapt_tau_s)
            delta = x - st.mean
            st.mean += weight * delta
            st.var = (1.0 - weight) * (st.var + weight * delta * delta)
            st.n_s += seconds

    def untruncated(self, name: str, x: float, cut: float) -> float | None:
        """``x`` mapped from the normal distribution (learned mean and SD) cut off above ``cut``
        spreads in the stress direction, to the whole distribution: the same standardized value,
        with the cut-off part's mean and variance restored. None when the cut is below
        ``MIN_CUT_SD`` learned SDs (too little of the distribution is left to stand for it).

        Learning only values below a cut that moves with the learned mean is a ratchet: the top
        of the distribution is never seen, the mean falls and the spread shrinks, and the cut
        falls with them. A wearer whose score is one indicator (an HR-only strap) was learned
        0.8 SD too low, with a spread of 0.6 SD (the floor; ``tests/test_score.py``), and scored
        2 or more in 22 % of its ticks at rest (2 % against the true baseline:
        ``bench/null_trigger_rate.py``; 4 % with this correction and the cut at the check-in
        threshold, ``learn_below`` 2). The correction is the truncated normal's mean and
        variance (Johnson, Kotz & Balakrishnan 1994, ch. 13). It holds for values that vary
        independently from tick to tick; real ones wander over minutes, and with a cut near
        1 SD (``learn_below`` 1 on an HR-only strap) it could not keep up (0.3-0.4 SD off).

        >>> b = Baseline(ScoreConfig(warmup_s=10.0))
        >>> b.learn({"HR_Mean": 60.0}, 5.0); b.learn({"HR_Mean": 70.0}, 5.0)  # mean 65, SD 5 bpm
        >>> round(b.untruncated("HR_Mean", 65.0, cut=1.0), 2)  # at the mean, seen below +1 SD
        66.81
        """
        st = self.state.stats[name]
        sd = math.sqrt(st.var)
        if sd <= 0.0:
            return x
        cut_sd = cut * self.spread(name) / sd  # the cut in learned SDs (the spread may be floored)
        if cut_sd < MIN_CUT_SD:
            return None
        if cut_sd > 8.0:
            return x  # nothing of the distribution is cut off
        below = _NORMAL.pdf(cut_sd) / _NORMAL.cdf(cut_sd)  # how far the part below lies under the mean (SDs)
        scale = 1.0 / math.sqrt(1.0 - cut_sd * below - below * below)  # 1 / its SD (SDs)
        direction = INDICATORS[name][1] if name in INDICATORS else 1.0
        z = direction * (x - st.mean) / sd
        return st.mean + direction * sd * scale * (z + below)

    def watch(self, values: dict[str, float], t: float, seconds: float) -> list[str]:
        """Follow the recent level of each ready indicator over still, good-quality ticks,
        stressed or not, and move the mean of those whose recent level has stayed on one side,
        more than ``SHIFT_Z`` spreads away, for ``settle_s`` of such ticks (``seconds`` each:
        time off the wrist or moving does not count). Returns the names moved. An indicator's
        count starts again when its recent level comes back or crosses, and its recent level
        after a gap longer than ``RECENT_TAU_S`` (a night off the wrist).

        >>> b = Baseline(ScoreConfig(warmup_s=5.0, settle_s=3600.0))
        >>> b.learn({"HR_Mean": 60.0}, seconds=5.0)
        >>> moved = [b.watch({"HR_Mean": 70.0}, t=5.0 * k, seconds=5.0) for k in range(1200)]
        >>> [k for k, names in enumerate(moved) if names], round(b.mean("HR_Mean"), 1)
        ([762], 70.0)
        """
        moved = []
        weight = 1.0 - math.exp(-seconds / RECENT_TAU_S)
        for name, x in values.items():
            st = self.state.stats.get(name)
            if st is None or st.n_s < self.config.warmup_s:
                continue
            if st.watched_t is not None and t - st.watched_t > RECENT_TAU_S:
                st.recent, st.shift_side, st.shifted_s = None, 0.0, 0.0  # a gap: the level is old news
            st.watched_t = t
            recent = st.mean if st.recent is None else st.recent  # (starts from the baseline)
            st.recent = recent + weight * (x - recent)
            z = (st.recent - st.mean) / self.spread(name)
            side = 0.0 if abs(z) <= SHIFT_Z else math.copysign(1.0, z)
            if side != st.shift_side:  # back within the spread, or a change to the other side
                st.shift_side, st.shifted_s = side, 0.0
            elif side:
                st.shifted_s += seconds
                if st.shifted_s >= self.config.settle_s:
                    st.mean, st.shift_side, st.shifted_s = st.recent, 0.0, 0.0
                    moved.append(name)
        return moved

    def ready(self, name: str) -> bool:
        st = self.state.stats.get(name)
        return st is not None and st.n_s >= self.config.warmup_s

    def mean(self, name: str) -> float:
        """The wearer's calm level of an indicator (its own unit)."""
        return self.state.stats[name].mean

    def spread(self, name: str) -> float:
        """The calm spread (SD, the indicator's unit), at least the indicator's floor and its
        relative floor times the mean."""
        st = self.state.stats[name]
        cfg = self.config
        return max(math.sqrt(st.var), cfg.floors.get(name, 0.0), cfg.relative_floors.get(name, 0.0) * abs(st.mean))


@dataclass(frozen=True)
class Score:
    """The score of one tick. ``value`` is None when withheld; ``gate`` then says why.

    ``contributions`` maps each indicator used to its share of ``value`` (they sum to it);
    ``deviations`` maps it to (value, baseline mean, deviation in baseline spreads, positive
    when higher than usual; for RMSSD and temperature lower is the stress direction).
    """

    t: float
    value: float | None
    gate: str | None
    contributions: dict[str, float]
    deviations: dict[str, tuple[float, float, float]]
    used: tuple[str, ...]


@dataclass
class ScorerState:
    last_moving_t: float = -math.inf
    bout_moving_s: float = 0.0  # seconds of movement in the current (or last) bout
    motion_seen_t: float = -math.inf  # the last tick with a motion value (ACC_Moving or CADENCE_Moving)


class StressScorer(Processor):
    """Baseline plus score, one tick at a time (event time, no clock).

    Example
    -------
    >>> s = StressScorer(ScoreConfig(warmup_s=10.0))
    >>> calm = Features(0.0, {"HR_Mean": 60.0}, {"hrv": "ok"})
    >>> _ = [s.update(Features(t, calm.values, calm.quality)) for t in (5.0, 10.0, 15.0)]
    >>> s.update(Features(20.0, {"HR_Mean": 75.0}, {"hrv": "ok"})).value
    4.0
    """

    def __init__(self, config: ScoreConfig | None = None, tick_s: float = 5.0):
        self.config = config or ScoreConfig()
        self.tick_s = tick_s  # seconds of data one tick stands for (the pipeline's tick)
        self.baseline = Baseline(self.config)
        self.state = ScorerState()

    def get_state(self, copy: bool = True):
        return (super().get_state(copy), self.baseline.get_state(copy))

    def set_state(self, state) -> None:
        mine, baseline = state
        super().set_state(mine)
        self.baseline.set_state(baseline)

    def state_nbytes(self) -> int:
        return super().state_nbytes() + self.baseline.state_nbytes()

    def update(self, row: Features, elevated_at: float | None = None) -> Score:
        """Score one tick's indicator row against the baseline, then let the baseline learn from
        it when it is still and calm (and follow a lasting change, ``Baseline.watch``): scoring
        below ``learn_below`` and below ``elevated_at`` (the wearer's check-in threshold, when
        given: a tick that counts toward a check-in is never learned), with no indicator
        ``learn_z_below`` spreads or more in its stress direction. The
        score is withheld (``gate``) while moving or recovering from movement (``motion``); when
        the wearer's motion signal (``MOVING_KEYS``) is missing from the tick but was there
        within ``MOTION_MEMORY_S`` (``motion_unknown``: moving or not, nobody knows; after an
        hour the wearer counts as one whose device has none); without a usable indicator
        (``poor_quality``); or before any indicator finished its warm-up (``warmup``)."""
        cfg = self.config
        # processors emit a value only when its window passed their validity rules (a poor
        # window has its values withheld), so every value present is usable
        usable = {name: x for name, x in row.values.items()
                  if name in INDICATORS and cfg.weights.get(name, 0.0) > 0}
        st = self.state
        motion = [row.values[k] for k in MOVING_KEYS if k in row.values]
        motion_known = bool(motion) or row.t - st.motion_seen_t > MOTION_MEMORY_S
        if motion:
            st.motion_seen_t = row.t
        if motion and max(motion) >= 0.5:
            if row.t - st.last_moving_t > self._holdoff_s():
                st.bout_moving_s = 0.0  # the wearer had recovered: a new bout starts
            st.bout_moving_s += self.tick_s
            st.last_moving_t = row.t
        still = row.t - st.last_moving_t > self._holdoff_s() and motion_known
        ready = {name: x for name, x in usable.items() if self.baseline.ready(name)}
        value, contributions, deviations = self._score(ready)
        gate = None
        if not motion_known:
            gate = "motion_unknown"
        elif not still:
            gate = "motion"
        elif not usable:
            gate = "poor_quality"
        elif not ready:
            gate = "warmup"
        if still and usable:
            # an indicator still warming up learns every still tick (the wearer is assumed to
            # start calm); a ready one only learns when the tick does not look stressed
            learn_below = cfg.learn_below if elevated_at is None else min(cfg.learn_below, elevated_at)
            calm = value is None or (value < learn_below and all(
                INDICATORS[name][1] * z < cfg.learn_z_below for name, (_, _, z) in deviations.items()))
            learn = {n: x for n, x in usable.items() if calm or n not in ready}
            self.baseline.learn(learn, self.tick_s, self._learn_cuts(value, contributions, learn_below))
            self.baseline.watch(usable, row.t, self.tick_s)  # a change that lasts becomes normal
        if gate is not None:
            return Score(row.t, None, gate, {}, deviations, tuple(sorted(ready)))
        return Score(row.t, value, None, contributions, deviations, tuple(sorted(ready)))

    def _learn_cuts(self, value: float | None, contributions: dict[str, float],
                    learn_below: float) -> dict[str, float]:
        """Per indicator in the score, the stress-direction deviation (baseline spreads) at which
        this tick would no longer be calm, the others unchanged: where it would score
        ``learn_below``, or ``learn_z_below``, whichever comes first. A calm tick's value is known
        to lie below it. Indicators whose whole ``z_cap`` fits are not cut.

        >>> s = StressScorer(ScoreConfig(weights={"HR_Mean": 1.0, "HRV_RMSSD": 1.0}))
        >>> s._learn_cuts(0.5, {"HR_Mean": 0.5, "HRV_RMSSD": 0.0}, learn_below=2.0)  # z 1 and 0
        {'HR_Mean': 3.0, 'HRV_RMSSD': 3.0}
        >>> s._learn_cuts(1.5, {"HR_Mean": 1.0, "HRV_RMSSD": 0.5}, learn_below=2.0)  # z 2 and 1
        {'HR_Mean': 3.0, 'HRV_RMSSD': 2.0}
        """
        if value is None:
            return {}
        cfg = self.config
        total_weight = sum(cfg.weights[name] for name in contributions)
        cuts = {}
        for name, share in contributions.items():
            cut = min(cfg.learn_z_below, (learn_below - (value - share)) * total_weight / cfg.weights[name])
            if cut < cfg.z_cap:
                cuts[name] = cut
        return cuts

    def _holdoff_s(self) -> float:
        """How long the score stays withheld after the last moving tick (s)."""
        cfg = self.config
        return min(cfg.max_holdoff_s, cfg.motion_holdoff_s + cfg.recovery_ratio * self.state.bout_moving_s)

    def _score(self, values: dict[str, float]):
        if not values:
            return None, {}, {}
        cfg = self.config
        total_weight = sum(cfg.weights[name] for name in values)
        contributions, deviations = {}, {}
        for name, x in values.items():
            direction = INDICATORS[name][1]
            mean = self.baseline.mean(name)
            z = (x - mean) / self.baseline.spread(name)  # positive = higher than usual
            deviations[name] = (x, mean, z)
            stress_z = min(max(direction * z, 0.0), cfg.z_cap)
            contributions[name] = cfg.weights[name] * stress_z / total_weight
        return sum(contributions.values()), contributions, deviations
