"""Self-contained HTML reports with plots (matplotlib PNGs embedded as base64).

Example
-------
>>> write_analysis_report(Path("out/report.html"), result, recording)   # doctest: +SKIP
"""

from __future__ import annotations

import base64
import html
import io
import json
from pathlib import Path

import numpy as np

PANELS = [  # (indicator, label) shown over time, when present
    ("HR_Mean", "Heart rate (bpm)"),
    ("HRV_RMSSD", "RMSSD (ms)"),
    ("EDA_Tonic_Mean", "Skin conductance level (µS)"),
    ("SCR_Rate", "SCRs per minute"),
    ("TEMP_Mean", "Skin temperature (°C)"),
    ("ACC_Activity", "Movement (g)"),
]


def _png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    return base64.b64encode(buf.getvalue()).decode()


def analysis_figure(result, recording) -> str:
    """One PNG (base64): indicators, score with threshold and check-ins, labels shaded."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ticks = result.ticks
    t0 = recording.start_s
    t_min = (np.array([tk.t for tk in ticks]) - t0) / 60.0
    panels = [(k, label) for k, label in PANELS if any(k in tk.indicators.values for tk in ticks)]
    fig, axes = plt.subplots(len(panels) + 1, 1, figsize=(11, 1.8 * (len(panels) + 1)), sharex=True)
    axes = np.atleast_1d(axes)
    stress = []
    if recording.labels is not None:
        from monitor.analyze import stress_periods

        stress = stress_periods(*recording.labels, min_s=1.0)
    for ax, (key, label) in zip(axes, panels):
        y = np.array([tk.indicators.values.get(key, np.nan) for tk in ticks])
        ax.plot(t_min, y, lw=1.0, color="#345")
        baseline = np.array([tk.score.deviations.get(key, (np.nan, np.nan))[1] for tk in ticks])
        if np.isfinite(baseline).any():
            ax.plot(t_min, baseline, lw=1.0, ls="--", color="#999", label="personal baseline")
            ax.legend(fontsize=7, loc="upper right")
        ax.set_ylabel(label, fontsize=8)
    ax = axes[-1]
    score = np.array([np.nan if tk.score.value is None else tk.score.value for tk in ticks])
    ax.plot(t_min, score, lw=1.0, color="#a33", label="stress score")
    threshold = result.summary.get("threshold_final")
    if threshold is not None:
        ax.axhline(threshold, ls="--", lw=0.8, color="#a33", label="threshold")
    for tk in ticks:
        for d in tk.decisions:
            if getattr(d, "sent", None) is not None:
                ax.axvline((d.t_s - t0) / 60.0, color="#2a7" if d.sent else "#bbb", lw=1.2)
    ax.set_ylabel("score", fontsize=8)
    ax.set_xlabel("minutes since start")
    for a in axes:
        for onset, end in stress:
            a.axvspan((onset - t0) / 60, (end - t0) / 60, color="#fc9", alpha=0.35, lw=0)
        for mt, _ in recording.markers:
            a.axvline((mt - t0) / 60.0, color="#88f", lw=0.6, ls=":")
    ax.legend(fontsize=7, loc="upper right")
    fig.suptitle("Indicators against the personal baseline (dashed), and the stress score "
                 "(orange: labelled stress; green: check-in sent; grey: suppressed; dotted: markers)", fontsize=9)
    png = _png(fig)
    plt.close(fig)
    return png


def write_analysis_report(path: Path, result, recording) -> None:
    summary = result.summary
    rows = "".join(
        f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(json.dumps(v) if not isinstance(v, str) else v)}</td></tr>"
        for k, v in summary.items() if k != "labels"
    )
    label_rows = ""
    if "labels" in summary:
        label_rows = "<h2>Against the labels</h2><table>" + "".join(
            f"<tr><th>{html.escape(k)}</th><td>{'' if v is None else (round(v, 3) if isinstance(v, float) else v)}</td></tr>"
            for k, v in summary["labels"].items()
        ) + "</table>"
    png = analysis_figure(result, recording) if result.ticks else ""
    img = f'<img alt="indicators and score over time" src="data:image/png;base64,{png}">' if png else "<p>No ticks.</p>"
    path.write_text(f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>anxmon analysis</title>
<style>body{{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;color:#222}}
table{{border-collapse:collapse}}th,td{{text-align:left;padding:2px 10px;border-bottom:1px solid #eee;font-size:14px}}
img{{max-width:100%}}.note{{background:#f6f6f0;padding:8px 12px;border-left:4px solid #cc9}}</style></head>
<body><h1>anxmon analysis: {html.escape(Path(recording.source).name)}</h1>
<p class="note">These are descriptive signals of one person's body, computed against their own
baseline. anxmon is not a medical device: it does not diagnose anything and gives no medical advice.</p>
{img}
{label_rows}
<h2>Summary</h2><table>{rows}</table>
</body></html>
""")
