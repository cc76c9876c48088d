"""The per-wearer indicator pipeline: any subset of signals in, one row of indicators per tick out.

Each signal feeds its processor chain; every chain emits ``Features`` for the ticks it has
finished; the pipeline joins them per tick into one ``Features`` row (values of all
modalities, quality per modality). A tick is released once every modality the wearer sends has
reported it, or once another modality is ``max_lag_s`` ahead (a stalled stream never holds the
others back; its quality for that tick is ``"missing"``). Nothing is released in the wearer's
first ``max_lag_s``, so signals that start a little later still join the first ticks.

Heart activity can come from several signals; the best one the wearer sends is used:
``bvp`` (our beat detection) > ``ibi`` (device beat intervals) > ``hr`` (device heart rate).

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

from dataclasses import dataclass, field

import numpy as np

from monitor.core.base import QUALITY_MISSING, Features, Processor
from monitor.core.beats import BeatCorrector
from monitor.core.eda import EdaProcessor
from monitor.core.hrv import HrProcessor, HrvProcessor
from monitor.core.motion import AccProcessor
from monitor.core.ppg import PpgBeatDetector
from monitor.core.temp import TempProcessor
from monitor.wire import SampleBatch

HEART_SOURCES = ("bvp", "ibi", "hr")  # best first
MODALITY_OF = {"eda": "eda", "acc": "acc", "temp": "temp", "bvp": "heart", "ibi": "heart", "hr": "heart"}


@dataclass(frozen=True)
class CoreConfig:
    """Parameters of the indicator pipeline (``[core]`` in the config file).

    tick_s: how often indicators are emitted (s). window_s: window of every windowed feature (s).
    max_lag_s: how far one stream may run ahead before a silent one is reported missing (s).
    scr_min_amplitude_us: SCR amplitude threshold (µS). moving_sd_g: motion threshold (g).
    """

    tick_s: float = 5.0
    window_s: float = 60.0
    max_lag_s: float = 45.0  # above the EDA chain's 20.5 s output delay
    scr_min_amplitude_us: float = 0.05
    moving_sd_g: float = 0.1


class _Chain:
    """One signal's processors, from a batch to ``Features`` of finished ticks."""

    def __init__(self, signal: str, fs: float | None, cfg: CoreConfig):
        self.signal = signal
        self.fs = fs
        w = {"tick_s": cfg.tick_s, "window_s": cfg.window_s}
        if signal == "eda":
            self.steps = [EdaProcessor(fs, **w, scr_min_amplitude_us=cfg.scr_min_amplitude_us)]
        elif signal == "temp":
            self.steps = [TempProcessor(fs, **w)]
        elif signal == "acc":
            self.steps = [AccProcessor(fs, **w, moving_sd_g=cfg.moving_sd_g)]
        elif signal == "bvp":
            self.steps = [PpgBeatDetector(fs), BeatCorrector(), HrvProcessor(**w)]
        elif signal == "ibi":
            self.steps = [BeatCorrector(), HrvProcessor(**w)]
        elif signal == "hr":
            self.steps = [HrProcessor(**w)]
        else:
            raise ValueError(f"no processor chain for signal {signal!r}")

    def flush(self) -> list[Features]:
        """End of stream: the ticks still held back by a processor's output delay."""
        s = self.steps
        if self.signal == "bvp":
            return s[2].update(s[1].update_times(s[0].flush()))
        if self.signal == "ibi":
            return s[1].update(s[0].flush())
        return s[0].flush() if hasattr(s[0], "flush") else []

    def update(self, batch: SampleBatch) -> list[Features]:
        s = self.steps
        if self.signal in ("eda", "temp", "acc"):
            return s[0].update(batch.t0, batch.values)
        if self.signal == "bvp":
            return s[2].update(s[1].update_times(s[0].update(batch.t0, batch.values)))
        if self.signal == "ibi":
            return s[1].update(s[0].update_intervals(batch.t, batch.values))
        return s[0].update(batch.t, batch.values)


@dataclass
class PipelineState:
    chains: dict = field(default_factory=dict)  # signal -> _Chain
    heart_source: str | None = None
    pending: dict = field(default_factory=dict)  # tick -> {modality: Features}
    latest_tick: dict = field(default_factory=dict)  # modality -> latest tick reported
    released_until: float = -np.inf  # ticks up to here have been released
    start_s: float | None = None  # time of the wearer's first sample: no tick before it
    seen_until_s: float = -np.inf  # latest sample time of any signal
    late_dropped: int = 0  # Features that arrived for an already released tick
    ignored_batches: int = 0  # batches of a heart source outranked by a better one


class WearerPipeline(Processor):
    """All indicators of one wearer from whatever signals the wearer's devices send.

    ``update(batch)`` takes a validated ``SampleBatch`` (any signal of the wire contract) and
    returns the indicator rows (``Features``) of the ticks that are now complete.
    """

    def __init__(self, config: CoreConfig | None = None):
        self.config = config or CoreConfig()
        self.state = PipelineState()

    @property
    def modalities(self) -> list[str]:
        return sorted({MODALITY_OF[s] for s in self.state.chains})

    def update(self, batch: SampleBatch) -> list[Features]:
        s = self.state
        signal = batch.signal
        if signal not in MODALITY_OF:
            return []  # a signal without indicators yet (e.g. ecg): validated, not used
        if signal in HEART_SOURCES:
            rank = HEART_SOURCES.index(signal)
            if s.heart_source is not None and rank > HEART_SOURCES.index(s.heart_source):
                s.ignored_batches += 1
                return []
            if s.heart_source != signal:
                if s.heart_source is not None:
                    s.chains.pop(s.heart_source, None)  # a better source took over
                s.heart_source = signal
        if s.start_s is None:
            s.start_s = batch.start_s
        s.seen_until_s = max(s.seen_until_s, batch.end_s)
        chain = s.chains.get(signal)
        if chain is None or (batch.fs is not None and batch.fs != chain.fs):
            chain = s.chains[signal] = _Chain(signal, batch.fs, self.config)
        self._collect(MODALITY_OF[signal], chain.update(batch))
        return self._release()

    def flush(self) -> list[Features]:
        """End of a recording: release every tick still held back (``analyze`` calls it last)."""
        for signal, chain in self.state.chains.items():
            self._collect(MODALITY_OF[signal], chain.flush())
        return self._release(everything=True)

    def _collect(self, modality: str, rows: list[Features]) -> None:
        s = self.state
        for features in rows:
            if features.t < s.start_s:
                continue  # a window that ends before the wearer's first sample holds nothing
            if features.t <= s.released_until:
                s.late_dropped += 1
                continue
            s.pending.setdefault(features.t, {})[modality] = features
            s.latest_tick[modality] = max(s.latest_tick.get(modality, -np.inf), features.t)

    def _quality_key(self, modality: str) -> str:
        """The key under which a modality's processors report quality."""
        if modality != "heart":
            return modality
        return "hr" if self.state.heart_source == "hr" else "hrv"

    def _release(self, everything: bool = False) -> list[Features]:
        s = self.state
        if not s.pending:
            return []
        active = set(self.modalities)
        lead = max(s.latest_tick.values())
        # in the first max_lag_s every signal the wearer sends has had time to show up; until
        # then "every modality reported" may not mean every modality there is
        settled = s.seen_until_s - s.start_s >= self.config.max_lag_s
        out = []
        for tick in sorted(s.pending):
            parts = s.pending[tick]
            complete = settled and active <= parts.keys()
            if not (everything or complete or tick + self.config.max_lag_s <= lead):
                break
            values, quality = {}, {}
            for modality in sorted(active):
                f = parts.get(modality)
                if f is None:
                    quality[self._quality_key(modality)] = QUALITY_MISSING
                    continue
                values.update(f.values)
                quality.update(f.quality)
            out.append(Features(tick, values, quality))
            del s.pending[tick]
            s.released_until = tick
        return out
