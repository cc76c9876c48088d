"""Topics the bridge adds to the wire contract, defined in one place until ``monitor.wire`` has them.

================================================  ========  ===================================
topic                                             retained  payload (JSON)
================================================  ========  ===================================
``anxmon/v1/{wearer}/{device}/battery``           yes       ``{"v": 1, "t": 1700000000.0, "percent": 87.0}``
``anxmon/v1/{wearer}/{device}/contact``           yes       ``{"v": 1, "t": 1700000000.0, "contact": true}``
================================================  ========  ===================================

Both are published at QoS 1, retained, and only for devices whose definition says they
report it (``battery = true``, ``sensor_contact = true``). ``t`` is unix seconds of the
reading. Data topics and ``availability`` come from ``monitor.wire``.

Example
-------
>>> battery_topic("alice", "polar-h10")
'anxmon/v1/alice/polar-h10/battery'
>>> status_payload("contact", True, 1.7e9)
b'{"v":1,"t":1700000000.0,"contact":true}'
"""

from __future__ import annotations

import json

from monitor.wire import PREFIX, VERSION, check_id

STATUS_KINDS = ("battery", "contact")


def battery_topic(wearer: str, device: str) -> str:
    return status_topic(wearer, device, "battery")


def contact_topic(wearer: str, device: str) -> str:
    return status_topic(wearer, device, "contact")


def status_topic(wearer: str, device: str, kind: str) -> str:
    if kind not in STATUS_KINDS:
        raise ValueError(f"unknown status kind {kind!r}: expected one of {', '.join(STATUS_KINDS)}")
    return f"{PREFIX}/{check_id('wearer', wearer)}/{check_id('device', device)}/{kind}"


def status_payload(kind: str, value: float | bool, t_s: float) -> bytes:
    """JSON payload of a battery (percent) or contact (bool) reading."""
    key = "percent" if kind == "battery" else "contact"
    value = float(value) if kind == "battery" else bool(value)
    return json.dumps({"v": VERSION, "t": float(t_s), key: value}, separators=(",", ":")).encode()
