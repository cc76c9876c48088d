"""Self-contained HTML reports with plots (matplotlib PNGs embedded as base64, no external assets).

Two pages:

* ``report.html`` of ``anxmon analyze`` (``write_analysis_report``): one session's indicators
  against the personal baseline, the score, check-ins and markers.
* ``anxmon report`` (``write_report``), from an analyze output folder: the timeline with
  check-ins, answers and markers; a daily summary; and for each marker kind a before/after
  comparison of the wearer's stress load and check-in rate, with bootstrap intervals.

An analyze output folder holds ``indicators.csv`` (one row per tick: ``t``, ``stress_score``,
``quality``, ``gate``, ``threshold``, indicators, and ``baseline_``/``z_``/``contrib_`` per
indicator in the score; see docs/research.md), ``checkins.jsonl`` (one trigger decision per line: ``t``, ``sent``, ``reason``...),
``summary.json``, and optionally ``markers.csv`` (``monitor.markers``) and ``answers.jsonl``
(one answer per line: ``t``, ``prompt_id``, ``rating`` 1-5 or null, ``labels``).

The before/after comparison, per marker of a kind: a window of ``before_s`` ending at the marker
and one of ``after_s`` starting at it; in each, the mean score, the share of scored time with the
score at or above the threshold, and check-ins sent per hour of data. A window counts when ticks
cover at least half of it (scored ticks for the two score measures). A marker counts for a
measure when both its windows count; its difference is after minus before. The 95% interval is a
percentile bootstrap of the mean difference over markers (markers resampled with replacement,
``numpy.random.default_rng(seed)``), so each marker's pair of windows counts once.

Example
-------
>>> run_report("out/s02", "s02.html", before_s=120, after_s=120)     # doctest: +SKIP
"""

from __future__ import annotations

import base64
import dataclasses
import html
import io
import json
import logging
import math
import tempfile
from dataclasses import dataclass, field
from datetime import datetime, timedelta, tzinfo
from pathlib import Path

import numpy as np
import pandas as pd

from monitor.config import Config
from monitor.core.policy import MAX_THRESHOLD
from monitor.errors import AnxmonError, InputFormatError
from monitor.markers import Marker, add_markers_file, read_markers, utc_text

log = logging.getLogger(__name__)

PANELS = [  # (indicator, label) shown over time, when present
    ("HR_Mean", "Heart rate (bpm)"),
    ("HRV_RMSSD", "RMSSD (ms)"),
    ("EDA_Tonic_Mean", "Skin conductance level (µS)"),
    ("SCR_Rate", "SCRs per minute"),
    ("TEMP_Mean", "Skin temperature (°C)"),
    ("RSP_Rate", "Breathing rate (/min)"),
    ("ACC_Restlessness", "Restlessness (share of s)"),
    ("ACC_Activity", "Movement (g)"),
    ("CADENCE_Mean", "Step cadence (steps/min)"),  # the motion gate of a watch without an accelerometer
]
MEASURES = [  # (key, name in the table, unit)
    ("mean_score", "mean stress score", "score"),
    ("share_above", "share of scored time at or above the threshold", "share"),
    ("checkins_per_h", "check-ins sent per hour", "per h"),
]
DAY_S = 86_400.0
DEFAULT_WINDOW_S = DAY_S
MIN_COVERAGE = 0.5
MARKER_COLORS = ["#5b5bd6", "#c05621", "#2f855a", "#b83280", "#2b6cb0", "#744210", "#319795", "#9b2c2c"]
NOT_EVIDENCE = (
    "These are descriptive statistics of one person's recorded signals. They describe what the "
    "signals did around these markers in this recording; they are not evidence that an event or a "
    "treatment caused any change, and they are not a diagnosis. anxmon is not a medical device."
)


def _png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    return base64.b64encode(buf.getvalue()).decode()


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _kind_colors(markers: list[Marker]) -> dict[str, str]:
    kinds = sorted({m.kind for m in markers})
    return {k: MARKER_COLORS[i % len(MARKER_COLORS)] for i, k in enumerate(kinds)}


LONG_GAP_S = 3600.0  # a pause in the ticks longer than this is drawn narrow (a broken axis)
GAP_WIDTH = 0.03  # share of the drawn axis one long pause takes


@dataclass(frozen=True)
class TimeAxis:
    """Unix seconds to plot x, with pauses longer than ``LONG_GAP_S`` drawn narrow.

    x is in ``unit`` (minutes, or hours beyond 3 h) since ``t0_s``; within data it advances one
    unit per unit of time, across a long pause by ``GAP_WIDTH`` of the drawn axis, so 4 h of data
    and a 42 h pause do not squeeze the data into a tenth of the width.

    >>> ax = TimeAxis.of(np.array([0.0, 60.0, 7260.0, 7320.0]))
    >>> ax.unit, ax.gaps_s
    ('minutes', [(60.0, 7260.0)])
    >>> float(ax.x(30.0)), float(ax.x(7290.0)) < 100
    (0.5, True)
    """
    t0_s: float
    unit_s: float
    unit: str
    knots_t_s: np.ndarray  # increasing real times ...
    knots_x: np.ndarray  # ... and their x
    gaps_s: list[tuple[float, float]]

    @classmethod
    def of(cls, t: np.ndarray, long_gap_s: float = LONG_GAP_S) -> "TimeAxis":
        t = np.asarray(t, dtype=float)
        t0, span = float(t[0]), float(t[-1] - t[0])
        unit_s, unit = (60.0, "minutes") if span <= 3 * 3600 else (3600.0, "hours")
        i_gap = np.flatnonzero(np.diff(t) > long_gap_s)
        gaps = [(float(t[i]), float(t[i + 1])) for i in i_gap]
        kept_s = span - sum(b - a for a, b in gaps)
        width_s = GAP_WIDTH * max(kept_s, 1.0) / max(1.0 - GAP_WIDTH * len(gaps), 0.5)
        knots_t, knots_x, x = [t0], [0.0], 0.0
        for a, b in gaps:
            x += (a - knots_t[-1]) / unit_s
            knots_t += [a, b]
            knots_x += [x, x + width_s / unit_s]
            x += width_s / unit_s
        knots_t.append(float(t[-1]))
        knots_x.append(x + (float(t[-1]) - knots_t[-2]) / unit_s)
        return cls(t0, unit_s, unit, np.array(knots_t), np.array(knots_x), gaps)

    def x(self, t_s):
        """Plot x of unix seconds (outside the data: one unit per unit of time)."""
        t_s = np.asarray(t_s, dtype=float)
        lo, hi = self.knots_t_s[0], self.knots_t_s[-1]
        inside = np.interp(t_s, self.knots_t_s, self.knots_x)
        return np.where(t_s < lo, (t_s - lo) / self.unit_s,
                        np.where(t_s > hi, self.knots_x[-1] + (t_s - hi) / self.unit_s, inside))

    def ticks(self, n_total: int = 10) -> tuple[list[float], list[str]]:
        """Tick positions (x) and labels (real time since t0 in ``unit``), round numbers per data block."""
        from matplotlib.ticker import MaxNLocator

        bounds = [self.knots_t_s[0]] + [v for gap in self.gaps_s for v in gap] + [self.knots_t_s[-1]]
        blocks = list(zip(bounds[0::2], bounds[1::2]))
        total = sum(b - a for a, b in blocks) or 1.0
        xs, labels = [], []
        for a, b in blocks:
            lo, hi = (a - self.t0_s) / self.unit_s, (b - self.t0_s) / self.unit_s
            n = max(1, round(n_total * (b - a) / total))
            for v in MaxNLocator(nbins=n, steps=[1, 2, 2.5, 5, 10]).tick_values(lo, hi):
                if lo - 1e-9 <= v <= hi + 1e-9 and not any(abs(float(self.x(self.t0_s + v * self.unit_s)) - x0)
                                                           < 0.04 * self.knots_x[-1] for x0 in xs):
                    xs.append(float(self.x(self.t0_s + v * self.unit_s)))
                    labels.append(f"{v:g}")
        return xs, labels


def timeline_png(*args, **kwargs) -> str:
    """``timeline_figure`` as one PNG (base64)."""
    fig = timeline_figure(*args, **kwargs)
    png = _png(fig)
    _pyplot().close(fig)
    return png


def _legend_above(ax, most_columns: int = 4) -> None:
    """The panel's legend above its top right corner, in a row (up to ``most_columns`` entries a
    row): never over the lines, and the panels keep the figure's width."""
    entries = len(ax.get_legend_handles_labels()[0])
    ax.legend(fontsize=7, loc="lower right", bbox_to_anchor=(1.0, 1.0), borderaxespad=0.2, frameon=False,
              ncol=min(entries, most_columns))


def timeline_figure(t: np.ndarray, panels: list[tuple[str, np.ndarray, np.ndarray | None]], score: np.ndarray,
                    threshold: float | None, decisions: list[tuple[float, bool]], answers: list[tuple[float, int | None]],
                    markers: list[Marker], stress: list[tuple[float, float]] = (), title: str = "",
                    tz: tzinfo | None = None, threshold_label: str | None = None):
    """A matplotlib figure: indicator panels (label, values, baseline or None) and the score panel.

    The score panel shows the threshold (legend ``threshold_label``, default "check-in
    threshold X"), check-ins (green: sent, grey: suppressed) and answers
    (triangles, labelled with the rating); every panel shows markers (dotted, one color per
    kind) and labelled stress (orange). Time is in minutes since the start (its clock time in
    ``tz``, None: this computer's zone, named in the axis label), hours beyond 3 h;
    lines break where ticks pause for more than 3 tick intervals, and a pause longer than
    ``LONG_GAP_S`` is drawn narrow and hatched, labelled with its length (``TimeAxis``). Legends
    stand above their panel, never over its lines.
    """
    plt = _pyplot()
    axis = TimeAxis.of(t)
    t0, unit = axis.t0_s, axis.unit
    dt = np.diff(t)
    breaks = np.flatnonzero(dt > 3 * np.median(dt)) + 1 if len(t) > 2 else np.array([], int)
    x = np.insert(axis.x(t), breaks, np.nan)
    gap = lambda y: np.insert(np.asarray(y, dtype=float), breaks, np.nan)  # noqa: E731
    score = gap(score)
    panels = [(label, gap(y), None if baseline is None else gap(baseline)) for label, y, baseline in panels]
    fig, axes = plt.subplots(len(panels) + 1, 1, figsize=(11, 1.7 * (len(panels) + 1) + 0.4), sharex=True,
                             layout="constrained")
    axes = np.atleast_1d(axes)
    for ax, (label, y, baseline) in zip(axes, panels):
        ax.plot(x, y, lw=1.0, color="#345")
        if baseline is not None and np.isfinite(baseline).any():
            ax.plot(x, baseline, lw=1.0, ls="--", color="#999", label="personal baseline")
            _legend_above(ax)
        ax.set_ylabel(label, fontsize=8)
    ax = axes[-1]
    ax.plot(x, score, lw=1.0, color="#a33", label="stress score")
    if threshold is not None:
        ax.axhline(threshold, ls="--", lw=0.8, color="#a33", label=threshold_label or f"check-in threshold {threshold:g}")
    for ts, sent in decisions:
        ax.axvline(axis.x(ts), color="#2a7" if sent else "#bbb", lw=1.2)
    if len(answers):
        top = np.nanmax(score) if np.isfinite(score).any() else 1.0
        for ts, rating in answers:
            xa = float(axis.x(ts))
            ax.plot([xa], [top], marker="v", color="#2a7", ms=7)
            if rating is not None:
                ax.annotate(str(rating), (xa, top), textcoords="offset points", xytext=(0, 5), fontsize=7, ha="center")
    ax.set_ylabel("score", fontsize=8)
    start = datetime.fromtimestamp(t0, tz).astimezone(tz)
    zone = getattr(tz, "key", None)  # "CET" alone does not say which zone: "CET, Europe/Berlin"
    ax.set_xlabel(f"{unit} since {start.strftime('%Y-%m-%d %H:%M %Z')}"
                  + (f", {zone}" if zone and zone != start.strftime("%Z") else ""))
    colors = _kind_colors(markers)
    for a in axes:
        for onset, end in stress:
            a.axvspan(axis.x(onset), axis.x(end), color="#fc9", alpha=0.35, lw=0)
        for m in markers:
            a.axvline(axis.x(m.t_s), color=colors[m.kind], lw=0.8, ls=":")
        for g0, g1 in axis.gaps_s:
            a.axvspan(axis.x(g0), axis.x(g1), facecolor="none", edgecolor="#999", hatch="//", lw=0)
    for g0, g1 in axis.gaps_s:  # written upright on the pause itself (above the panel stand the legends)
        axes[0].annotate(f"{duration_text(g1 - g0)} without data", (float(axis.x((g0 + g1) / 2)), 0.5),
                         xycoords=("data", "axes fraction"), rotation=90, fontsize=7, ha="center", va="center",
                         color="#666", bbox=dict(facecolor="white", edgecolor="none", pad=1.0))
    if axis.gaps_s:
        axes[-1].set_xticks(*axis.ticks())
    for kind, color in colors.items():
        ax.plot([], [], color=color, ls=":", label=f"marker: {kind}")
    _legend_above(ax)
    if title:
        fig.suptitle(title, fontsize=9)
    return fig


# ------------------------------------------------------------------------------ analyze's page


def analysis_figure(result, recording) -> str:
    """One PNG (base64): indicators, score with threshold and check-ins, labels shaded."""
    ticks = result.ticks
    t = np.array([tk.t for tk in ticks])
    panels = []
    for key, label in PANELS:
        if any(key in tk.indicators.values for tk in ticks):
            y = np.array([tk.indicators.values.get(key, np.nan) for tk in ticks])
            baseline = np.array([tk.score.deviations.get(key, (np.nan, np.nan))[1] for tk in ticks])
            panels.append((label, y, baseline))
    score = np.array([np.nan if tk.score.value is None else tk.score.value for tk in ticks])
    decisions = [(d.t_s, d.sent) for tk in ticks for d in tk.decisions if getattr(d, "sent", None) is not None]
    return timeline_png(t, panels, score, result.summary.get("threshold_final"), decisions, [],
                        recording.markers, labelled_stress(result.summary),
                        "Indicators against the personal baseline (dashed), and the stress score "
                        "(orange: labelled stress; green: check-in sent; grey: suppressed; dotted: markers)",
                        tz=analysis_zone(result.summary))  # the clock of quiet hours and the daily cap


def labelled_stress(summary: dict) -> list[tuple[float, float]]:
    """The labelled stress periods of an analysis (``summary["labels"]["periods"]``), or none."""
    periods = (summary.get("labels") or {}).get("periods") or []
    return [(float(a), float(b)) for a, b in periods if _is_number(a) and _is_number(b)]


def write_analysis_report(path: Path, result, recording) -> None:
    summary = result.summary
    shown_elsewhere = ("labels", "config", "provenance", "quality_counts")
    rows = "".join(  # (argv left out: the page is reproducible)
        f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(json.dumps(v) if not isinstance(v, str) else v)}</td></tr>"
        for k, v in summary.items() if k not in shown_elsewhere
    )
    png = analysis_figure(result, recording) if result.ticks else ""
    img = f'<img alt="indicators and score over time" src="data:image/png;base64,{png}">' if png else "<p>No ticks.</p>"
    path.write_text(f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>anxmon analysis</title>
<style>{CSS}</style></head>
<body><h1>anxmon analysis: {html.escape(Path(recording.source).name)}</h1>
<p class="note">These are descriptive signals of one person's body, computed against their own
baseline. anxmon is not a medical device: it does not diagnose anything and gives no medical advice.</p>
{img}
{how_to_read_html(summary, summary.get("quality_counts") or {})}
{labels_html(summary)}
{run_html(summary)}
<h2>Summary</h2><table>{rows}</table>
</body></html>
""", encoding="utf-8")


# ------------------------------------------------------------------------------ explanations

LABEL_METRICS = [  # (summary["labels"] key, what it is, digits)
    ("roc_auc", "ROC AUC of the score against the labels, per tick (a withheld score counts as 0)", 3),
    ("roc_auc_scored", "ROC AUC on the ticks with a score only", 3),
    ("stress_periods", "labelled stress periods of at least 60 s", 0),
    ("stress_periods_detected", "of them with a trigger decision (sent or suppressed) between onset and 60 s "
                                "after the end", 0),
    ("detected_share", "share of stress periods with a trigger", 2),
    ("median_delay_s", "median delay from onset to the first trigger (s)", 0),
    ("rest_hours", "labelled rest (h)", 2),
    ("false_checkins", "check-ins sent during labelled rest", 0),
    ("false_checkins_per_rest_hour", "check-ins sent per hour of labelled rest", 2),
]
QUALITY_SIGNALS = {  # quality key -> what it covers
    "acc": "movement (accelerometer; the motion gate)",
    "cadence": "step cadence (the motion gate without an accelerometer)",
    "eda": "skin conductance (EDA_*, SCR_*)",
    "hrv": "heart-rate variability (HRV_RMSSD and the other HRV_*)",
    "hr": "heart rate as the device reports it (HR_Mean of a device without beats)",
    "restlessness": "restlessness (ACC_Restlessness)",
    "rsp": "breathing rate (RSP_Rate)",
    "temp": "skin temperature (TEMP_*)",
}
QUALITY_REASONS = {  # quality state -> why the window's values were withheld
    "insufficient": "too little valid data in the window",
    "missing": "no data from the sensor",
    "out_of_range": "out of range (a sample off the skin, a glitch)",
    "jump": "jumps faster than the body can (electrode movement)",
    "flat": "flat line (lost contact or saturated)",
    "artifacts": "too many corrected beats",
    "noisy": "the pulse wave does not look like a pulse (poor contact or movement)",
    "irregular": "irregular rhythm (e.g. frequent premature beats)",
    "disagree": "the breathing estimates disagree",
    "off_skin": "sensor not on the skin",
}


def _flatten(value, prefix: str = "") -> dict:
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            out.update(_flatten(v, f"{prefix}{k}."))
        return out
    return {prefix[:-1]: value}


def config_changes(config: dict) -> dict:
    """``{"section.key": value}`` of every value of ``config`` (a summary's ``config``) that
    differs from this anxmon's defaults.

    >>> config_changes({"policy": {"threshold": 1.5}, "core": {}})
    {'policy.threshold': 1.5}
    """
    defaults = _flatten(json.loads(json.dumps(dataclasses.asdict(Config()))))
    return {k: v for k, v in sorted(_flatten(json.loads(json.dumps(config))).items())
            if k not in defaults or defaults[k] != v}


def _run_config(summary: dict) -> tuple[dict, bool]:
    """The analysis's configuration (a summary's ``config``) and whether it was recorded; this
    anxmon's defaults when it was not (an export of a live recording)."""
    import dataclasses

    recorded = isinstance(summary.get("config"), dict)
    defaults = json.loads(json.dumps(dataclasses.asdict(Config())))
    if not recorded:
        return defaults, False
    merged = {section: {**values, **(summary["config"].get(section) or {})} for section, values in defaults.items()}
    return merged, True


def quality_counts_of(quality: pd.Series) -> dict[str, dict[str, int]]:
    """``monitor.analyze.quality_counts`` from ``indicators.csv``'s ``quality`` texts (``eda=ok;hrv=irregular``)."""
    counts: dict[str, dict[str, int]] = {}
    for text in quality.dropna().astype(str):
        for item in text.split(";"):
            key, _, state = item.partition("=")
            if key and state:
                per = counts.setdefault(key, {})
                per[state] = per.get(state, 0) + 1
    return {key: dict(sorted(per.items())) for key, per in sorted(counts.items())}


def percent(n: int, total: int) -> str:
    """``n`` of ``total`` in whole percent, never rounded to 0 or 100 when it is neither.

    >>> percent(1, 714), percent(713, 714), percent(54, 714), percent(0, 714)
    ('<1', '>99', '8', '0')
    """
    share = 100 * n / total
    return "<1" if 0 < share < 0.5 else ">99" if 99.5 <= share < 100 else f"{share:.0f}"


def quality_rows(counts: dict[str, dict[str, int]]) -> list[list[str]]:
    """One row per quality key: what it covers, ticks, % usable, % withheld and why (largest first)."""
    rows = []
    for key, per in counts.items():
        total = sum(per.values())
        withheld = {state: n for state, n in per.items() if state != "ok"}
        why = ", ".join(f"{QUALITY_REASONS.get(state, state)} ({state}) {percent(n, total)} %"
                        for state, n in sorted(withheld.items(), key=lambda item: (-item[1], item[0])))
        rows.append([QUALITY_SIGNALS.get(key, key), str(total), percent(per.get("ok", 0), total),
                     percent(sum(withheld.values()), total), why or "-"])
    return rows


def _seconds(s: float) -> str:
    return duration_text(float(s))


def how_to_read_html(summary: dict, quality: dict[str, dict[str, int]], threshold_line: float | None = None) -> str:
    """The "How to read this" block: the score's scale, the gates and the check-in rule with this
    run's configuration, this run's tick states, and a per-signal quality table."""
    config, recorded = _run_config(summary)
    sc, pol = config["score"], config["policy"]
    threshold = summary.get("threshold_final") if _is_number(summary.get("threshold_final")) else pol["threshold"]
    rearm = (0.6 * pol["threshold"] if pol.get("rearm_below") is None else pol["rearm_below"]) + threshold - pol["threshold"]
    used = summary.get("indicators_used")  # (an export's summary has none: every weight is shown)
    weights = ", ".join(f"{name} {w:g}" for name, w in sorted(sc["weights"].items())
                        if w > 0 and (not used or name in used))
    quiet = pol.get("quiet_hours")
    quiet_text = (f"quiet hours {quiet[0]}-{quiet[1]} ({pol.get('timezone', 'UTC')})" if quiet
                  else "no quiet hours")
    states = summary.get("tick_states") or {}
    total = sum(states.values()) if states else 0
    state_text = ", ".join(f"{state} {n} ({percent(n, total)} %)" for state, n in sorted(states.items())) \
        if total else "not recorded"
    no_motion_gate = ("" if motion_gate_of(summary) != "none" else
                      " <strong>This recording has no motion signal (accelerometer or step cadence), so nothing "
                      "was withheld for movement: a score during exercise counts like one at rest.</strong>")
    share = summary.get("motion_signal_share")
    if no_motion_gate == "" and _is_number(share) and share < 0.9:
        no_motion_gate = (f" <strong>The motion signal covers only {100 * share:.0f} % of the ticks: "
                          "without it a tick is withheld as motion_unknown for up to an hour, and after that a "
                          "score during exercise counts like one at rest.</strong>")
    line = ""
    if threshold_line is not None and threshold_line != threshold:
        line = (f"<li><strong>The dashed line of the score panel is at {threshold_line:g}</strong>: the level of "
                f"&quot;time stressed&quot; asked for with <code>--threshold</code>. Check-ins were decided at "
                f"{threshold:g}, so a score above the line but below {threshold:g} never triggers one.</li>")
    source = ("this run's configuration" if recorded else
              "this anxmon's default configuration (the folder does not record the one it was made with)")
    table = _table(["signal", "ticks", "usable (%)", "withheld (%)", "why withheld"], quality_rows(quality),
                   'id="quality"') if quality else "<p>No quality recorded.</p>"
    return f"""<h2>How to read this</h2>
<ul class="small" id="how-to-read">
<li><strong>Stress score</strong> (0 to {sc['z_cap']:g}): for each indicator in the score, how far this tick's
value lies from the wearer's own baseline, in baseline spreads (standard deviations, each at least a floor),
counted only in the stress direction (heart rate, skin conductance level, SCR rate, breathing rate and
restlessness up; RMSSD and skin temperature down) and capped at {sc['z_cap']:g}; the score is their weighted
mean (weights{' of the indicators in this run' if used else ''}: {html.escape(weights)}). 0: at or on the calm side of the baseline. It describes this person
against themselves; it is not comparable between people and it is not a diagnosis.</li>
<li><strong>Withheld ticks</strong> have no score; indicators.csv's <code>gate</code> says why.
<em>warmup</em>: an indicator counts only after {_seconds(sc['warmup_s'])} of still, calm data taught its
baseline; <em>motion</em>: the accelerometer (or the device's step cadence) shows movement, and for
{_seconds(sc['motion_holdoff_s'])} after it, {sc['recovery_ratio']:g} s longer per second of movement (at most
{_seconds(sc['max_holdoff_s'])}), since heart rate and sweating follow exercise; <em>motion_unknown</em>: the
motion signal the wearer had is missing from the tick; <em>poor_quality</em>: no indicator of the score had a
usable window (table below); <em>scored</em>: a score. This recording: {html.escape(state_text)}.{no_motion_gate}</li>
<li><strong>Check-ins</strong>: one is triggered when the score stays at or above the wearer's threshold
({threshold:g}) for {_seconds(pol['sustain_s'])} on consecutive scored ticks (ticks more than
{_seconds(pol['max_tick_gap_s'])} apart break the run); after a trigger the score must fall below
{rearm:g} before the next. A trigger is sent unless it comes within {_seconds(pol['cooldown_s'])} of the last
one sent (cooldown), the local day already had {pol['daily_cap']} (daily cap) or it falls in
{html.escape(quiet_text)}; those are kept as suppressed. A score above the threshold for less than
{_seconds(pol['sustain_s'])} gives no check-in.</li>
{line}
<li>These values are from {source}.</li>
</ul>
<h3>Signal quality</h3>
<p class="small">Per tick, each signal's last window is usable or its values are withheld (why: the
<code>quality</code> column of indicators.csv).</p>
{table}
"""


def motion_gate_of(summary: dict) -> str | None:
    """``summary["motion_gate"]``, else from its signals (``accelerometer``, ``steps``, ``none``);
    None when the summary names no signals (an export without raw batches)."""
    if summary.get("motion_gate") in MOTION_GATES:
        return summary["motion_gate"]
    signals = summary.get("signals")
    from monitor.analyze import motion_gate_for

    return motion_gate_for(signals) if isinstance(signals, list) and signals else None


MOTION_GATES = ("accelerometer", "steps", "none")


def labels_html(summary: dict) -> str:
    """The "Against the labels" table of an analysis with labels (empty without)."""
    labels = summary.get("labels")
    if not isinstance(labels, dict):
        return ""
    rows = []
    for key, what, digits in LABEL_METRICS:
        if key in labels:
            v = labels[key]
            rows.append([what, "n/a" if v is None else (f"{v:.{digits}f}" if _is_number(v) else str(v)), key])
    periods = labelled_stress(summary)
    return ("<h2>Against the labels</h2>"
            f'<p class="small">Shaded orange on the plot: the {len(periods)} labelled stress period(s) of the '
            "recording. They describe this one recording; they are not a validation.</p>"
            + _table(["measure", "value", "key in summary.json"], rows, 'id="labels"'))


def run_html(summary: dict) -> str:
    """What made this analysis: anxmon's version and code, the input files, the configuration
    values that differ from the defaults (the command line is in summary.json)."""
    prov = summary.get("provenance") if isinstance(summary.get("provenance"), dict) else {}
    changes = config_changes(summary["config"]) if isinstance(summary.get("config"), dict) else None
    if changes is None:
        config_text = "not recorded"
    elif not changes:
        config_text = "default configuration"
    else:
        config_text = "; ".join(f"{k} = {f'{v:g}' if _is_number(v) else json.dumps(v)}" for k, v in changes.items())
    code = prov.get("code") or {}
    rows = [["anxmon version", str(prov.get("anxmon_version", summary.get("anxmon_version", "n/a")))],
            ["code", f"git {code.get('git_describe') or 'n/a'}; sources sha256 {code.get('sources_sha256', 'n/a')}"],
            ["configuration (differences from the defaults)", config_text]]
    for item in prov.get("inputs") or []:
        rows.append([f"input {Path(str(item.get('path', ''))).name}", f"{item.get('bytes')} bytes, sha256 {item.get('sha256')}"])
    for key, what in (("labels_file", "labels"), ("markers_file", "markers")):
        if isinstance(prov.get(key), dict):
            rows.append([f"{what} {Path(str(prov[key].get('path', ''))).name}", f"sha256 {prov[key].get('sha256')}"])
    libraries = prov.get("libraries") or {}
    if libraries:
        rows.append(["libraries", ", ".join(f"{k} {v}" for k, v in libraries.items())])
    return "<h2>This run</h2>" + _table(["", ""], rows, 'id="run"', align_numbers=False)


CSS = """body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;color:#222;padding:0 1em}
table{border-collapse:collapse;margin:0.5em 0 1em}th,td{text-align:left;padding:2px 10px;border-bottom:1px solid #eee;font-size:14px}
td.num{text-align:right;font-variant-numeric:tabular-nums}img{max-width:100%}
.note{background:#f6f6f0;padding:8px 12px;border-left:4px solid #cc9}.small{font-size:13px;color:#555}"""


# ------------------------------------------------------------------------------ analyze folders


@dataclass
class AnalysisFolder:
    """What ``anxmon report`` reads from an analyze output folder."""

    path: Path
    ticks: pd.DataFrame  # indicators.csv
    checkins: list[dict]  # trigger decisions (lines of checkins.jsonl with "sent")
    answers: list[dict] = field(default_factory=list)
    markers: list[Marker] = field(default_factory=list)
    summary: dict = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)  # what reading left out (a cut last row)

    @property
    def t(self) -> np.ndarray:
        return self.ticks["t"].to_numpy(dtype=float)

    @property
    def score(self) -> np.ndarray:
        return pd.to_numeric(self.ticks["stress_score"], errors="coerce").to_numpy(dtype=float)

    @property
    def tick_s(self) -> float:
        t = self.t
        return float(np.median(np.diff(t))) if len(t) > 1 else 5.0


def _jsonl(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    out = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if line.strip():
            try:
                value = json.loads(line)
            except json.JSONDecodeError as exc:
                raise InputFormatError(f"{path}, line {n}: not valid JSON ({exc.msg})") from None
            if not isinstance(value, dict):
                raise InputFormatError(f"{path}, line {n}: expected a JSON object")
            out.append(value)
    return out


ANALYSIS_FILES = ("indicators.csv", "checkins.jsonl", "summary.json", "markers.csv", "report.html")  # analyze writes


def is_analysis_folder(path: Path) -> bool:
    return path.is_dir() and (path / "indicators.csv").is_file()


def check_output_folder(path: Path, names: tuple[str, ...]) -> None:
    """Refuse to write the files ``names`` of an analysis into a folder holding some of them that
    no earlier analysis wrote (no ``indicators.csv``): they are the user's own (``--out .``).

    >>> check_output_folder(Path("docs"), ANALYSIS_FILES)  # no file of those names: fine
    """
    path = Path(path)
    if not path.is_dir() or is_analysis_folder(path):
        return
    clash = sorted(name for name in names if (path / name).exists())
    if clash:
        raise AnxmonError(f"{path} holds {', '.join(clash)} of no earlier analysis (it has no indicators.csv): "
                          f"writing an analysis there would replace them; give another folder, e.g. "
                          f"{path / 'analysis'}")


def _is_number(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _json_object(path: Path) -> dict:
    try:
        value = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputFormatError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(value, dict):
        raise InputFormatError(f"{path}: expected a JSON object as anxmon analyze writes")
    return value


def _whole_rows(csv_path: Path, notes: list[str]) -> str:
    """The text of ``csv_path`` without a cut last row (the readers' rule,
    ``monitor.readers.common.without_cut_last_line``: no line end after it, or not as many fields
    as the header; a warning and a note). A row short of fields before it is an error naming its
    line (pandas would fill it with empty values)."""
    import csv

    from monitor.readers.common import decode, without_cut_last_line

    text = decode(csv_path.read_bytes())
    header = next(csv.reader(io.StringIO(text)), [])
    text = without_cut_last_line(text, str(csv_path), notes, lambda row: len(next(csv.reader([row]))) == len(header))
    rows = csv.reader(io.StringIO(text))
    for row in rows:
        if row and len(row) < len(header):
            raise InputFormatError(f"{csv_path}, line {rows.line_num}: {len(row)} of the header's {len(header)} "
                                   "fields (a row cut short or damaged)")
    return text


def read_analysis_folder(path: str | Path) -> AnalysisFolder:
    """Read an analyze output folder (``indicators.csv`` is required, the rest optional)."""
    path = Path(path)
    if not is_analysis_folder(path):
        raise InputFormatError(f"{path} is not an analyze output folder (no indicators.csv)")
    from monitor.readers.common import csv_frame

    notes: list[str] = []
    try:
        ticks = csv_frame(_whole_rows(path / "indicators.csv", notes))
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise InputFormatError(f"{path}/indicators.csv: {str(exc).splitlines()[0]}") from None
    if not {"t", "stress_score"} <= set(ticks.columns):
        raise InputFormatError(f"{path}/indicators.csv: expected columns t, stress_score, ... as anxmon analyze writes")
    for column in ("t", "stress_score"):
        bad = pd.to_numeric(ticks[column], errors="coerce").isna() & ticks[column].notna()
        if column == "t":
            bad |= ticks[column].isna()
        if bad.any():
            raise InputFormatError(f"{path}/indicators.csv, line {int(bad.to_numpy().argmax()) + 2}: "
                                   f"column {column!r} is not a number")
    ticks = ticks.astype({"t": float, "stress_score": float})
    ticks = ticks.sort_values("t", kind="stable").reset_index(drop=True)
    repeated = ticks["t"].duplicated(keep="first")
    if repeated.any():  # overlapping pieces concatenated: the same tick twice
        if ticks.duplicated(keep="first").sum() < repeated.sum():
            raise InputFormatError(f"{path}/indicators.csv: {int(repeated.sum())} tick(s) appear twice with "
                                   "different values (two analyses concatenated?)")
        log.warning("%s/indicators.csv: %d repeated row(s) dropped", path, int(repeated.sum()))
        ticks = ticks[~repeated].reset_index(drop=True)
    checkins = [d for d in _jsonl(path / "checkins.jsonl") if "sent" in d]
    for n, d in enumerate(checkins, start=1):
        if not (_is_number(d.get("t")) and isinstance(d["sent"], bool)):
            raise InputFormatError(f"{path}/checkins.jsonl: trigger decision {n} needs a number 't' and a "
                                   "true/false 'sent', as anxmon analyze writes")
    summary = _json_object(path / "summary.json") if (path / "summary.json").is_file() else {}
    if summary.get("threshold_final") is not None and not _is_number(summary["threshold_final"]):
        raise InputFormatError(f"{path}/summary.json: threshold_final must be a number")
    markers = read_markers(path / "markers.csv") if (path / "markers.csv").is_file() else []
    return AnalysisFolder(path, ticks, checkins, _jsonl(path / "answers.jsonl"), markers, summary, notes)


# ------------------------------------------------------------------------------ statistics


def window_stats(t: np.ndarray, score: np.ndarray, tick_s: float, threshold: float, sent_t: np.ndarray,
                 lo: float, hi: float, min_coverage: float = MIN_COVERAGE) -> dict[str, float]:
    """The three measures over ``lo <= t < hi`` (NaN where the window has too little data).

    >>> t = np.arange(0.0, 100.0, 5.0); s = np.where(t < 50, 1.0, 3.0)
    >>> window_stats(t, s, 5.0, 2.0, np.array([60.0]), 50.0, 100.0)
    {'mean_score': 3.0, 'share_above': 1.0, 'checkins_per_h': 72.0}
    """
    inside = (t >= lo) & (t < hi)
    length = hi - lo
    scored = inside & np.isfinite(score)
    out = {"mean_score": math.nan, "share_above": math.nan, "checkins_per_h": math.nan}
    if scored.sum() * tick_s >= min_coverage * length:
        s = score[scored]
        out["mean_score"] = float(s.mean())
        out["share_above"] = float(np.mean(s >= threshold))
    observed_h = inside.sum() * tick_s / 3600.0
    if inside.sum() * tick_s >= min_coverage * length:
        out["checkins_per_h"] = float(np.sum((sent_t >= lo) & (sent_t < hi)) / observed_h)
    return out


@dataclass
class Comparison:
    """Before/after of one measure for one marker kind (a row of the report's table)."""

    kind: str
    measure: str
    before: np.ndarray  # per marker with both windows usable
    after: np.ndarray
    ci: tuple[float, float] | None  # 95% bootstrap interval of the mean difference (None if n < 2)
    before_ci: tuple[float, float] | None
    after_ci: tuple[float, float] | None
    markers_total: int
    overlapping: int  # usable markers whose windows overlap another marker's windows of this kind

    @property
    def n(self) -> int:
        return len(self.before)

    @property
    def difference(self) -> float:
        return float(np.mean(self.after - self.before)) if self.n else math.nan


def bootstrap_means(columns: list[np.ndarray], n_boot: int, rng: np.random.Generator) -> list[tuple[float, float] | None]:
    """95% percentile intervals of the mean of each column, resampling rows (markers) together.

    >>> lo, hi = bootstrap_means([np.arange(10.0)], 2000, np.random.default_rng(0))[0]
    >>> round(lo, 1), round(hi, 1)
    (2.7, 6.3)
    """
    n = len(columns[0])
    if n < 2 or n_boot < 1:
        return [None] * len(columns)
    idx = rng.integers(0, n, size=(n_boot, n))
    return [tuple(float(q) for q in np.percentile(c[idx].mean(axis=1), [2.5, 97.5])) for c in columns]


def before_after(folder: AnalysisFolder, markers: list[Marker], before_s: float, after_s: float,
                 threshold: float, n_boot: int = 2000, seed: int = 0,
                 min_coverage: float = MIN_COVERAGE) -> list[Comparison]:
    """One ``Comparison`` per (marker kind, measure); see the module docstring for the method."""
    t, score, tick_s = folder.t, folder.score, folder.tick_s
    sent_t = np.array([d["t"] for d in folder.checkins if d.get("sent")], dtype=float)
    rng = np.random.default_rng(seed)
    out = []
    for kind in sorted({m.kind for m in markers}):
        times = np.array(sorted(m.t_s for m in markers if m.kind == kind))
        stats = [(window_stats(t, score, tick_s, threshold, sent_t, m - before_s, m, min_coverage),
                  window_stats(t, score, tick_s, threshold, sent_t, m, m + after_s, min_coverage)) for m in times]
        gaps = np.diff(times)
        close = np.zeros(len(times), bool)  # windows reach into a neighbour's windows
        close[1:] |= gaps < before_s + after_s
        close[:-1] |= gaps < before_s + after_s
        for key, _, _ in MEASURES:
            b = np.array([s[0][key] for s in stats])
            a = np.array([s[1][key] for s in stats])
            ok = np.isfinite(a) & np.isfinite(b)
            b, a = b[ok], a[ok]
            ci, b_ci, a_ci = bootstrap_means([a - b, b, a], n_boot, rng)
            out.append(Comparison(kind, key, b, a, ci, b_ci, a_ci, len(times), int(np.sum(close[ok]))))
    return out


def default_window_s(markers: list[Marker], start_s: float, end_s: float) -> float:
    """24 h, shortened to half the median time between consecutive markers and to half the recording.

    Short lab sessions (markers minutes apart) so get windows of minutes, days-long recordings
    with markers days apart windows of 24 h.

    >>> default_window_s([Marker(1000.0), Marker(1300.0), Marker(1500.0)], 0.0, 4000.0)
    125.0
    """
    w = DEFAULT_WINDOW_S
    times = np.unique([m.t_s for m in markers])
    if len(times) >= 2:
        w = min(w, float(np.median(np.diff(times))) / 2.0)
    w = min(w, (end_s - start_s) / 2.0)
    return float(max(1.0, math.floor(w)))


def daily_summary(folder: AnalysisFolder, threshold: float, tz: tzinfo | None = None) -> list[dict]:
    """One row per local day: hours of data, hours scored, time stressed, check-ins, answers.

    "Time stressed" is the time whose score is at or above ``threshold``. ``tz`` None is this
    computer's local time zone.
    """
    t, score, tick_s = folder.t, folder.score, folder.tick_s

    def day(ts: float) -> str:
        return datetime.fromtimestamp(ts, tz).strftime("%Y-%m-%d")

    rows: dict[str, dict] = {}

    def row(d: str) -> dict:
        return rows.setdefault(d, {"day": d, "hours_data": 0.0, "hours_scored": 0.0, "hours_stressed": 0.0,
                                   "mean_score": math.nan, "checkins_sent": 0, "checkins_suppressed": 0,
                                   "answers": 0, "mean_rating": math.nan, "_scores": [], "_ratings": []})

    days = [day(x) for x in t]
    for d, s in zip(days, score):
        r = row(d)
        r["hours_data"] += tick_s / 3600.0
        if math.isfinite(s):
            r["hours_scored"] += tick_s / 3600.0
            r["hours_stressed"] += tick_s / 3600.0 if s >= threshold else 0.0
            r["_scores"].append(s)
    for c in folder.checkins:
        r = row(day(float(c["t"])))
        r["checkins_sent" if c.get("sent") else "checkins_suppressed"] += 1
    for a in folder.answers:
        if a.get("t") is None:
            continue
        r = row(day(float(a["t"])))
        r["answers"] += 1
        if isinstance(a.get("rating"), int):
            r["_ratings"].append(a["rating"])
    if rows:  # days without any data between the first and the last day get an empty row
        first, last = (datetime.strptime(d, "%Y-%m-%d") for d in (min(rows), max(rows)))
        for k in range((last - first).days + 1):
            row((first + timedelta(days=k)).strftime("%Y-%m-%d"))
    out = []
    for d in sorted(rows):
        r = rows[d]
        if r["_scores"]:
            r["mean_score"] = float(np.mean(r["_scores"]))
        if r["_ratings"]:
            r["mean_rating"] = float(np.mean(r["_ratings"]))
        out.append({k: v for k, v in r.items() if not k.startswith("_")})
    return out


# ------------------------------------------------------------------------------ the page


def _fmt(x: float, digits: int = 2) -> str:
    return "n/a" if x is None or not math.isfinite(x) else f"{x:.{digits}f}"


def duration_text(seconds: float) -> str:
    """A duration in words (the pages' and ``anxmon report``'s).

    >>> duration_text(153), duration_text(7200), duration_text(86400 * 2), duration_text(0.5)
    ('2 min 33 s', '2 h', '48 h', '0.5 s')
    """
    s = int(round(seconds))
    if s < 60:
        return f"{seconds:.3g} s"
    if s < 3600:
        return f"{s // 60} min" + (f" {s % 60} s" if s % 60 else "")
    return f"{s / 3600:g} h" if s % 360 == 0 else f"{s // 3600} h {(s % 3600) // 60} min"


def _hm(hours: float) -> str:
    minutes = int(round(hours * 60))
    return f"{minutes // 60}:{minutes % 60:02d}"


def before_after_png(comparisons: list[Comparison], max_kinds: int = 8) -> str:
    """One PNG (base64): per marker kind and measure, each marker's before -> after (grey) and the
    means with their 95% intervals (black)."""
    plt = _pyplot()
    kinds = sorted({c.kind for c in comparisons})[:max_kinds]
    fig, axes = plt.subplots(len(kinds), len(MEASURES), figsize=(11, 2.4 * len(kinds) + 0.4), squeeze=False,
                             layout="constrained")
    for i, kind in enumerate(kinds):
        for j, (key, name, _) in enumerate(MEASURES):
            ax = axes[i][j]
            c = next(c for c in comparisons if c.kind == kind and c.measure == key)
            if c.n:
                for b, a in zip(c.before, c.after):
                    ax.plot([0, 1], [b, a], color="#bbb", lw=0.8, marker="o", ms=3)
                for xpos, values, ci in ((0, c.before, c.before_ci), (1, c.after, c.after_ci)):
                    mean = float(np.mean(values))
                    # (with few resamples a percentile interval need not contain the mean)
                    err = None if ci is None else [[max(0.0, mean - ci[0])], [max(0.0, ci[1] - mean)]]
                    ax.errorbar([xpos], [mean], yerr=err, color="#111", marker="s", ms=6, capsize=4, lw=1.5)
            else:
                ax.text(0.5, 0.5, "no usable windows", ha="center", va="center", transform=ax.transAxes, fontsize=8)
            ax.set_xticks([0, 1], ["before", "after"])
            ax.set_xlim(-0.4, 1.4)
            ax.set_title(f"{kind}: {name} (n={c.n})", fontsize=8)
            ax.tick_params(labelsize=7)
    png = _png(fig)
    plt.close(fig)
    return png


def _table(header: list[str], rows: list[list[str]], attrs: str = "", row_attrs: list[str] | None = None,
           align_numbers: bool = True) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join(
        f"<tr{(' ' + row_attrs[i]) if row_attrs else ''}>" + "".join(
            f'<td class="num">{html.escape(c)}</td>' if align_numbers and _numeric(c) else f"<td>{html.escape(c)}</td>"
            for c in r
        ) + "</tr>"
        for i, r in enumerate(rows)
    )
    return f"<table{(' ' + attrs) if attrs else ''}><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _numeric(text: str) -> bool:
    try:
        float(text.replace(":", ""))
    except ValueError:
        return False
    return True


def write_report(path: str | Path, folder: AnalysisFolder, markers: list[Marker] | None = None,
                 before_s: float | None = None, after_s: float | None = None, n_boot: int = 2000, seed: int = 0,
                 threshold: float | None = None, tz: tzinfo | None = None) -> dict:
    """Write the ``anxmon report`` page; returns what it computed (windows, comparisons, days).

    ``markers`` default to the folder's; ``before_s``/``after_s`` default to ``default_window_s``
    (each one given alone is used for both); ``threshold`` to the folder's final threshold; ``tz``
    (days and clock times) to the zone of the analysis's check-in policy (``analysis_zone``: the
    days of its daily cap), else this computer's.
    """
    from monitor.core.policy import PolicyConfig

    path = Path(path)
    policy_tz = analysis_zone(folder.summary)
    tz = policy_tz if tz is None else tz
    markers = folder.markers if markers is None else markers
    t, score = folder.t, folder.score
    if not len(t):
        raise InputFormatError(f"{folder.path}/indicators.csv has no ticks: nothing to report")
    checkin_threshold = folder.summary.get("threshold_final") or PolicyConfig().threshold
    if threshold is None:
        threshold = checkin_threshold
    adaptive = before_s is None and after_s is None
    s = folder.summary  # the recording's span when known (its first ticks come a window after its start)
    first = s["start_s"] if _is_number(s.get("start_s")) else float(t[0])
    last = first + s["duration_s"] if _is_number(s.get("duration_s")) else float(t[-1])
    inside = [m for m in markers if min(first, t[0]) <= m.t_s <= max(last, t[-1])]
    if len(inside) < len(markers):
        log.warning("%d of %d markers lie outside the data (%s to %s): no window around them holds data",
                    len(markers) - len(inside), len(markers), utc_text(first), utc_text(last))
    w = default_window_s(inside, float(t[0]), float(t[-1]))
    before_s = float(before_s if before_s is not None else (after_s if after_s is not None else w))
    after_s = float(after_s if after_s is not None else before_s)
    if not (before_s > 0 and after_s > 0):
        raise AnxmonError(f"before/after windows must be longer than 0 s, got {before_s:g} s and {after_s:g} s")
    comparisons = before_after(folder, markers, before_s, after_s, threshold, n_boot, seed)
    days = daily_summary(folder, threshold, tz)

    from monitor.analyze import BASELINE_PREFIX, refusals

    def column(name: str) -> np.ndarray | None:
        if name not in folder.ticks.columns:
            return None
        return pd.to_numeric(folder.ticks[name], errors="coerce").to_numpy(dtype=float)

    # a panel for each indicator with a value (analyze writes a column for every indicator the
    # signals give, empty when every window withheld it: a heart strap's RMSSD)
    panels = [(label, column(key), column(BASELINE_PREFIX + key)) for key, label in PANELS
              if key in folder.ticks.columns and np.isfinite(column(key)).any()]
    decisions = [(float(d["t"]), bool(d["sent"])) for d in folder.checkins]
    answers = [(float(a["t"]), a.get("rating")) for a in folder.answers if a.get("t") is not None]
    stress = labelled_stress(folder.summary)
    own_line = threshold != checkin_threshold
    threshold_label = (f"time-stressed line {threshold:g} (check-ins decided at {checkin_threshold:g})" if own_line
                       else f"check-in threshold {threshold:g} (also the time-stressed line)")
    timeline = timeline_png(t, panels, score, threshold, decisions, answers, markers, stress,
                            title="Indicators (dashed: personal baseline) and stress score over time (green: check-in "
                                  "sent; grey: suppressed; triangles: answers with their rating; dotted: markers"
                                  + ("; orange: labelled stress" if stress else "") + ")", tz=tz,
                            threshold_label=threshold_label)
    s = folder.summary
    scored = np.isfinite(score)
    # what the recording's reader noted (analyze's summary), then what reading the folder left out
    reading = [n for n in s.get("reader_notes") or [] if isinstance(n, str)] + folder.notes
    _, refused = refusals(s)  # batches the wire contract refused, as analyze printed them
    # the recording's own span when analyze wrote it (the last ticks' windows reach past its end)
    start_s = float(s.get("start_s", t[0]))
    duration_s = float(s["duration_s"]) if "duration_s" in s else float(t[-1] - t[0])
    overview = [
        ["source", str(s.get("source", folder.path))],
        ["format", str(s.get("format", "n/a"))],
        ["wearer", str(s.get("wearer", "n/a"))],
        ["from", datetime.fromtimestamp(start_s, tz).astimezone(tz).strftime("%Y-%m-%d %H:%M:%S %Z")],
        ["to", datetime.fromtimestamp(start_s + duration_s, tz).astimezone(tz).strftime("%Y-%m-%d %H:%M:%S %Z")],
        ["duration", duration_text(duration_s)],
        ["signals", ", ".join(s.get("signals", [])) or "n/a"],
        ["ticks (scored)", f"{len(t)} ({int(scored.sum())})"],
        ["time-stressed line (time stressed = score at or above it)", f"{threshold:g}"],
        ["check-in threshold (at the end of the analysis)", f"{checkin_threshold:g}"],
        ["check-ins sent / suppressed", f"{sum(d['sent'] for d in folder.checkins)} / "
                                        f"{sum(not d['sent'] for d in folder.checkins)}"],
        ["answers", str(len(folder.answers))],
        ["markers", ", ".join(f"{k}: {sum(m.kind == k for m in markers)}" for k in sorted({m.kind for m in markers}))
         or "none"],
        *([["reading", "; ".join(reading)]] if reading else []),
        *([["refused batches (not analysed)", "; ".join(refused)]] if refused else []),
    ]
    day_rows = [[d["day"], _hm(d["hours_data"]), _hm(d["hours_scored"]), _hm(d["hours_stressed"]),
                 _fmt(100 * d["hours_stressed"] / d["hours_scored"] if d["hours_scored"] else math.nan, 0),
                 _fmt(d["mean_score"]), str(d["checkins_sent"]), str(d["checkins_suppressed"]), str(d["answers"]),
                 _fmt(d["mean_rating"], 1)] for d in days]
    ba_rows, ba_attrs = [], []
    for c in comparisons:
        name = next(n for k, n, _ in MEASURES if k == c.measure)
        digits = 3 if c.measure == "share_above" else 2
        ba_rows.append([c.kind, name, str(c.n), f"{c.markers_total}",
                        _fmt(float(np.mean(c.before)) if c.n else math.nan, digits),
                        _fmt(float(np.mean(c.after)) if c.n else math.nan, digits),
                        _fmt(c.difference, digits),
                        _fmt(c.ci[0] if c.ci else math.nan, digits), _fmt(c.ci[1] if c.ci else math.nan, digits),
                        str(c.overlapping)])
        ba_attrs.append(f'data-kind="{html.escape(c.kind)}" data-measure="{c.measure}"')
    window_rule = ("default: 24 h, shortened to half the median time between consecutive markers and to half the "
                   "recording" if adaptive else "as given")
    before_after_html = "<p>No markers: nothing to compare. Add some with <code>--markers FILE</code>.</p>"
    if comparisons:
        before_after_html = (
            f"""<p>Windows: {duration_text(before_s)} before each marker and {duration_text(after_s)} after it ({window_rule}).
For each marker, the mean stress score, the share of scored time at or above the threshold, and check-ins
sent per hour of data are computed in both windows; a window counts when data cover at least
{MIN_COVERAGE:.0%} of it. <em>n windows</em> is the number of markers whose before and after windows both count
(each gives one pair); <em>markers</em> is how many markers of that kind there are. The 95% interval is a
percentile bootstrap ({n_boot} resamples, seed {seed}) of the mean after-minus-before difference over
markers (markers are resampled, so each marker's pair counts once); with fewer than 2 pairs there is none.
<em>overlapping</em> counts pairs whose windows reach into a neighbouring marker's windows: they are not
independent.</p>
"""
            + _table(["marker kind", "measure", "n windows", "markers", "before (mean)", "after (mean)",
                      "difference (after - before)", "95% CI low", "95% CI high", "overlapping"],
                     ba_rows, 'id="before-after"', ba_attrs)
            + f'<img alt="before and after each marker" src="data:image/png;base64,{before_after_png(comparisons)}">'
        )
    marker_rows = [[datetime.fromtimestamp(m.t_s, tz).astimezone(tz).strftime("%Y-%m-%d %H:%M:%S %Z"), m.kind, m.label]
                   for m in markers]
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>anxmon report: {html.escape(Path(str(s.get('source', folder.path))).name)}</title>
<style>{CSS}</style></head>
<body><h1>anxmon report: {html.escape(Path(str(s.get('source', folder.path))).name)}</h1>
<p class="note"><strong>Descriptive statistics of one person, not evidence of a treatment's effect.</strong>
{html.escape(NOT_EVIDENCE)}</p>
<h2>Overview</h2>{_table(["", ""], overview, align_numbers=False)}
<h2>Over time</h2>
<img alt="indicators, stress score, check-ins, answers and markers over time" src="data:image/png;base64,{timeline}">
{how_to_read_html(s, quality_counts_of(folder.ticks["quality"]) if "quality" in folder.ticks.columns else {},
                  threshold)}
{labels_html(s)}
<h2>Day by day</h2>
<p class="small">Days in {html.escape(_tz_name(tz))}{html.escape(_other_policy_zone(tz, policy_tz))}. Time stressed: time whose stress score is at or above the
line ({threshold:g}); scored: time with a score (it is withheld during warm-up{", movement" if motion_gate_of(s) != "none" else ""}
and poor signal{"; this recording has no motion signal, so not during movement" if motion_gate_of(s) == "none" else ""}).</p>
{_table(["day", "data (h:mm)", "scored (h:mm)", "stressed (h:mm)", "stressed (% of scored)", "mean score",
         "check-ins sent", "check-ins suppressed", "answers", "mean rating"], day_rows, 'id="days"')}
<h2>Before and after markers</h2>
{before_after_html}
<h3>How to read the before/after comparison</h3>
<ul class="small">
<li>{html.escape(NOT_EVIDENCE)}</li>
<li>Other things change over the same hours: time of day, sleep, activity, caffeine, expectations. A
difference after a marker may come from any of them; there is no control condition here.</li>
<li>With few markers the intervals are wide and can miss the true value; bootstrap intervals from fewer
than about 10 markers are rough.</li>
<li>Each tick's indicators summarise the preceding minute or so (the analysis window), so with windows of a
few minutes the first minute after a marker still reflects time before it.</li>
<li>The score compares the wearer with their own baseline; it is not comparable between people.</li>
</ul>
<h2>Markers</h2>
{_table(["time", "kind", "label"], marker_rows, 'id="markers"') if marker_rows else "<p>None.</p>"}
{run_html(s)}
</body></html>
"""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(page, encoding="utf-8")
    return {"before_s": before_s, "after_s": after_s, "threshold": threshold, "comparisons": comparisons,
            "days": days}


def _tz_name(tz: tzinfo | None) -> str:
    if tz is None:
        return f"this computer's local time ({datetime.now().astimezone().strftime('%Z')})"
    return str(tz)


def _other_policy_zone(tz: tzinfo | None, policy_tz: tzinfo | None) -> str:
    """What to add to "Days in ZONE" when the analysis's daily cap counted other days."""
    if policy_tz is None or str(policy_tz) == str(tz):
        return ""
    return f"; the analysis's daily cap counted days in {policy_tz}"


def analysis_zone(summary: dict) -> tzinfo | None:
    """The time zone of an analysis's check-in policy (quiet hours, the daily cap's days): its
    summary's ``config.policy.timezone``; None when the summary records no configuration (an
    export of a live recording) or an unknown zone.

    >>> analysis_zone({"config": {"policy": {"timezone": "Europe/Berlin"}}}), analysis_zone({})
    (zoneinfo.ZoneInfo(key='Europe/Berlin'), None)
    """
    from monitor.core.policy import ControlError, check_timezone

    config = summary.get("config")
    name = (config.get("policy") or {}).get("timezone") if isinstance(config, dict) else None
    try:
        return None if name is None else check_timezone(name)
    except ControlError:
        return None


# ------------------------------------------------------------------------------ from the command line


def run_report(path: str | Path, out: str | Path, markers_path: str | None = None, before_s: float | None = None,
               after_s: float | None = None, n_boot: int = 2000, seed: int = 0, threshold: float | None = None,
               tz: tzinfo | None = None, config=None, wearer_id: str | None = None) -> dict:
    """``anxmon report``: ``path`` is an analyze output folder or a recording (analysed first, in a
    temporary folder, with ``tz`` as the check-in policy's zone too, as ``analyze --tz``). Markers
    of ``markers_path`` are added to the folder's or recording's."""
    path = Path(path)
    if threshold is not None and not 0 < threshold <= MAX_THRESHOLD:
        raise AnxmonError(f"--threshold must be a score > 0 and <= {MAX_THRESHOLD:g}, got {threshold}")
    if n_boot < 0:
        raise AnxmonError(f"--bootstrap must be >= 0 resamples, got {n_boot}")
    if seed < 0:
        raise AnxmonError(f"--seed must be >= 0, got {seed}")
    if path.is_dir() and not is_analysis_folder(path) and any((path / n).is_file() for n in ANALYSIS_FILES):
        raise InputFormatError(f"{path} looks like an analyze output folder but has no indicators.csv; "
                               "run anxmon analyze again or give the recording itself")
    if is_analysis_folder(path):
        ignored = ["--config/--set"] if config is not None and config != Config() else []
        ignored += ["--wearer"] if wearer_id is not None else []
        if ignored:
            log.warning("%s %s not change an existing analysis; give the recording to re-analyse it",
                        " and ".join(ignored), "does" if ignored == ["--wearer"] else "do")
        folder = read_analysis_folder(path)
        markers = add_markers_file(folder.markers, markers_path, folder.notes) if markers_path else folder.markers
        return write_report(out, folder, markers, before_s, after_s, n_boot, seed, threshold, tz)
    from monitor.analyze import run_analyze

    if tz is not None:  # the page's days and the daily cap's alike
        config = config or Config()
        config = dataclasses.replace(config, policy=dataclasses.replace(config.policy, timezone=str(tz)))
    with tempfile.TemporaryDirectory(prefix="anxmon-report-") as tmp:
        result, recording = run_analyze(path, tmp, config, None, wearer_id, markers_path, labels_if_clean=True)
        if not result.ticks:  # (the temporary folder's name would mean nothing to the user)
            raise InputFormatError(f"{path}: {recording.duration_s:.3g} s of data give no tick of the monitor: "
                                   "nothing to report")
        folder = read_analysis_folder(tmp)
        return write_report(out, folder, None, before_s, after_s, n_boot, seed, threshold, tz)
