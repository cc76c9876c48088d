"""``anxmon eval``: the score on the labelled Stress-Predict subjects, next to a simple reference.

The reference is computed in the same run from the same files: z-scores of 0.5 Hz low-passed
EDA plus E4's own heart rate, both against the session's first 300 s, averaged, and fed to the
same check-in policy (same threshold, sustain time, cooldown). It is deliberately simple: a
pipeline that cannot beat it has no reason to exist.

Two subjects are a smoke test, not a validation.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path
from typing import Callable

import numpy as np
from scipy import signal as sps

from monitor.analyze import analyze_recording, check_labels, indicator_aucs, label_metrics, provenance
from monitor.config import Config
from monitor.core.policy import CheckinPolicy, Decision
from monitor.errors import InputFormatError
from monitor.recordings import Recording, read_recording

REFERENCE_SIGNALS = ("eda", "hr")  # what the reference needs
REFERENCE_BASELINE_S = 300.0
REFERENCE_LOWPASS_HZ = 0.5
SWEEP_THRESHOLDS = (1.0, 1.25, 1.5, 1.75, 2.0, 2.5)  # policy.threshold values of the operating table


def reference_scores(rec: Recording, tick_t: np.ndarray) -> np.ndarray:
    """Mean of z(EDA low-passed at 0.5 Hz) and z(E4 HR) against the first 300 s, at ``tick_t``."""
    eda = rec.streams["eda"]
    b, a = sps.butter(2, REFERENCE_LOWPASS_HZ, fs=eda.fs)
    eda_lp = sps.filtfilt(b, a, eda.values)  # offline reference: zero-phase is fine here
    parts = []
    for t, x in ((eda.times_s(), eda_lp), (rec.streams["hr"].times_s(), rec.streams["hr"].values)):
        base = x[t < t[0] + REFERENCE_BASELINE_S]
        z = (x - base.mean()) / (base.std() or 1.0)
        parts.append(np.interp(tick_t, t, z))
    return np.mean(parts, axis=0)


def reference_decisions(t: np.ndarray, score: np.ndarray, config: Config) -> list[Decision]:
    policy = CheckinPolicy(config.policy, wearer_id="reference")
    return [d for ti, si in zip(t, score) for d in policy.update(float(ti), float(si), {})
            if isinstance(d, Decision)]


BREATHING_AND_RESTLESSNESS = ("RSP_Rate", "ACC_Restlessness")  # breathing rate and restlessness
HEART_ONLY = "pipeline, heart only (E4 HR and IBI)"  # what a heart-rate strap or watch gives: no EDA, temperature, motion
HEART_SIGNALS = ("hr", "ibi")
METHODS = ("pipeline", "pipeline without breathing/restlessness", HEART_ONLY, "reference")


def without(config: Config, indicators: tuple[str, ...]) -> Config:
    """``config`` with the given indicators' score weights set to 0."""
    weights = {**config.score.weights, **{name: 0.0 for name in indicators}}
    return dataclasses.replace(config, score=dataclasses.replace(config.score, weights=weights))


def with_threshold(config: Config, threshold: float) -> Config:
    """``config`` with another check-in threshold; ``rearm_below`` keeps its share of it (a
    derived one does that by itself; a set one, e.g. 1.2 of 2.0, becomes 0.6 of 1.0)."""
    policy = config.policy
    rearm = None if policy.rearm_below is None else policy.rearm_below * threshold / policy.threshold
    return dataclasses.replace(config, policy=dataclasses.replace(policy, threshold=threshold, rearm_below=rearm))


def _done(what: str) -> None:
    """The default ``done`` callback of ``evaluate_subject``: no progress shown."""


def threshold_sweep(rec: Recording, wearer_id: str, t: np.ndarray, ref_score: np.ndarray, config: Config,
                    done: Callable[[str], None] = _done) -> list[dict]:
    """Stress periods with a trigger and false check-ins per rest hour of the pipeline and of the
    reference at each of ``SWEEP_THRESHOLDS`` (only ``policy.threshold`` changes): how rarity
    trades against sensitivity, beyond the one default operating point. ``done(what)`` is
    called after each analysis."""
    rows, span = [], (rec.start_s, rec.end_s)
    for threshold in SWEEP_THRESHOLDS:
        cfg = with_threshold(config, threshold)
        ours = analyze_recording(rec, cfg, wearer_id=wearer_id, progress=False).summary["labels"]
        done(f"threshold {threshold:g}")
        ref = label_metrics(t, ref_score, reference_decisions(t, ref_score, cfg), rec.labels, span)
        rows.append({"threshold": threshold, **{
            method: {key: m[key] for key in ("stress_periods", "stress_periods_detected", "false_checkins_per_rest_hour")}
            for method, m in (("pipeline", ours), ("reference", ref))}})
    return rows


RUNS_PER_SUBJECT = 3 + len(SWEEP_THRESHOLDS)  # analyses of one subject (with the sweep)


def evaluate_subject(path: Path, config: Config, sweep: bool = True, done: Callable[[str], None] = _done) -> dict:
    """Metrics of the pipeline, of the pipeline without breathing rate and restlessness, of the
    pipeline fed only the E4's heart rate and beat intervals (``HEART_ONLY``: an HR-only device's
    view, with no motion gate; the E4's own beats, not a chest strap's), and of the reference; with ``sweep``, also the operating table over ``SWEEP_THRESHOLDS``.
    ``done(what)`` is called after each of the ``RUNS_PER_SUBJECT`` analyses (progress)."""
    rec = read_recording(path)
    if rec.labels is None:
        raise InputFormatError(f"{path}: no labels.csv, nothing to evaluate against")
    missing = [signal for signal in REFERENCE_SIGNALS if signal not in rec.streams]
    if missing:
        raise InputFormatError(f"{path}: no {' and no '.join(missing)} samples; eval needs "
                               f"{' and '.join(REFERENCE_SIGNALS)} (the reference is computed from them)")
    check_labels(rec.labels, rec, f"{path}/labels.csv")
    result = analyze_recording(rec, config, wearer_id=path.name.lower(), progress=False)
    done("pipeline")
    reduced = analyze_recording(rec, without(config, BREATHING_AND_RESTLESSNESS), wearer_id=path.name.lower(), progress=False)
    done("without breathing/restlessness")
    heart = dataclasses.replace(rec, streams={k: v for k, v in rec.streams.items() if k in HEART_SIGNALS})
    heart_only = analyze_recording(heart, config, wearer_id=path.name.lower(), progress=False, labels=rec.labels)
    done("heart only")
    t = np.array([tk.t for tk in result.ticks])
    ref_score = reference_scores(rec, t)
    span = (rec.start_s, rec.end_s)
    ref = label_metrics(t, ref_score, reference_decisions(t, ref_score, config), rec.labels, span)
    # on equal terms: the reference's AUC on the ticks the pipeline scored (its withheld ticks, all
    # in rest on S02 and S05, are perfect negatives for the pipeline's roc_auc)
    withheld = np.array([tk.score.value is None for tk in result.ticks])
    ref["roc_auc_scored"] = label_metrics(t, np.where(withheld, np.nan, ref_score), [], rec.labels,
                                          span)["roc_auc_scored"]
    return {"subject": path.name, "pipeline": result.summary["labels"],
            "pipeline without breathing/restlessness": reduced.summary["labels"],
            HEART_ONLY: heart_only.summary["labels"], "reference": ref,
            "indicators_used": result.summary["indicators_used"],
            # each indicator alone, in its stress direction: on the ticks the pipeline scored (the
            # ticks of roc_auc_scored), and on every labelled tick with a value
            "indicator_auc_scored": indicator_aucs(result.ticks, rec.labels, span, scored_only=True),
            "indicator_auc_all": indicator_aucs(result.ticks, rec.labels, span, scored_only=False),
            "sweep": threshold_sweep(rec, path.name.lower(), t, ref_score, config, done) if sweep else None,
            "config": dataclasses.asdict(config),
            "provenance": provenance(path, labels_used=True)}


def run_eval(subjects: list[str], config: Config, as_json: bool = False, out=sys.stdout,
             progress: bool | None = None, err=None) -> int:
    """``anxmon eval``. ``progress=None`` shows a progress bar over every analysis on ``err``
    (default stderr) only when it is a terminal, as ``analyze`` does."""
    from tqdm import tqdm

    from monitor.cli import shared_data_dir

    data = shared_data_dir()
    paths = []
    for name in subjects:
        path = Path(name)
        if not path.exists():
            if data is None:
                raise InputFormatError(f"{name}: not found, and ../shared/data is not beside the project")
            subjects_dir = data / "stress-predict"
            path = subjects_dir / name
            if not path.is_dir():
                known = ", ".join(sorted(p.name for p in subjects_dir.iterdir() if p.is_dir())
                                  if subjects_dir.is_dir() else []) or "none"
                raise InputFormatError(f"{name}: not found here, nor a subject in {subjects_dir} ({known})")
        paths.append(path)
    rows = []
    with tqdm(total=len(paths) * RUNS_PER_SUBJECT, unit="analysis", desc="eval", file=err or sys.stderr,
              disable=None if progress is None else not progress, leave=False, mininterval=0) as bar:
        for path in paths:
            def done(what: str, name: str = path.name) -> None:
                bar.set_postfix_str(f"{name}: {what} done", refresh=False)
                bar.update(1)

            rows.append(evaluate_subject(path, config, done=done))
    if as_json:
        print(json.dumps(rows), file=out)
        return 0
    print(format_table(rows), file=out)
    print("\nEach indicator alone: ROC AUC in its stress direction (RMSSD and skin temperature lower) on the ticks "
          "the pipeline scored, those ticks with a value (of them labelled stress), and the AUC on every labelled "
          "tick with a value:\n", file=out)
    print(format_indicator_table(rows), file=out)
    print(f"\nAt other check-in thresholds (only policy.threshold changes; this run's: {config.policy.threshold:g}):\n",
          file=out)
    print(format_sweep(rows), file=out)
    n = len(rows)
    print(f"\n{'One subject is' if n == 1 else f'{n} subjects are'} a smoke test, not a validation.", file=out)
    return 0


def _cell(v, digits: int = 2) -> str:
    return "n/a" if v is None else f"{v:.{digits}f}"


def format_table(rows: list[dict]) -> str:
    head = ("| subject | method | ROC AUC | ROC AUC, ticks the pipeline scored | stress periods with a trigger "
            "| false check-ins / rest h | median delay (s) |")
    lines = [head, "|---|---|---|---|---|---|---|"]
    for r in rows:
        for method in METHODS:
            m = r[method]
            periods = f"{m['stress_periods_detected']}/{m['stress_periods']}"
            lines.append(f"| {r['subject']} | {method} | {_cell(m['roc_auc'], 3)} | {_cell(m.get('roc_auc_scored'), 3)} "
                         f"| {periods} | {_cell(m['false_checkins_per_rest_hour'])} | {_cell(m['median_delay_s'], 0)} |")
    return "\n".join(lines)


def format_indicator_table(rows: list[dict]) -> str:
    """Per subject, each indicator's stress-direction ROC AUC on the ticks the pipeline scored,
    the ticks that used (of them labelled stress), and the AUC on every labelled tick with a value."""
    from monitor.core.score import INDICATORS

    names = [n for n in INDICATORS if any(n in r["indicator_auc_scored"] or n in r["indicator_auc_all"] for r in rows)]
    lines = ["| subject | ticks | " + " | ".join(names) + " |", "|---|---|" + "---|" * len(names)]
    for r in rows:
        scored, every = r["indicator_auc_scored"], r["indicator_auc_all"]
        for label, cells in (
                ("scored", [_cell(scored[n]["roc_auc"], 3) if n in scored else "n/a" for n in names]),
                ("scored: ticks (stress)", [f"{scored[n]['ticks']} ({scored[n]['stress_ticks']})" if n in scored
                                            else "0" for n in names]),
                ("all with a value", [_cell(every[n]["roc_auc"], 3) if n in every else "n/a" for n in names])):
            lines.append(f"| {r['subject']} | {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def format_sweep(rows: list[dict]) -> str:
    head = ("| subject | threshold | pipeline: stress periods with a trigger | pipeline: false check-ins / rest h "
            "| reference: stress periods with a trigger | reference: false check-ins / rest h |")
    lines = [head, "|---|---|---|---|---|---|"]
    for r in rows:
        for row in r["sweep"] or ():
            cells = []
            for method in ("pipeline", "reference"):
                m = row[method]
                cells += [f"{m['stress_periods_detected']}/{m['stress_periods']}", _cell(m["false_checkins_per_rest_hour"])]
            lines.append(f"| {r['subject']} | {row['threshold']:g} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
