"""The per-wearer indicator pipeline: any subset of signals in, one row of indicators per tick out.

Each signal feeds its processor chain; every chain emits ``Features`` for the ticks it has
finished; the pipeline joins them per tick into one ``Features`` row (values of all
modalities, quality per modality). A tick is released once every modality the wearer sends has
reported it, or once another modality is ``max_lag_s`` ahead (a stalled stream never holds the
others back; its quality for that tick is ``"missing"``). Nothing is released in the wearer's
first ``max_lag_s``, so signals that start a little later still join the first ticks. Both
waits grow by the longest latest batch (at most ``MAX_BATCH_WAIT_S``, 10 min) of the signals
still sending: a signal sent in 60 s batches reports its ticks up to 60 s late, and the same
samples give the same rows whatever the batching. A sample-rate change starts a new chain for that signal, after
releasing what the old one held back; a rate the filters cannot take changes nothing.

Heart activity can come from several signals; the best one the wearer sends is used:
``ecg`` (R-peak detection) > ``bvp`` (pulse detection) > ``ibi`` (device beat intervals) >
``hr`` (device heart rate). A better source takes over as soon as it sends; a lesser one takes
over again once the one in use has been silent for ``max_lag_s`` (a wristband whose PPG stops
while its beat intervals go on keeps its heart rate). Every heart source's chain runs (the
device's own ones cost little), so the one that takes over has its window ready, and the best
other one with a heart rate stands in for a tick the one in use has none for. Its beats give
HRV and a breathing rate; a respiration signal (``rsp``), when sent, gives the breathing rate
instead. The accelerometer gives motion and
restlessness; a device's own step cadence (``cadence``) gives motion too.

Example
-------
>>> from monitor.recordings import read_recording
>>> rec = read_recording("../shared/data/stress-predict/S02")          # doctest: +SKIP
>>> p = WearerPipeline()                                               # doctest: +SKIP
>>> rows = [row for b in rec.batches() for row in p.update(b)]        # doctest: +SKIP
>>> sorted(rows[-1].values)[:3]                                        # doctest: +SKIP
['ACC_Activity', 'ACC_Moving', 'ACC_Moving_Fraction']
"""

from __future__ import annotations

import functools
import math
import zlib
from dataclasses import dataclass, field, replace

import numpy as np

from monitor.core.base import QUALITY_MISSING, QUALITY_OFF_SKIN, Features, Processor
from monitor.core.beats import BeatCorrector
from monitor.core.ecg import EcgBeatDetector
from monitor.core.eda import EdaProcessor
from monitor.core.hrv import QUALITY_ARTIFACTS, QUALITY_IRREGULAR, HrProcessor, HrvProcessor
from monitor.core.motion import AccProcessor, CadenceProcessor
from monitor.core.ppg import PpgBeatDetector, PulseShapeCheck
from monitor.core.respiration import RespirationProcessor
from monitor.core.restlessness import RestlessnessProcessor
from monitor.core.temp import TempProcessor
from monitor.errors import ConfigError
from monitor.toml_tables import bad_value, is_number
from monitor.wire import MAX_SAMPLING_RATE_HZ, SampleBatch

HEART_SOURCES = ("ecg", "bvp", "ibi", "hr")  # best first
# modalities each signal's chain reports (a modality is joined per tick as one unit)
MODALITIES = {
    "eda": ("eda",), "temp": ("temp",), "acc": ("acc", "restlessness"), "rsp": ("rsp",), "cadence": ("cadence",),
    "ecg": ("heart", "rsp"), "bvp": ("heart", "rsp"), "ibi": ("heart", "rsp"), "hr": ("heart",),
}
STANDBY = "standby"  # pending[tick][STANDBY, source]: a heart source's row kept aside
QUALITY_KEY = {"heart": "hrv", "restlessness": "restlessness"}  # where it differs from the modality
EDA_DELAY_S = 20.5  # output delay of the EDA chain at the E4's 4 Hz (``EdaProcessor(4.0).latency_s``)
MAX_SPAN_S = 3600.0  # longest window and lag accepted (s)
MAX_BATCH_WAIT_S = 600.0  # a batch's span adds at most this to the release waits (s)


@dataclass(frozen=True)
class CoreConfig:
    """Parameters of the indicator pipeline (``[core]`` in the config file).

    tick_s: how often indicators are emitted (s, 1 <= tick_s <= window_s).
    window_s: window of every windowed feature (s, at most 3600).
    max_lag_s: how far one stream may run ahead before a silent one is reported missing (s,
    above the EDA chain's output delay: 20.5 s at 4 Hz, 24 s at 0.5 Hz; at most 3600).
    scr_min_amplitude_us: SCR amplitude threshold (µS, > 0). moving_sd_g: motion threshold (g, > 0).
    A value out of range is a ``ConfigError``.
    """

    tick_s: float = 5.0
    window_s: float = 60.0
    max_lag_s: float = 45.0
    scr_min_amplitude_us: float = 0.05
    moving_sd_g: float = 0.1

    def __post_init__(self) -> None:
        for key in ("tick_s", "window_s", "max_lag_s", "scr_min_amplitude_us", "moving_sd_g"):
            if not is_number(getattr(self, key)):
                raise bad_value("core", key, "a finite number", getattr(self, key))
        if self.tick_s < 1:  # the processors work on 1 s epochs and bins: faster ticks only repeat work
            raise bad_value("core", "tick_s", ">= 1 (s)", self.tick_s)
        if not 0 < self.window_s <= MAX_SPAN_S:
            raise bad_value("core", "window_s", f"in (0, {MAX_SPAN_S:g}] (s)", self.window_s)
        if self.tick_s > self.window_s:
            raise ConfigError(f"core: 'tick_s' ({self.tick_s!r}) must be <= 'window_s' ({self.window_s!r})")
        if not EDA_DELAY_S < self.max_lag_s <= MAX_SPAN_S:
            raise bad_value("core", "max_lag_s", f"> {EDA_DELAY_S} (the EDA chain's output delay) and <= {MAX_SPAN_S:g} (s)",
                            self.max_lag_s)
        for key, unit in (("scr_min_amplitude_us", "uS"), ("moving_sd_g", "g")):
            if getattr(self, key) <= 0:
                raise bad_value("core", key, f"> 0 ({unit})", getattr(self, key))


def _new_chain(signal: str, fs: float | None, cfg: CoreConfig) -> "_Chain":
    """``_Chain(signal, fs, cfg)``; a rate its filters cannot take is a ``ValueError`` that says
    so and names the rates they do take, with the filter's own reason (a device's rate is
    refused with that on the wearer's rejected topic).

    >>> _new_chain("ecg", 10.0, CoreConfig())
    Traceback (most recent call last):
    ...
    ValueError: ecg at 10 Hz is too slow for the monitor's filters: they take 17.78 Hz and above (Wn[0] must be less than Wn[1])
    """
    try:
        return _Chain(signal, fs, cfg)
    except ValueError as exc:
        if fs is None:
            raise
        lowest_hz = _lowest_rate_hz(signal, cfg)
        take = f"{lowest_hz:g} Hz and above" if lowest_hz is not None else "no rate in the contract's range"
        raise ValueError(f"{signal} at {fs:g} Hz is too slow for the monitor's filters: they take {take} ({exc})") from exc


@functools.lru_cache(maxsize=32)
def _lowest_rate_hz(signal: str, cfg: CoreConfig) -> float | None:
    """A sample rate (Hz, to 0.01 Hz) from which up to the contract's maximum ``signal``'s chain
    can be built with ``cfg`` (filters, detectors, delays), or None; found once, by bisection
    (a few rates below it may work too: bvp at 6-6.5 Hz does, 6.75-7.75 Hz does not)."""
    def takes(fs_hz: float) -> bool:
        try:
            _Chain(signal, fs_hz, cfg)
        except ValueError:
            return False
        return True

    low, high = 0, int(round(100 * MAX_SAMPLING_RATE_HZ))  # in 0.01 Hz: low does not work, high might
    if not takes(high / 100):
        return None
    while high - low > 1:
        mid = (low + high) // 2
        low, high = (low, mid) if takes(mid / 100) else (mid, high)
    return high / 100


class _Chain:
    """One signal's processors, from a batch to ``(modality, Features)`` of finished ticks.

    Heart signals give beats (ECG or PPG beat detection, or the device's intervals), corrected
    for artifacts, to HRV and to the breathing rate (respiratory modulation of the beats and,
    for ECG and PPG, of the waveform); the accelerometer feeds motion and restlessness. On the
    BVP chain, ``PulseShapeCheck`` withholds the heart and breathing values of windows whose
    "beats" do not look like pulses (noise from a band without contact).
    """

    pulse: PulseShapeCheck | None = None  # (a chain saved before the pulse shape check has none)

    def __init__(self, signal: str, fs: float | None, cfg: CoreConfig):
        self.signal = signal
        self.fs = fs
        w = {"tick_s": cfg.tick_s, "window_s": cfg.window_s}
        self.detector = self.corrector = self.hrv = self.resp = self.pulse = None
        if signal == "eda":
            self.main = EdaProcessor(fs, **w, scr_min_amplitude_us=cfg.scr_min_amplitude_us)
            if self.main.latency_s >= cfg.max_lag_s:  # (20.5 s at 4 Hz, more at lower rates)
                raise ValueError(f"EDA at {fs:g} Hz is {self.main.latency_s:.1f} s behind: "
                                 f"it needs core.max_lag_s above that, not {cfg.max_lag_s:g}")
        elif signal == "temp":
            self.main = TempProcessor(fs, **w)
        elif signal == "cadence":
            self.main = CadenceProcessor(fs, **w)
        elif signal == "acc":
            self.main = AccProcessor(fs, **w, moving_sd_g=cfg.moving_sd_g)
            self.restless = RestlessnessProcessor(fs, **w)
        elif signal == "rsp":
            self.resp = RespirationProcessor("rsp", fs, **w)
        elif signal == "hr":
            self.main = HrProcessor(**w)
        elif signal in ("ecg", "bvp", "ibi"):
            if signal != "ibi":
                self.detector = (EcgBeatDetector if signal == "ecg" else PpgBeatDetector)(fs)
            if signal == "bvp":  # noise the pulse detector took for beats is no heart rate
                self.pulse = PulseShapeCheck(cfg.window_s)
            self.corrector = BeatCorrector()
            self.hrv = HrvProcessor(**w)
            self.resp = RespirationProcessor({"bvp": "ppg"}.get(signal, signal), fs, **w)
        else:
            raise ValueError(f"no processor chain for signal {signal!r}")

    def _parts(self) -> list[Processor]:
        """The processors that give this chain's indicators (not the beat detector and corrector)."""
        parts = (self.__dict__.get("main"), self.__dict__.get("restless"), self.hrv, self.resp)
        return [part for part in parts if part is not None]

    def indicator_keys(self) -> set[str]:
        """Every indicator this chain's processors can give (their ``INDICATOR_KEYS``)."""
        return {key for part in self._parts() for key in part.INDICATOR_KEYS}

    def built_with(self, cfg: CoreConfig) -> bool:
        """Whether this chain's processors have ``cfg``'s parameters (``max_lag_s`` is the
        pipeline's own)."""
        wanted = {"tick_s": cfg.tick_s, "window_s": cfg.window_s,
                  "scr_min_amplitude_us": cfg.scr_min_amplitude_us, "moving_sd_g": cfg.moving_sd_g}
        for part in self._parts():
            for key, value in wanted.items():
                if hasattr(part, key) and float(getattr(part, key)) != value:
                    return False
        return True

    def update(self, batch: SampleBatch) -> list[tuple[str, Features]]:
        sig = self.signal
        if sig in ("eda", "temp", "cadence"):
            return [(sig, f) for f in self.main.update(batch.t0, batch.values)]
        if sig == "acc":
            return ([("acc", f) for f in self.main.update(batch.t0, batch.values)]
                    + [("restlessness", f) for f in self.restless.update(batch.t0, batch.values)])
        if sig == "hr":
            return [("heart", f) for f in self.main.update(batch.t, batch.values)]
        if sig == "rsp":
            return [("rsp", f) for f in self.resp.update_samples(batch.t0, batch.values)]
        out = []
        if sig == "ibi":
            intervals = self.corrector.update_intervals(batch.t, batch.values)
        else:
            out += [("rsp", f) for f in self.resp.update_samples(batch.t0, batch.values)]
            intervals = self.corrector.update_times(self._detected(self.detector.update(batch.t0, batch.values)))
        return self._checked(out + self._beats(intervals), intervals.watermark_s)

    def _detected(self, beats):
        """A detector's beats, whose shapes the pulse check takes note of."""
        if self.pulse is not None:
            self.pulse.add(beats)
        return beats

    def _checked(self, rows: list[tuple[str, Features]], given_until_s: float) -> list[tuple[str, Features]]:
        """The heart and breathing rows, those of noisy pulse windows withheld (``PulseShapeCheck``)."""
        return rows if self.pulse is None else self.pulse.judge(rows, given_until_s)

    def _beats(self, intervals) -> list[tuple[str, Features]]:
        # a waveform's heart ticks go on while its samples come, beats or not (a dead sensor)
        live_s = None if self.detector is None else self.detector.state.clock.span_s(self.fs)
        return ([("heart", f) for f in self.hrv.update(intervals, live_s)]
                + [("rsp", f) for f in self.resp.update_intervals(intervals)])

    def flush(self) -> list[tuple[str, Features]]:
        """End of stream: the ticks still held back by a processor's output delay."""
        sig = self.signal
        if sig in ("eda", "temp", "cadence"):
            return [(sig, f) for f in self.main.flush()] if hasattr(self.main, "flush") else []
        if sig == "acc":
            return [("restlessness", f) for f in self.restless.flush()]
        if sig == "hr":
            return []
        if sig == "rsp":
            return [("rsp", f) for f in self.resp.flush()]
        out = []
        if self.detector is not None:
            out += self._beats(self.corrector.update_times(self._detected(self.detector.flush())))
        out += self._beats(self.corrector.flush())
        return self._checked(out + [("rsp", f) for f in self.resp.flush()], math.inf)


def tick_phase(wearer_id: str, tick_s: float) -> float:
    """A wearer's own tick phase (whole seconds in ``[0, tick_s)``), fixed by its id.

    >>> tick_phase("sim-01", 5.0) in (0.0, 1.0, 2.0, 3.0, 4.0)
    True
    """
    return float(zlib.crc32(wearer_id.encode()) % max(1, math.floor(tick_s)))


@dataclass
class PipelineState:
    chains: dict = field(default_factory=dict)  # signal -> _Chain
    core: CoreConfig | None = None  # the configuration the chains were built with
    heart_source: str | None = None
    pending: dict = field(default_factory=dict)  # tick -> {modality: Features}
    latest_tick: dict = field(default_factory=dict)  # modality -> latest tick reported
    released_until: float = -np.inf  # ticks up to here have been released
    start_s: float | None = None  # time of the wearer's first sample: no tick before it
    seen_until_s: float = -np.inf  # latest sample time of any signal
    late_dropped: int = 0  # Features that arrived for an already released tick
    signal_seen_until_s: dict = field(default_factory=dict)  # signal -> its latest sample time
    heart_switches: int = 0  # times the heart source in use changed after the first
    batch_span_s: dict = field(default_factory=dict)  # signal -> time its latest batch covered (s)
    settled: bool = False  # every signal has had time to show up (see WearerPipeline._settled)
    # ticks at k * tick_s + tick_phase_s: the processors run tick_phase_s behind real time
    tick_phase_s: float = 0.0

    def __setstate__(self, saved: dict) -> None:
        if "signal_seen_until_s" not in saved:  # older checkpoints kept the heart sources' times only
            saved = dict(saved)
            seen = saved.pop("heart_seen_until_s", None)
            if seen is None:  # a checkpoint of 0.1.0: one heart chain, no times
                seen = {saved["heart_source"]: saved["seen_until_s"]} if saved.get("heart_source") else {}
                saved["heart_switches"] = 0
                saved.pop("ignored_batches", None)
            saved["signal_seen_until_s"] = seen
        saved.setdefault("batch_span_s", {})  # checkpoints before 0.2: 1 s batches assumed
        saved.setdefault("settled", False)  # (worked out again at the next batch)
        saved.setdefault("core", None)  # older checkpoints did not record it: the chains are rebuilt
        self.__dict__.update(saved)


class WearerPipeline(Processor):
    """All indicators of one wearer from whatever signals the wearer's devices send.

    ``update(batch)`` takes a validated ``SampleBatch`` (any signal of the wire contract) and
    returns the indicator rows (``Features``) of the ticks that are now complete.

    Ticks fall on whole multiples of ``tick_s`` (unix time), shifted by ``tick_phase_s``
    (``tick_phase``): the live service gives each wearer its own phase so that the wearers'
    per-tick work is spread over the tick interval instead of landing in one second.
    """

    def __init__(self, config: CoreConfig | None = None, tick_phase_s: float = 0.0):
        self.config = config or CoreConfig()
        self.state = PipelineState(core=self.config, tick_phase_s=float(tick_phase_s))
        self._active = ((), (), frozenset())  # signals -> modalities (sorted and as a set)
        self.rebuilt_chains = False  # the last set_state met chains of another [core]

    def set_state(self, state) -> None:
        """Resume from ``get_state``. Chains built under another ``[core]`` configuration (a
        changed ``tick_s``, ``window_s``...) release what they hold back and start afresh under
        this one, as on a sample-rate change: the indicators see a gap, the baseline is kept."""
        super().set_state(state)
        s = self.state
        if s.core is None and all(chain.built_with(self.config) for chain in s.chains.values()):
            s.core = self.config  # a checkpoint from before the configuration was recorded, and it fits
        self.rebuilt_chains = s.core != self.config
        if self.rebuilt_chains:
            for signal, chain in list(s.chains.items()):  # (ticks up to the data they had)
                self._collect(signal, [(m, f) for m, f in chain.flush() if f.t <= s.seen_until_s])
                try:
                    s.chains[signal] = _Chain(signal, chain.fs, self.config)
                except ValueError:  # this configuration cannot take the signal: built at its next batch
                    del s.chains[signal]
            s.core = self.config

    def indicator_keys(self) -> list[str]:
        """Every indicator the signals sent so far can give, sorted, whether or not a window had
        one yet (a heart strap's ``HRV_RMSSD`` withheld at every tick): the columns of a table of
        this wearer's rows.

        >>> p = WearerPipeline()
        >>> _ = p.update(SampleBatch("temp", seq=0, values=np.array([33.0]), t0=1.7e9, fs=4.0))
        >>> p.indicator_keys()
        ['TEMP_Mean', 'TEMP_Slope']
        """
        return sorted({key for chain in self.state.chains.values() for key in chain.indicator_keys()})

    def _active_modalities(self) -> tuple[tuple[str, ...], frozenset]:
        """The modalities of the signals the wearer sends, sorted and as a set (cached: the
        signals rarely change)."""
        signals = tuple(self.state.chains)
        if signals != self._active[0]:
            mods = sorted({m for signal in signals for m in MODALITIES[signal]})
            self._active = (signals, tuple(mods), frozenset(mods))
        return self._active[1], self._active[2]

    def update(self, batch: SampleBatch) -> list[Features]:
        """Feed one validated batch of any signal; returns the rows of the ticks now complete
        (oldest first). A sample rate its filters cannot take is a ``ValueError``, with nothing
        changed."""
        s = self.state
        signal = batch.signal
        if signal not in MODALITIES:
            return []  # validated, but no indicator uses it
        if s.tick_phase_s:  # the processors' clock runs tick_phase_s behind ("_release" undoes it)
            if batch.t is None:
                batch = replace(batch, t0=batch.t0 - s.tick_phase_s)
            else:
                batch = replace(batch, t=batch.t - s.tick_phase_s)
        if signal in HEART_SOURCES:
            current = s.heart_source
            if current != signal and (
                    current is None or HEART_SOURCES.index(signal) < HEART_SOURCES.index(current)
                    or batch.start_s > s.signal_seen_until_s[current] + self._lag_s()):
                s.heart_switches += current is not None  # a better one sends, or the one in use went silent
                s.heart_source = signal
        s.signal_seen_until_s[signal] = max(s.signal_seen_until_s.get(signal, -np.inf), batch.end_s)
        was_settled = None if s.start_s is None else self._settled()
        if s.start_s is None:
            s.start_s = batch.start_s
        s.seen_until_s = max(s.seen_until_s, batch.end_s)
        chain = s.chains.get(signal)
        new_chain = chain is None or (batch.fs is not None and batch.fs != chain.fs)
        if new_chain:
            fresh = _new_chain(signal, batch.fs, self.config)  # a rate the filters cannot take: ValueError, nothing changed
            if chain is not None and chain.detector is not None:
                # the device changed its ECG/PPG rate: only the beat detector and the waveform's
                # breathing depend on it; the beat times go on into the same corrector and HRV
                # windows (the new detector's first beats start a new chain); the old breathing
                # rates count up to the change, the new chain's from it on
                fresh.corrector, fresh.hrv, fresh.pulse = chain.corrector, chain.hrv, chain.pulse
                self._collect(signal, fresh._checked(
                    [("rsp", f) for f in chain.resp.flush() if f.t < batch.start_s], -math.inf))
            elif chain is not None:  # the device changed its sample rate: what the old chain holds back counts
                self._collect(signal, chain.flush())
            chain = s.chains[signal] = fresh
        rows = chain.update(batch)
        # (a long gap inside one irregular batch is no batch length: MAX_BATCH_WAIT_S at most)
        s.batch_span_s[signal] = min(batch.end_s - batch.start_s, MAX_BATCH_WAIT_S)
        if rows:
            self._collect(signal, rows)
        elif not new_chain and was_settled == self._settled():
            # (most batches) nothing the last release looked at has changed, and it released
            # every tick it could: there is nothing to release now either
            return []
        return self._release()

    def _settled(self) -> bool:
        """In the first max_lag_s every signal the wearer sends has had time to show up; until
        then "every modality reported" may not mean every modality there is. Once settled, a
        wearer stays settled (a long batch later must not hold back complete ticks)."""
        s = self.state
        if not s.settled:
            s.settled = s.seen_until_s - s.start_s >= self._lag_s()
        return s.settled

    def _lag_s(self) -> float:
        """How far another modality must be ahead before a tick goes without a silent one (s):
        ``max_lag_s``, plus the longest latest batch (a signal sent in long batches reports its
        ticks up to a batch late)."""
        return self.config.max_lag_s + self.longest_batch_s()

    def longest_batch_s(self) -> float:
        """Time covered by the longest latest batch of the wearer's signals (s, at most
        ``MAX_BATCH_WAIT_S``): on-time ticks come out up to twice this later than with 1 s
        batches (the tick's data arrives a batch late, and the release waits a batch more).
        A signal silent for longer than two of its batches plus ``max_lag_s`` no longer counts
        (a device sending long batches that went away stops delaying the others; one whose
        batches come up to a batch late, a phone forwarding once a minute, still counts).

        >>> WearerPipeline().longest_batch_s()
        0.0
        """
        s = self.state
        horizon_s = s.seen_until_s - self.config.max_lag_s
        return max((span_s for signal, span_s in s.batch_span_s.items()
                    if s.signal_seen_until_s.get(signal, np.inf) + 2 * span_s >= horizon_s), default=0.0)

    def flush(self) -> list[Features]:
        """End of a recording: release every tick still held back (``analyze`` calls it last)."""
        for signal, chain in self.state.chains.items():
            self._collect(signal, chain.flush())
        return self._release(everything=True)

    def _collect(self, signal: str, rows: list[tuple[str, Features]]) -> None:
        s = self.state
        standby = signal in HEART_SOURCES and signal != s.heart_source
        for modality, features in rows:
            if standby and modality == "rsp":
                continue  # the heart source in use speaks for the heart
            if modality == "rsp" and signal != "rsp" and "rsp" in s.chains:
                continue  # a respiration belt (or the device's own channel) beats derived rates
            if features.t < s.start_s:
                continue  # a window that ends before the wearer's first sample holds nothing
            if features.t <= s.released_until:
                s.late_dropped += 1
                continue
            if standby:  # kept aside: it stands in when the source in use has no heart rate
                s.pending.setdefault(features.t, {})[STANDBY, signal] = features
                continue
            s.pending.setdefault(features.t, {})[modality] = features
            s.latest_tick[modality] = max(s.latest_tick.get(modality, -np.inf), features.t)

    @staticmethod
    def _stand_in(parts: dict, values: dict, quality: dict) -> None:
        """The best other heart source with a heart rate for this tick fills in the heart's
        values (a sparse E4 beat stream's window is short of beats while the E4's HR goes on)."""
        for source in HEART_SOURCES:
            f = parts.get((STANDBY, source))
            if f is not None and "HR_Mean" in f.values:
                values.update(f.values)
                quality.update(f.quality)
                return

    def _in_the_eda_band(self, modality: str) -> bool:
        """Whether a modality's sensor sits in the band that measures EDA, so that a window in
        which the EDA electrodes were off the skin (quality ``off_skin``) withholds it too:
        skin temperature (off the skin it reads the air, 28-31 °C on a desk, inside the skin's
        range: a stress-like drop; S02's band taken off fell from 35.3 to 30.4 °C in 2 s) and a
        wrist pulse (``bvp``) with the breathing read from it (partly off the skin, its noise
        passes the pulse check in part of the window and raised the heart rate). A chest
        strap's heart (``ecg``, ``ibi``, ``hr``) and a belt's breathing are not the band's."""
        s = self.state
        if modality == "temp":
            return True
        return s.heart_source == "bvp" and (modality == "heart" or (modality == "rsp" and "rsp" not in s.chains))

    def _quality_key(self, modality: str) -> str:
        """The key under which a modality's processors report quality."""
        if modality == "heart" and self.state.heart_source == "hr":
            return "hr"
        return QUALITY_KEY.get(modality, modality)

    def _release(self, everything: bool = False) -> list[Features]:
        s = self.state
        if not s.pending:
            return []
        modalities, active = self._active_modalities()
        lead = max(s.latest_tick.values(), default=-np.inf)
        max_lag_s = self._lag_s()
        settled = self._settled()
        first = min(s.pending)  # usually still incomplete: nothing to sort then
        if not (everything or (settled and active <= s.pending[first].keys())
                or first + max_lag_s <= lead):
            return []
        out = []
        for tick in sorted(s.pending):
            parts = s.pending[tick]
            complete = settled and active <= parts.keys()
            if not (everything or complete or tick + max_lag_s <= lead):
                break
            values, quality = {}, {}
            eda = parts.get("eda")
            off_skin = eda is not None and eda.quality.get("eda") == QUALITY_OFF_SKIN
            for modality in modalities:
                f = parts.get(modality)
                if f is None:
                    quality[self._quality_key(modality)] = QUALITY_MISSING
                elif off_skin and self._in_the_eda_band(modality):
                    quality[self._quality_key(modality)] = QUALITY_OFF_SKIN
                else:
                    values.update(f.values)
                    quality.update(f.quality)
                if modality == "heart" and "HR_Mean" not in values:
                    self._stand_in(parts, values, quality)
            if (s.heart_source in ("ecg", "ibi") and "rsp" not in s.chains
                    and quality.get("hrv") in (QUALITY_IRREGULAR, QUALITY_ARTIFACTS)
                    and quality.get("rsp", QUALITY_MISSING) != QUALITY_MISSING):
                # frequent premature beats swamp the breathing in a strap's beat intervals and R
                # amplitudes: a rate read from them would be the ectopy's rhythm (the Polar H10 record)
                values.pop("RSP_Rate", None)
                quality["rsp"] = QUALITY_IRREGULAR
            out.append(Features(tick + s.tick_phase_s, values, quality))
            del s.pending[tick]
            s.released_until = tick
        return out
