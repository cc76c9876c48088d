"""``anxmon analyze``: a recorded session through the live per-wearer monitor, as fast as possible.

Writes ``indicators.csv`` (one row per tick: score, gate, threshold, every indicator, and per
indicator in the score its baseline mean, deviation and share of the score), ``checkins.jsonl``
(one object per trigger decision), ``summary.json`` (with the run's ``provenance``: input files
and their sha256, command line, code, libraries), ``markers.csv`` and a self-contained
``report.html``. With stress labels (CSV ``unix_s,stress``) the summary adds detection metrics
(see ``label_metrics``) and the labelled stress periods.

Example
-------
>>> result = analyze_recording(read_recording("../shared/data/stress-predict/S02"))  # doctest: +SKIP
>>> round(result.summary["labels"]["roc_auc"], 2)                                    # doctest: +SKIP
0.8
"""

from __future__ import annotations

import csv
import dataclasses
import functools
import hashlib
import json
import logging
import os
import platform
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from monitor import __version__
from monitor.config import Config
from monitor.core.base import QUALITY_MISSING
from monitor.core.policy import Decision
from monitor.core.score import MOVING_KEYS
from monitor.core.wearer import Tick, WearerMonitor
from monitor.errors import InputFormatError, WireError, not_a_file
from monitor.markers import unix_s_problem, utc_text
from monitor.recordings import Recording, read_labels, read_recording, wearer_id_for
from monitor.wire import StreamTracker, validate_batch

MIN_STRESS_PERIOD_S = 60.0
TRIGGER_GRACE_S = 60.0  # a trigger up to this long after a stress period ends still counts

log = logging.getLogger(__name__)


@dataclass
class AnalysisResult:
    ticks: list[Tick]
    summary: dict
    rejected: dict = field(default_factory=dict)  # "signal: error kind" -> count
    thresholds: list[float] = field(default_factory=list)  # the wearer's check-in threshold at each tick
    # recording seconds per wall second of this run: printed, never written (the files are reproducible)
    speed_x_realtime: float | None = None
    # every indicator the recording's signals can give (``WearerPipeline.indicator_keys``): a
    # column each in indicators.csv, also when no tick had a value of it
    indicator_keys: list[str] = field(default_factory=list)


def analyze_recording(recording: Recording, config: Config | None = None, wearer_id: str | None = None,
                      labels: tuple[np.ndarray, np.ndarray] | None = None, progress: bool | None = None,
                      monitor: WearerMonitor | None = None) -> AnalysisResult:
    """Run every batch of ``recording`` through a ``WearerMonitor`` (the live service's object).

    Batches are validated exactly as the live service validates them; refused ones are counted
    by reason. ``progress=None`` shows a progress bar only on a terminal.
    """
    from tqdm import tqdm

    config = config or Config()
    monitor = monitor or WearerMonitor(wearer_id or wearer_id_for(recording), config)
    wire = WireCheck()
    ticks: list[Tick] = []
    thresholds: list[float] = []  # per tick, as the live service records it (after the batch's ticks)
    started = time.perf_counter()
    batches = list(recording.batches())
    with tqdm(total=len(batches), unit="batch", disable=(None if progress is None else not progress),
              desc=f"analyze {Path(recording.source).name}", leave=False) as bar:
        for batch in batches:
            bar.update(1)
            if wire.accept(batch):
                new = monitor.update(batch)
                if new:
                    ticks.extend(new)
                    thresholds.extend([monitor.policy.effective_threshold()] * len(new))
    # the ticks held back at the end, up to the last sample: a later tick's window reaches past
    # the data, and whatever modality has a little left would speak alone for the wearer
    last = [tick for tick in monitor.flush() if tick.t <= recording.end_s]
    ticks.extend(last)
    thresholds.extend([monitor.policy.effective_threshold()] * len(last))
    elapsed = time.perf_counter() - started
    labels = labels if labels is not None else recording.labels
    summary = summarize(recording, ticks, monitor, labels, wire.rejected)
    summary["batches_per_signal"] = wire.batches_per_signal
    summary["first_refusal"] = wire.first_refusal
    speed = recording.duration_s / elapsed if elapsed > 0 else None
    return AnalysisResult(ticks, summary, wire.rejected, thresholds, speed, monitor.pipeline.indicator_keys())


@dataclass
class WireCheck:
    """Sample batches checked as the live service checks them (``validate_batch``, then each
    signal's ``StreamTracker``), with the refusals counted as ``summary.json`` keeps them.

    >>> from monitor.wire import SampleBatch
    >>> check = WireCheck()
    >>> check.accept(SampleBatch("temp", seq=0, values=np.array([50.0]), t0=1.7e9, fs=4.0))
    False
    >>> check.rejected, check.batches_per_signal
    ({'temp: ValueRangeError': 1}, {'temp': 1})
    """

    trackers: dict[str, StreamTracker] = field(default_factory=dict)
    rejected: dict[str, int] = field(default_factory=dict)  # "signal: error kind" -> batches refused
    first_refusal: dict[str, str] = field(default_factory=dict)  # the first such message (no values)
    batches_per_signal: dict[str, int] = field(default_factory=dict)

    def accept(self, batch) -> bool:
        """Whether the service would take ``batch`` (False: refused, counted; or a duplicate)."""
        self.batches_per_signal[batch.signal] = self.batches_per_signal.get(batch.signal, 0) + 1
        try:
            validate_batch(batch)
            # a recording's own time is its clock: a device that paused for an hour is fine
            # (the "5 min in the future" rule protects live streams from wrong device clocks)
            verdict = self.trackers.setdefault(batch.signal, StreamTracker()).check(batch, now_s=batch.end_s)
        except WireError as exc:
            key = f"{batch.signal}: {type(exc).__name__}"
            self.rejected[key] = self.rejected.get(key, 0) + 1
            self.first_refusal.setdefault(key, str(exc))
            return False
        return verdict.accept

    def summary(self) -> dict:
        """The ``rejected_batches``, ``first_refusal`` and ``batches_per_signal`` of ``summary.json``
        (what ``refusals`` reads)."""
        return {"rejected_batches": self.rejected, "first_refusal": self.first_refusal,
                "batches_per_signal": self.batches_per_signal}


# ------------------------------------------------------------------------------ labels


def read_label_file(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """``--labels FILE`` (CSV ``unix_s,stress``); a clear error when it does not exist or is a folder."""
    path = Path(path)
    if not path.is_file():
        raise not_a_file("labels file", path)
    return read_labels(path)


def check_labels(labels: tuple[np.ndarray, np.ndarray], recording: Recording, where: str) -> None:
    """Refuse labels the metrics cannot use: no rows, times that are not unix seconds or go
    backwards, stress other than 0 or 1 (line numbers count the header as line 1), labels
    that do not overlap the recording at all; warn when only some of them do."""
    t, y = labels
    if not len(t):
        raise InputFormatError(f"{where}: no label rows (expected a header unix_s,stress, then one row per second)")
    for i in (int(np.argmin(t)), int(np.argmax(t))):
        if problem := unix_s_problem(t[i]):
            raise InputFormatError(f"{where}, line {i + 2}: unix_s {t[i]:.15g} {problem}")
    backwards = np.flatnonzero(np.diff(t) < 0)
    if len(backwards):
        raise InputFormatError(f"{where}, line {backwards[0] + 3}: unix_s goes backwards (rows out of order?)")
    repeated = np.flatnonzero(np.diff(t) == 0)
    if len(repeated):
        raise InputFormatError(f"{where}, line {repeated[0] + 3}: unix_s repeats the previous row's "
                               "(a row given twice?): each row labels the time until the next")
    bad = np.flatnonzero((y != 0) & (y != 1))
    if len(bad):
        raise InputFormatError(f"{where}, line {bad[0] + 2}: stress {y[bad[0]]:g} is not 0 or 1")
    outside = (t < recording.start_s) | (t >= recording.end_s)
    span = (f"the labels ({utc_text(t[0])} to {utc_text(t[-1])}) and the recording "
            f"({utc_text(recording.start_s)} to {utc_text(recording.end_s)})")
    if outside.all():
        raise InputFormatError(f"{where}: {span} do not overlap: labels of another session?")
    if outside.any():
        log.warning("%s: %d of %d label rows lie outside the recording: %s only partly overlap; "
                    "the metrics use the rows inside", where, int(outside.sum()), len(t), span)


# ------------------------------------------------------------------------------ metrics


def roc_auc(scores: np.ndarray, truth: np.ndarray) -> float | None:
    """Area under the ROC curve (Mann-Whitney U, ties count half); None without both classes."""
    pos, neg = scores[truth > 0.5], scores[truth <= 0.5]
    if not len(pos) or not len(neg):
        return None
    ranks = _average_ranks(np.concatenate([pos, neg]))
    u = ranks[: len(pos)].sum() - len(pos) * (len(pos) + 1) / 2
    return float(u / (len(pos) * len(neg)))


def _average_ranks(x: np.ndarray) -> np.ndarray:
    from scipy.stats import rankdata

    return rankdata(x)


def label_row_s(label_t: np.ndarray) -> np.ndarray:
    """Seconds each label row stands for: until the next row, at most the labels' median spacing
    (a gap between rows is unlabelled time). Per-second labels give 1 s each.

    >>> label_row_s(np.array([0.0, 5.0, 10.0, 60.0])).tolist()
    [5.0, 5.0, 5.0, 5.0]
    """
    if len(label_t) < 2:
        return np.ones(len(label_t))
    gaps = np.diff(label_t)
    step = float(np.median(gaps))
    return np.minimum(np.r_[gaps, step], step)


def stress_periods(label_t: np.ndarray, label_y: np.ndarray, min_s: float = MIN_STRESS_PERIOD_S):
    """(onset, end) of every run of stress labels lasting at least ``min_s``."""
    y = (label_y > 0.5).astype(int)
    row_s = label_row_s(label_t)
    edges = np.diff(np.r_[0, y, 0])
    starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1) - 1
    out = []
    for i0, i1 in zip(starts, ends):
        onset, end = float(label_t[i0]), float(label_t[i1] + row_s[i1])
        if end - onset >= min_s:
            out.append((onset, end))
    return out


def labels_within(labels: tuple[np.ndarray, np.ndarray], span_s: tuple[float, float]) -> tuple[np.ndarray, np.ndarray]:
    """The label rows with ``span_s[0] <= unix_s < span_s[1]``; an error when there are none."""
    label_t, label_y = labels
    keep = (label_t >= span_s[0]) & (label_t < span_s[1])
    if not keep.any():
        raise InputFormatError("the labels do not overlap the recording")
    return label_t[keep], label_y[keep]


def tick_truth(t: np.ndarray, labels: tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """``(inside, truth)``: which ticks ``t`` lie in labelled time (a gap between label rows is
    unlabelled, ``label_row_s``) and the label (0/1) of each of those ticks."""
    label_t, label_y = labels
    row_s = label_row_s(label_t)
    idx = np.clip(np.searchsorted(label_t, t, side="right") - 1, 0, len(label_t) - 1)
    inside = (t >= label_t[0]) & (t <= label_t[idx] + row_s[idx])
    return inside, label_y[idx][inside]


def indicator_aucs(ticks: list[Tick], labels: tuple[np.ndarray, np.ndarray], span_s: tuple[float, float],
                   scored_only: bool = True) -> dict[str, dict]:
    """Stress-direction ROC AUC of each score indicator alone (``monitor.core.score.INDICATORS``:
    RMSSD and skin temperature count lower as stress), over the labelled ticks with a value of
    it; with ``scored_only``, only the ticks the pipeline scored (the ticks of ``roc_auc_scored``).
    Returns ``{indicator: {"roc_auc": AUC or None, "ticks": ticks used, "stress_ticks": of them labelled stress}}``."""
    from monitor.core.score import INDICATORS

    t = np.array([tk.t for tk in ticks])
    inside, truth = tick_truth(t, labels_within(labels, span_s))
    keep = np.array([tk.score.value is not None for tk in ticks])[inside] if scored_only else np.ones(len(truth), bool)
    out = {}
    for name, (_, direction, *_rest) in INDICATORS.items():
        x = np.array([tk.indicators.values.get(name, np.nan) for tk in ticks], dtype=float)[inside] * direction
        has = keep & np.isfinite(x)
        if has.any():
            out[name] = {"roc_auc": roc_auc(x[has], truth[has]), "ticks": int(has.sum()),
                         "stress_ticks": int(np.sum(truth[has] > 0.5))}
    return out


def label_metrics(t: np.ndarray, score: np.ndarray, decisions: list[Decision],
                  labels: tuple[np.ndarray, np.ndarray], span_s: tuple[float, float]) -> dict:
    """Detection metrics of one scored session against per-second stress labels.

    Only the label rows within ``span_s`` (the recording's start and end, unix s) count, and
    only check-ins within the labelled time: rest the recording does not cover is no rest of
    the wearer's. ``score`` has NaN where withheld; it counts as 0 (no alarm) for ``roc_auc``,
    so gating that hides a real stress episode costs the pipeline, as it would cost a wearer
    (and withheld rest ticks count as perfect negatives). ``roc_auc_scored`` counts only the
    ticks with a score.
    """
    label_t, label_y = labels_within(labels, span_s)
    row_s = label_row_s(label_t)
    labelled_until_s = label_t[-1] + row_s[-1]
    inside, truth = tick_truth(t, (label_t, label_y))
    scored = np.nan_to_num(score[inside], nan=0.0)
    has_score = np.isfinite(score[inside])
    periods = stress_periods(label_t, label_y)
    trigger_t = np.array([d.t_s for d in decisions])
    sent_t = np.array([d.t_s for d in decisions if d.sent and label_t[0] <= d.t_s <= labelled_until_s])
    detected, delays = 0, []
    for onset, end in periods:
        hits = trigger_t[(trigger_t >= onset) & (trigger_t <= end + TRIGGER_GRACE_S)]
        if len(hits):
            detected += 1
            delays.append(float(hits.min() - onset))
    rest_hours = float(np.sum(row_s[label_y <= 0.5])) / 3600.0
    sent_idx = np.clip(np.searchsorted(label_t, sent_t, side="right") - 1, 0, len(label_t) - 1)
    in_rest = ((label_y[sent_idx] <= 0.5) & (sent_t <= label_t[sent_idx] + row_s[sent_idx])  # (not in a gap)
               if len(sent_t) else np.array([], bool))
    # a check-in within the grace period after a stress period answers that period, not rest
    for k, ts in enumerate(sent_t):
        if any(onset <= ts <= end + TRIGGER_GRACE_S for onset, end in periods):
            in_rest[k] = False
    false_sent = int(np.sum(in_rest))
    return {
        "roc_auc": roc_auc(scored, truth),
        "roc_auc_scored": roc_auc(scored[has_score], truth[has_score]),
        "stress_periods": len(periods),
        "stress_periods_detected": detected,
        "detected_share": detected / len(periods) if periods else None,
        "rest_hours": rest_hours,
        "false_checkins": false_sent,
        "false_checkins_per_rest_hour": false_sent / rest_hours if rest_hours else None,
        "median_delay_s": float(np.median(delays)) if delays else None,
    }


def motion_gate_for(signals) -> str:
    """What the score's motion gate runs on: ``accelerometer``, ``steps`` (a device's step
    cadence) or ``none`` (nothing withholds the score during movement).

    >>> motion_gate_for(["hr", "ibi"]), motion_gate_for(["acc", "bvp"])
    ('none', 'accelerometer')
    """
    return "accelerometer" if "acc" in signals else "steps" if "cadence" in signals else "none"


def data_s(ticks: list[Tick], tick_s: float) -> float:
    """Seconds with data: ``tick_s`` for each tick whose window held samples of some signal (a
    quality other than ``missing``). Less than the recording's span when it has gaps: a Polar
    file of 10 min in two parts 3 h apart spans 190 min, of which about 11 min have data (its
    ticks' windows reach a minute past each part's end)."""
    return tick_s * sum(any(q != QUALITY_MISSING for q in tick.indicators.quality.values()) for tick in ticks)


def summarize(recording: Recording, ticks: list[Tick], monitor: WearerMonitor, labels, rejected: dict) -> dict:
    decisions = [d for tick in ticks for d in tick.decisions if isinstance(d, Decision)]
    gates: dict[str, int] = {}
    for tick in ticks:
        key = tick.score.gate or "scored"
        gates[key] = gates.get(key, 0) + 1
    summary = {
        "source": recording.source,
        "format": recording.format,
        "wearer": monitor.wearer_id,
        "start_s": recording.start_s,
        "duration_s": recording.duration_s,
        "data_s": data_s(ticks, monitor.config.core.tick_s),  # of the span (see data_s)
        "signals": sorted(recording.streams),
        "motion_gate": motion_gate_for(recording.streams),  # what withholds the score during movement
        # the share of ticks with a motion value: a gate is only as good as the time it covers
        "motion_signal_share": round(sum(any(k in tick.indicators.values for k in MOVING_KEYS) for tick in ticks)
                                     / len(ticks), 4) if ticks else None,
        "ticks": len(ticks),
        "tick_states": gates,
        "quality_counts": quality_counts(ticks),
        "indicators_used": sorted({n for tick in ticks for n in tick.score.used}),
        "trigger_decisions": len(decisions),
        "prompts_expired": sum(1 for tick in ticks for d in tick.decisions if not isinstance(d, Decision)),
        "checkins_sent": sum(d.sent for d in decisions),
        "suppressed": {r: sum(1 for d in decisions if not d.sent and d.reason == r)
                       for r in sorted({d.reason for d in decisions if not d.sent})},
        "rejected_batches": rejected,
        "threshold_final": monitor.policy.effective_threshold(),
        "reader_notes": list(recording.notes),  # what the reader estimated, sorted out or left out
        "note": "Descriptive signals of one person; anxmon is not a medical device.",
        "anxmon_version": __version__,
        "config": dataclasses.asdict(monitor.config),  # what the run used (--config, --set)
    }
    if labels is not None and ticks:
        t = np.array([tick.t for tick in ticks])
        score = np.array([np.nan if tick.score.value is None else tick.score.value for tick in ticks])
        span = (recording.start_s, recording.end_s)
        summary["labels"] = label_metrics(t, score, decisions, labels, span)
        # every run of stress labels within the recording, [onset, end] unix s (what the pages shade)
        summary["labels"]["periods"] = [[onset, end] for onset, end in
                                        stress_periods(*labels_within(labels, span), min_s=0.0)]
    return summary


def refusals(summary: dict) -> tuple[list[str], list[str]]:
    """``(lost, lines)`` of a summary's refused batches: the signals whose every batch was refused,
    and per signal and error kind a line "N of M <signal> batches[ (all: not analysed)], the first
    because <message>". A summary without them (an export's) has none.

    >>> refusals({"rejected_batches": {"eda: ValueRangeError": 2}, "batches_per_signal": {"eda": 9},
    ...           "first_refusal": {"eda: ValueRangeError": "eda sample 3 is outside 0-100 uS"}})
    ([], ['2 of 9 eda batches, the first because eda sample 3 is outside 0-100 uS'])
    """
    def table(name: str) -> dict:
        return summary[name] if isinstance(summary.get(name), dict) else {}

    rejected, per_signal, first = table("rejected_batches"), table("batches_per_signal"), table("first_refusal")
    signal_of = {key: key.split(":")[0] for key in rejected}  # "eda: ValueRangeError" -> "eda"
    refused: dict[str, int] = {}  # signal -> batches refused
    for key, n in rejected.items():
        refused[signal_of[key]] = refused.get(signal_of[key], 0) + n
    lost = sorted(sig for sig, n in refused.items() if n >= per_signal.get(sig, 0) > 0)
    lines = [f"{n} of {per_signal.get(signal_of[key], '?')} {signal_of[key]} batches"
             f"{' (all: not analysed)' if signal_of[key] in lost else ''}, the first because {first.get(key, '?')}"
             for key, n in sorted(rejected.items())]
    return lost, lines


def quality_counts(ticks: list[Tick]) -> dict[str, dict[str, int]]:
    """Per quality key (``eda``, ``hrv``...), how many ticks had each state (``ok``, ``irregular``...)."""
    counts: dict[str, dict[str, int]] = {}
    for tick in ticks:
        for key, state in tick.indicators.quality.items():
            per = counts.setdefault(key, {})
            per[state] = per.get(state, 0) + 1
    return {key: dict(sorted(per.items())) for key, per in sorted(counts.items())}


# ------------------------------------------------------------------------------ outputs


# per-indicator columns of indicators.csv for the indicators in the score (``<prefix><indicator>``);
# ``z_`` is the export's ``deviations`` and ``contrib_`` its ``contributions`` (anxmon export --what indicators)
BASELINE_PREFIX = "baseline_"  # the baseline mean, in the indicator's unit
Z_PREFIX = "z_"  # deviation from the baseline mean in baseline spreads (positive: higher than usual)
CONTRIB_PREFIX = "contrib_"  # the indicator's share of the stress score (the shares sum to it)
SCORE_DETAIL_PREFIXES = (BASELINE_PREFIX, Z_PREFIX, CONTRIB_PREFIX)
SCORED = "scored"  # the gate of a tick with a score (as in summary.json's tick_states)


def indicator_columns(ticks: list[Tick], supported: list[str] = ()) -> list[str]:
    """The indicator columns of indicators.csv: every indicator ``supported`` by the recording's
    signals (``AnalysisResult.indicator_keys``), empty where withheld, and any other the ticks
    have, sorted; recordings of the same devices give the same columns."""
    return sorted({*supported, *(name for tick in ticks for name in tick.indicators.values)})


def score_detail_columns(indicators: list[str]) -> list[str]:
    """``baseline_X``, ``z_X``, ``contrib_X`` for each indicator X in the score, grouped by prefix.

    >>> score_detail_columns(["HR_Mean", "SCR_Rate"])
    ['baseline_HR_Mean', 'baseline_SCR_Rate', 'z_HR_Mean', 'z_SCR_Rate', 'contrib_HR_Mean', 'contrib_SCR_Rate']
    """
    return [prefix + name for prefix in SCORE_DETAIL_PREFIXES for name in indicators]


def _number(x: float | None) -> str:
    """Shortest exact text of a number; empty for None or NaN."""
    return "" if x is None or x != x else repr(float(x))


def write_outputs(result: AnalysisResult, out_dir: Path, recording: Recording) -> None:
    """Write the output folder: all files or none. They are written in a hidden temporary folder
    inside it and moved in at the end, so a Ctrl-C or a write error leaves the previous analysis
    whole instead of mixing two."""
    out_dir.mkdir(parents=True, exist_ok=True)
    staging = _staging_folder(out_dir, out_dir)
    try:
        _write_files(result, staging, recording)
        # a recording analysed offline has no answers: an exported live session's must not stay
        # beside this analysis (the report would count them)
        (out_dir / "answers.jsonl").unlink(missing_ok=True)
        from monitor.report import ANALYSIS_FILES

        for name in ANALYSIS_FILES:
            os.replace(staging / name, out_dir / name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _staging_folder(folder: Path, named: Path) -> Path:
    """A new hidden folder in ``folder``; when it cannot be made, the error names ``named``
    (the output folder given), not the hidden one."""
    try:  # a short fixed name: the folder's own may already be as long as a name can be
        return Path(tempfile.mkdtemp(prefix=".anxmon-analyze.", dir=folder))
    except OSError as exc:
        raise type(exc)(exc.errno, exc.strerror, str(named)) from None


def check_writable(out_dir: Path) -> None:
    """An ``OSError`` naming ``out_dir`` when the output folder cannot be written, found before an
    analysis of minutes rather than after it: a hidden folder is made and removed in it or, when
    it does not exist yet, in the nearest folder above it that does (where it will be made).

    >>> check_writable(Path("pyproject.toml/out"))
    Traceback (most recent call last):
    NotADirectoryError: [Errno 20] Not a directory: 'pyproject.toml/out'
    """
    out_dir = Path(out_dir)
    existing = next((p for p in (out_dir, *out_dir.parents) if p.exists()), Path.cwd())
    _staging_folder(existing, out_dir).rmdir()


def _write_files(result: AnalysisResult, out_dir: Path, recording: Recording) -> None:
    columns = indicator_columns(result.ticks, result.indicator_keys)
    used = sorted({name for tick in result.ticks for name in tick.score.deviations})
    thresholds = result.thresholds if len(result.thresholds) == len(result.ticks) else [None] * len(result.ticks)
    with open(out_dir / "indicators.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["t", "stress_score", "quality", "gate", "threshold", *columns, *score_detail_columns(used)])
        for tick, threshold in zip(result.ticks, thresholds):
            quality = ";".join(f"{k}={v}" for k, v in sorted(tick.indicators.quality.items()))
            values, deviations, shares = tick.indicators.values, tick.score.deviations, tick.score.contributions
            w.writerow([repr(tick.t), _number(tick.score.value), quality, tick.score.gate or SCORED, _number(threshold),
                        *(_number(values.get(c)) for c in columns),
                        *(_number(deviations[n][1]) if n in deviations else "" for n in used),
                        *(_number(deviations[n][2]) if n in deviations else "" for n in used),
                        *(_number(shares.get(n)) for n in used)])
    with open(out_dir / "checkins.jsonl", "w") as f:  # one object per trigger decision
        for tick in result.ticks:
            for d in tick.decisions:
                if isinstance(d, Decision):
                    f.write(json.dumps(d.to_dict(), sort_keys=True) + "\n")
    (out_dir / "summary.json").write_text(json.dumps(result.summary, indent=2, sort_keys=True) + "\n")
    from monitor.markers import write_markers

    write_markers(out_dir / "markers.csv", recording.markers)
    from monitor.report import write_analysis_report

    write_analysis_report(out_dir / "report.html", result, recording)


# ------------------------------------------------------------------------------ provenance

HASH_CHUNK_BYTES = 1 << 20  # files are hashed in chunks of this size (never read whole)
LIBRARIES = ("numpy", "scipy", "pandas", "neurokit2")
E4_READ = ("labels.csv",)  # besides the signal files and tags*.csv, what is read from an E4 folder (its labels)


def file_record(path: str | Path) -> dict:
    """``{"path": absolute path, "bytes": size, "sha256": hex digest}`` of one file, hashed in chunks."""
    path = Path(path).resolve()
    digest = hashlib.sha256()
    size = 0
    with open(path, "rb") as f:
        while chunk := f.read(HASH_CHUNK_BYTES):
            digest.update(chunk)
            size += len(chunk)
    return {"path": str(path), "bytes": size, "sha256": digest.hexdigest()}


def input_files(path: str | Path) -> list[Path]:
    """The files a recording's reader reads: an E4 folder's signal, tags and labels files, a zip
    itself, an EmotiBit session's parsed files, else the one file."""
    from monitor.readers import detect, e4, emotibit
    from monitor.readers.common import Folder

    fmt, target = detect(path)
    if fmt == "e4" and target.is_dir():
        names = Folder(target, e4.SESSION_FILES).names
        return [p for name, p in sorted(names.items())
                if name in e4.SESSION_FILES or name in E4_READ or (name.startswith("tags") and name.endswith(".csv"))]
    if fmt == "emotibit":
        _, files = emotibit._session_files(target)
        return sorted(files.values())
    return [target]


def _recording_labels_file(path: str | Path) -> dict | None:
    """The record of the ``labels.csv`` a recording's session folder brings (``readers.labels_folder``;
    in a zip: ``zip/member`` and the member's bytes), or None."""
    from monitor.readers import LABELS_FILE, detect, labels_folder

    path = Path(path)
    folder = labels_folder(path, *detect(path))
    if folder is None:
        return None
    if folder.zip is None:
        return file_record(folder.names[LABELS_FILE])
    data = folder.zip.read(folder.names[LABELS_FILE])
    return {"path": f"{path.resolve()}/{folder.names[LABELS_FILE]}", "bytes": len(data),
            "sha256": hashlib.sha256(data).hexdigest()}


def _git(root: Path, *args: str) -> str | None:
    """Output of a read-only git command in ``root`` (no optional locks), or None."""
    try:
        run = subprocess.run(["git", "--no-optional-locks", "-C", str(root), *args], capture_output=True, text=True,
                             timeout=10, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.SubprocessError):
        return None
    return run.stdout.strip() if run.returncode == 0 else None


@functools.lru_cache(maxsize=1)
def code_identity() -> dict:
    """What code ran: ``git_describe`` (``git describe --always``, ``-dirty`` when tracked files
    differ from the commit; None outside a git checkout) and ``sources_sha256`` (over the
    relative paths and bytes of every ``.py`` file of ``monitor/`` and ``firmware_bridge/``)."""
    root = Path(__file__).resolve().parents[1]
    digest = hashlib.sha256()
    for package in ("monitor", "firmware_bridge"):
        for p in sorted((root / package).rglob("*.py")):
            digest.update(p.relative_to(root).as_posix().encode() + b"\0" + p.read_bytes() + b"\0")
    describe = None
    if (root / ".git").exists():
        describe = _git(root, "describe", "--always")
        status = _git(root, "status", "--porcelain", "--untracked-files=no")
        if describe and status is not None:
            describe += "-dirty" if status else ""
    return {"git_describe": describe, "sources_sha256": digest.hexdigest()}


def library_versions() -> dict:
    """Python's and the numeric libraries' versions (installed metadata: nothing is imported)."""
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version()}
    for name in LIBRARIES:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = None
    return out


def provenance(path: str | Path, labels_path: str | Path | None = None, markers_path: str | Path | None = None,
               labels_used: bool = False, argv: list[str] | None = None) -> dict:
    """What identifies a run: the absolute source path, every input file with its size and sha256,
    the labels file (``--labels``, else the recording's own ``labels.csv`` when ``labels_used``)
    and markers file, the command line, anxmon's version, the code and the libraries."""
    labels = None
    if labels_path is not None:
        labels = {**file_record(labels_path), "from": "--labels"}
    elif labels_used:
        found = _recording_labels_file(path)
        labels = None if found is None else {**found, "from": "the recording"}
    return {
        "source_path": str(Path(path).resolve()),
        "inputs": [file_record(p) for p in input_files(path)],
        "labels_file": labels,
        "markers_file": None if markers_path is None else file_record(markers_path),
        "argv": None if argv is None else list(argv),
        "anxmon_version": __version__,
        "code": code_identity(),
        "libraries": library_versions(),
    }


def run_analyze(path: str | Path, out_dir: str | Path, config: Config | None = None,
                labels_path: str | None = None, wearer_id: str | None = None,
                markers_path: str | None = None, use_labels: bool = True, labels_if_clean: bool = False,
                argv: list[str] | None = None) -> tuple[AnalysisResult, Recording]:
    """``anxmon analyze``: read a recording (format detected), add markers from a CSV, analyse,
    and write the output folder. Returns the result and the recording. ``use_labels=False``
    ignores any labels; ``labels_if_clean`` keeps the recording's labels only when they pass
    ``check_labels`` and otherwise goes on without them, with a warning (``anxmon report``: a
    damaged labels.csv must not stop it). ``wearer_id`` defaults to the recording's
    (``wearer_id_for``: ``S02`` -> ``s02``). ``argv`` (the command line) goes into the summary's
    ``provenance``."""
    from monitor.markers import add_markers_file
    from monitor.report import ANALYSIS_FILES, check_output_folder

    check_output_folder(Path(out_dir), (*ANALYSIS_FILES, "answers.jsonl"))  # (answers.jsonl: removed)
    check_writable(Path(out_dir))
    recording = read_recording(path)
    if markers_path:
        recording.markers = add_markers_file(recording.markers, markers_path, recording.notes)
    outside = [m for m in recording.markers if not recording.start_s <= m.t_s <= recording.end_s]
    if outside:
        log.warning("%d of %d markers lie outside the recording (%s to %s), e.g. %s at %s: no window around "
                    "them holds data", len(outside), len(recording.markers), utc_text(recording.start_s),
                    utc_text(recording.end_s), outside[0].kind, utc_text(outside[0].t_s))
    if not use_labels:
        recording.labels = None
    labels = read_label_file(labels_path) if labels_path else recording.labels
    if labels is not None:
        try:
            check_labels(labels, recording, labels_path or f"labels of {recording.source}")
        except InputFormatError as exc:
            if not labels_if_clean or labels_path:
                raise
            log.warning("%s: going on without the labels", exc)
            labels = recording.labels = None
    result = analyze_recording(recording, config, wearer_id, labels)
    result.summary["provenance"] = provenance(path, labels_path, markers_path, labels is not None, argv)
    write_outputs(result, Path(out_dir), recording)
    return result, recording
