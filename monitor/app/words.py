"""Plain, kind words for the wearer: why a check-in came now, and how the body is doing.

The wearer never sees an indicator key (``HRV_RMSSD``) or a number of standard deviations:
each key the core explains with has a short phrase here, and an unknown key is described only
as "another body signal". anxmon is not a medical device; these words describe what the body
signals did compared with the wearer's own calm level, never what it means medically.

Example
-------
>>> why_now({"indicators": {"HR_Mean": 2.4, "EDA_Tonic_Mean": 1.3}})
'Compared with your own calm level, your heart is beating faster and your skin shows more sweat activity.'
>>> label_text("fine")
"I'm fine"
"""

from __future__ import annotations

import math
import re
from typing import Any, Mapping

# indicator key -> (stress direction, phrase when it moved that way)
_SKIN_BURSTS = "your skin shows more small bursts of sweat"
_HEART_RHYTHM = "your heart rhythm is less relaxed"
_PHRASES: dict[str, tuple[int, str]] = {
    "HR_Mean": (+1, "your heart is beating faster"),
    "HR": (+1, "your heart is beating faster"),
    "ECG_Rate_Mean": (+1, "your heart is beating faster"),
    "PPG_Rate_Mean": (+1, "your heart is beating faster"),
    "HRV_MeanNN": (-1, "your heart is beating faster"),
    "HRV_RMSSD": (-1, _HEART_RHYTHM),
    "HRV_SDNN": (-1, _HEART_RHYTHM),
    "HRV_SDSD": (-1, _HEART_RHYTHM),
    "HRV_pNN50": (-1, _HEART_RHYTHM),
    "HRV_HF": (-1, _HEART_RHYTHM),
    "EDA_Tonic_Mean": (+1, "your skin shows more sweat activity"),
    "EDA_Tonic": (+1, "your skin shows more sweat activity"),
    "EDA_Mean": (+1, "your skin shows more sweat activity"),
    "EDA_Tonic_Slope": (+1, "your skin shows more sweat activity"),
    "SCR_Rate": (+1, _SKIN_BURSTS),
    "SCR_Peaks_N": (+1, _SKIN_BURSTS),
    "SCR_Peaks_Amplitude_Mean": (+1, _SKIN_BURSTS),
    "TEMP_Mean": (-1, "your skin is a little cooler"),
    "RSP_Rate": (+1, "you are breathing faster"),
    "RSP_Rate_Mean": (+1, "you are breathing faster"),
    "ACC_Restlessness": (+1, "you seem more restless"),
}

GENERIC_WHY = "Your body signals have moved away from your own calm level for a little while."
# phrases of one body system: the sentence names each system once (its largest deviation), so
# two skin measures never crowd out the heart
_SYSTEM = {_SKIN_BURSTS: "your skin shows more sweat activity", _HEART_RHYTHM: "your heart is beating faster"}

LABELS = {
    "anxious": "Anxious",
    "stressed": "Stressed",
    "excited": "Excited",
    "exercising": "Exercising",
    "fine": "I'm fine",
}

_JARGON = re.compile(r"[A-Za-z]+_[A-Za-z0-9_]+")


def why_now(why: Mapping[str, Any] | None, max_items: int = 2) -> str:
    """One sentence on why a check-in came now, from its ``why.indicators`` (key -> deviation).

    Only indicators that moved in the stress direction are named (at most ``max_items``, the
    largest first, one per body system); with none, a generic sentence.

    >>> why_now({"indicators": {"EDA_Tonic_Mean": 4.0, "SCR_Rate": 3.8, "HR_Mean": 3.5}})
    'Compared with your own calm level, your skin shows more sweat activity and your heart is beating faster.'
    """
    indicators = (why or {}).get("indicators") or {}
    chosen: list[tuple[float, str]] = []
    for key, z in indicators.items():
        try:
            z = float(z)
        except (TypeError, ValueError):
            continue
        known = _PHRASES.get(str(key))
        if known is None or not math.isfinite(z) or z * known[0] <= 0:
            continue
        chosen.append((abs(z), known[1]))
    chosen.sort(key=lambda item: -item[0])
    phrases: list[str] = []
    systems: set[str] = set()
    for _, phrase in chosen:
        system = _SYSTEM.get(phrase, phrase)
        if system not in systems:
            systems.add(system)
            phrases.append(phrase)
    phrases = phrases[:max_items]
    if not phrases:
        return GENERIC_WHY
    text = phrases[0] if len(phrases) == 1 else ", ".join(phrases[:-1]) + " and " + phrases[-1]
    return f"Compared with your own calm level, {text}."


def label_text(label: str) -> str:
    """What a check-in label says on its button."""
    return LABELS.get(label, label.replace("_", " ").capitalize())


def plain(text: str, fallback: str) -> str:
    """``text`` unless it contains an indicator key (``HRV_RMSSD``): then ``fallback``."""
    return fallback if not isinstance(text, str) or _JARGON.search(text) else text


def body_status(indicators: Mapping[str, Any] | None) -> dict:
    """A gentle one-line status of the latest indicators: ``{"level": ..., "text": ...}``.

    ``level`` is ``waiting``, ``learning``, ``moving``, ``unclear``, ``calm``, ``raised`` or
    ``high`` (the page colours it softly); ``text`` is what the wearer reads.
    """
    if not indicators:
        return {"level": "waiting", "text": "Waiting for your wearable."}
    gate = indicators.get("gate")
    score = indicators.get("score")
    threshold = indicators.get("threshold") or 2.0
    if gate == "warmup":
        return {"level": "learning", "text": "Getting to know your calm level (the first minutes)."}
    if gate == "motion":
        return {"level": "moving", "text": "You are moving; check-ins wait until you have settled."}
    if gate == "stale":
        return {"level": "waiting", "text": "Catching up with your wearable's data."}
    if gate is not None or not isinstance(score, (int, float)):
        return {"level": "unclear", "text": "The signal is unclear right now (is the wearable snug?)."}
    if score < 0.5 * threshold:
        return {"level": "calm", "text": "Your body signals are close to your calm level."}
    if score < threshold:
        return {"level": "raised", "text": "Your body signals are a little above your calm level."}
    return {"level": "high", "text": "Your body signals are above your calm level."}


def checkin_view(checkin: Mapping[str, Any]) -> dict:
    """What the page shows of a check-in (``Prompt.to_dict()``): plain words only."""
    options = checkin.get("options") or {}
    rating = options.get("rating") or {}
    captions = rating.get("labels") or {}
    low, high = int(rating.get("min", 1)), int(rating.get("max", 5))
    return {
        "id": checkin.get("id"),
        "t": checkin.get("t"),
        "expires_at": checkin.get("expires_at"),
        "message": plain(checkin.get("message"), "How are you feeling right now?"),
        "why": why_now(checkin.get("why")),
        "question": plain(rating.get("question"), "How tense do you feel right now?"),
        "ratings": [{"value": i, "caption": plain(captions.get(str(i), ""), "")} for i in range(low, high + 1)],
        "labels": [{"value": x, "text": label_text(x)} for x in options.get("labels") or []],
    }
