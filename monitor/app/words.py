"""Plain, kind words for the wearer: why a check-in came now, and how the body is doing.

The wearer never sees an indicator key (``HRV_RMSSD``) or a number of standard deviations:
each key the core explains with has a short phrase (``monitor.core.policy.INDICATOR_WORDS``,
one place for the wearer's words), and a key without one is left out of the sentence. anxmon is not a medical device; these words describe what the body
signals did compared with the wearer's own calm level, never what it means medically.

Example
-------
>>> why_now({"indicators": {"HR_Mean": 2.4, "EDA_Tonic_Mean": 1.3}})
'Your heart is beating faster than usual and your skin shows more sweat activity than usual.'
>>> label_text("fine")
"I'm fine"
"""

from __future__ import annotations

import re
from typing import Any, Mapping

from monitor.core.policy import GENERIC_WHY, explain

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

    The core's words (``monitor.core.policy.explain``, the same as the check-in's own sentence
    in push messages and Home Assistant): only indicators that moved in the stress direction
    and have plain words are named, at most ``max_items`` body systems, the largest first; with
    none, a generic sentence.

    >>> why_now({"indicators": {"EDA_Tonic_Mean": 4.0, "SCR_Rate": 3.8, "HR_Mean": 3.5}})
    'Your skin shows more sweat activity than usual and your heart is beating faster than usual.'
    """
    indicators = {}
    for key, z in ((why or {}).get("indicators") or {}).items():
        try:
            indicators[str(key)] = float(z)
        except (TypeError, ValueError):
            continue
    told = explain(indicators, min_sd=0.0, max_items=max_items, known_only=True)
    return told.sentence if told.indicators else GENERIC_WHY


def label_text(label: str) -> str:
    """What a check-in label says on its button."""
    return LABELS.get(label, label.replace("_", " ").capitalize())


def plain(text: str, fallback: str) -> str:
    """``text`` unless it contains an indicator key (``HRV_RMSSD``): then ``fallback``."""
    return fallback if not isinstance(text, str) or _JARGON.search(text) else text


def body_status(indicators: Mapping[str, Any] | None) -> dict:
    """A gentle one-line status of the latest indicators: ``{"level": ..., "text": ...}``.

    ``level`` is ``waiting``, ``learning``, ``moving``, ``unclear``, ``calm``, ``raised`` or
    ``high`` (the page colours it softly); ``text`` is what the wearer reads. It does not know
    how old the indicators are: the app uses ``live_status``. A withheld score whose indicators
    say a sensor was off the skin (quality ``off_skin``: the band's EDA electrodes, its
    thermometer) asks whether the wearable is on.

    >>> body_status({"score": None, "gate": "poor_quality", "quality": {"eda": "off_skin"}})["text"][:45]
    "Your wearable doesn't seem to be touching you"
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
    if gate == "motion_unknown":
        return {"level": "unclear", "text": "Your wearable's movement sensor is quiet right now, so check-ins wait."}
    if gate == "stale":
        return {"level": "waiting", "text": "Catching up with your wearable's data."}
    if gate is not None or not isinstance(score, (int, float)):
        if "off_skin" in (indicators.get("quality") or {}).values():  # the monitor's own reading (EDA, temperature)
            return {"level": "unclear", "text": OFF_SKIN_TEXT}
        return {"level": "unclear", "text": "The signal is unclear right now (is the wearable snug?)."}
    if score < 0.5 * threshold:
        return {"level": "calm", "text": "Your body signals are close to your calm level."}
    if score < threshold:
        return {"level": "raised", "text": "Your body signals are a little above your calm level."}
    return {"level": "high", "text": "Your body signals are above your calm level."}


# indicators older than this (wall seconds since they last advanced) no longer describe the body
STALE_AFTER_S = 120.0

UNREACHABLE_TEXT = "anxmon can't reach the monitor right now, so check-ins are paused until it's back."
SILENT_TEXT = ("We haven't heard from your wearable for a while. Is it on and nearby? "
               "No check-ins until it's back.")
DISCONNECTED_TEXT = "Your wearable has disconnected. Is it on and nearby? No check-ins until it's back."
NO_CONTACT_TEXT = ("Your wearable says it isn't touching your skin. Is it on snugly? "
                   "No check-ins until it can read your body again.")
OFF_SKIN_TEXT = ("Your wearable doesn't seem to be touching your skin. Is it on snugly? "
                 "No check-ins until it can read your body again.")
LOW_BATTERY_PERCENT = 15.0  # a device's battery at or below this (percent) is mentioned


def live_status(indicators: Mapping[str, Any] | None, age_s: float | None = None,
                reachable: bool = True, devices: Mapping[str, Mapping[str, Any]] | None = None) -> dict:
    """``body_status`` that never reassures about old news: when the monitor cannot be reached
    (``reachable`` False), every device that announces its availability said ``offline``, or
    the latest indicators are older than ``STALE_AFTER_S`` (``age_s``), the status says so
    plainly (levels ``offline`` and ``silent``) instead of a calm level; when the devices that
    report skin contact all say there is none, that is the reason given for silent or unclear
    data. ``devices``: device id -> its retained statuses
    (``online`` bool, ``battery`` percent, ``contact`` bool; each may be missing); a battery
    at or below ``LOW_BATTERY_PERCENT`` is added to the text (``battery_percent``).

    >>> live_status({"score": 0.1, "threshold": 2.0}, age_s=5)["level"]
    'calm'
    >>> live_status({"score": 0.1, "threshold": 2.0}, age_s=600)["level"]
    'silent'
    >>> live_status({"score": 0.1, "threshold": 2.0}, age_s=5, reachable=False)["level"]
    'offline'
    >>> live_status({"score": 0.1, "threshold": 2.0}, age_s=5, devices={"e4": {"online": True, "battery": 9.0}})["text"]
    "Your body signals are close to your calm level. Your wearable's battery is low (9%), so it may need charging soon."
    """
    if not reachable:
        return {"level": "offline", "text": UNREACHABLE_TEXT}
    known = list((devices or {}).values())
    announced = [d for d in known if d.get("online") is not None]
    in_use = [d for d in known if d.get("online") is not False]
    contact = [d["contact"] for d in in_use if d.get("contact") is not None]
    off_skin = bool(contact) and not any(contact)
    if announced and not any(d["online"] for d in announced):
        status, in_use = {"level": "silent", "text": DISCONNECTED_TEXT}, announced
    elif indicators and age_s is not None and age_s > STALE_AFTER_S:
        status = {"level": "silent", "text": NO_CONTACT_TEXT if off_skin else SILENT_TEXT}
    else:
        status = body_status(indicators)
        if off_skin and status["level"] in ("waiting", "unclear"):  # (usable data comes from elsewhere)
            status["text"] = NO_CONTACT_TEXT
    battery = [d["battery"] for d in in_use if d.get("battery") is not None]
    if battery and min(battery) <= LOW_BATTERY_PERCENT:
        percent = min(battery)
        status["text"] += f" Your wearable's battery is low ({percent:.0f}%), so it may need charging soon."
        status["battery_percent"] = percent
    return status


def answer_words(answer: Mapping[str, Any] | None, checkin: Mapping[str, Any] | None = None) -> str:
    """What the history says of a check-in's answer, in the words of the buttons.

    >>> c = {"options": {"rating": {"min": 1, "max": 5, "labels": {"2": "A little"}}}}
    >>> answer_words({"rating": 2, "labels": ["fine"]}, c)
    "You said: 2 of 5 (A little) · I'm fine."
    >>> answer_words(None)
    "No answer, and that's fine."
    """
    if not answer:
        return "No answer, and that's fine."
    rating = (((checkin or {}).get("options") or {}).get("rating") or {})
    parts = []
    if isinstance(answer.get("rating"), int):
        caption = plain((rating.get("labels") or {}).get(str(answer["rating"]), ""), "")
        parts.append(f"{answer['rating']} of {int(rating.get('max', 5))}" + (f" ({caption})" if caption else ""))
    labels = [label_text(x) for x in answer.get("labels") or [] if isinstance(x, str)]
    if labels:
        parts.append(", ".join(labels))
    return f"You said: {' · '.join(parts)}." if parts else "You answered."


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
