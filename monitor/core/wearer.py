"""One wearer's whole monitor: indicators, baseline and score, check-in policy.

The same object runs inside the live service and inside ``anxmon analyze``, so a recording
analysed offline and the same recording streamed live give the same ticks and decisions.

Example
-------
>>> from monitor.recordings import read_recording
>>> m = WearerMonitor("s02")                                               # doctest: +SKIP
>>> ticks = [t for b in read_recording("../shared/data/stress-predict/S02").batches()
...          for t in m.update(b)]                                          # doctest: +SKIP
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from monitor.core.base import Features
from monitor.core.pipeline import WearerPipeline
from monitor.core.policy import CheckinPolicy, Decision, Expired
from monitor.core.score import Score, StressScorer
from monitor.wire import SampleBatch


@dataclass(frozen=True)
class Tick:
    """Everything known at one output tick: indicators, the score, and policy decisions."""

    t: float
    indicators: Features
    score: Score
    decisions: tuple[Decision | Expired, ...]


class WearerMonitor:
    """Pipeline -> scorer -> policy for one wearer; ``get_state``/``set_state`` cover all three."""

    def __init__(self, wearer_id: str, config=None, tick_phase_s: float = 0.0):
        from monitor.config import Config

        self.wearer_id = wearer_id
        self.config = config or Config()
        # ticks at k * tick_s + tick_phase_s (``WearerPipeline``); a checkpoint keeps its phase
        self.pipeline = WearerPipeline(self.config.core, tick_phase_s)
        self.scorer = StressScorer(self.config.score, tick_s=self.config.core.tick_s)
        self.policy = CheckinPolicy(self.config.policy, wearer_id=wearer_id)

    def update(self, batch: SampleBatch, gate_for: Callable[[float], str | None] | None = None) -> list[Tick]:
        """Feed one validated batch; returns the ticks it completed.

        ``gate_for(t_s)``: the caller's own gate for a tick at ``t_s`` whose score is usable, or
        None (the live service's ``"stale"``: the policy then treats the tick as withheld).
        """
        return self._score(self.pipeline.update(batch), gate_for)

    def flush(self) -> list[Tick]:
        """End of a recording: score the ticks the pipeline still held back."""
        return self._score(self.pipeline.flush())

    def _score(self, rows, gate_for: Callable[[float], str | None] | None = None) -> list[Tick]:
        out = []
        for row in rows:
            score = self.scorer.update(row, elevated_at=self.policy.effective_threshold())
            gate = score.gate
            if gate is None and gate_for is not None:
                gate = gate_for(row.t)
            explanation = {name: dev[2] for name, dev in score.deviations.items()}
            decisions = self.policy.update(row.t, score.value, explanation, gate=gate)
            out.append(Tick(row.t, row, score, tuple(decisions)))
        return out

    def answer(self, t_s: float, prompt_id: str, rating: int | None, labels: list[str]):
        return self.policy.answer(t_s, prompt_id, rating, labels)

    def control(self, t_s: float, action: str, duration_s: float | None = None, **settings):
        return self.policy.control(t_s, action, duration_s, **settings)

    def get_state(self, copy: bool = True) -> dict:
        """Everything to resume this wearer (``set_state``); ``copy=False`` hands out the live
        objects instead of a deep copy, for a caller that pickles them at once."""
        return {
            "pipeline": self.pipeline.get_state(copy),
            "scorer": self.scorer.get_state(copy),
            "policy": self.policy.get_state(copy),
        }

    def set_state(self, state: dict) -> None:
        self.pipeline.set_state(state["pipeline"])
        self.scorer.set_state(state["scorer"])
        self.policy.set_state(state["policy"])

    def state_nbytes(self) -> int:
        return self.pipeline.state_nbytes() + self.scorer.state_nbytes() + self.policy.state_nbytes()
