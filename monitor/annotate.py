"""``anxmon annotate``: a live event marker ("therapy session", "medication change") for a wearer.

The marker is published at QoS 1 on ``anxmon/v1/{wearer}/{source}/marker`` (``monitor.wire.encode_marker``;
the source defaults to ``annotate``)
and the service records it in its ``markers`` table, from where ``anxmon export`` (and so the
report's before/after comparison) takes it. A wearer's own broker account may publish it; with
another wearer's account the broker acknowledges the marker and drops it, so ``annotate`` warns
(as the bridge does, ``firmware_bridge.cli.broker_user_warning``).

Example
-------
>>> annotate("mqtt://alice:pw@127.0.0.1:1883", "alice", "therapy session")   # doctest: +SKIP
Marker(t_s=1700000000.0, kind='therapy session', label='therapy session')
"""

from __future__ import annotations

import logging
import time
from typing import Callable

from monitor.markers import Marker, make_marker
from monitor.wire import MAX_MARKER_TEXT, check_id, encode_marker, marker_topic

DEFAULT_SOURCE = "annotate"

log = logging.getLogger("anxmon.annotate")


def annotate(broker: str, wearer: str, label: str, kind: str = "", t_s: float | None = None,
             source: str = DEFAULT_SOURCE, clock: Callable[[], float] = time.time,
             timeout_s: float = 10.0, unreachable_hint: str = "") -> Marker:
    """Publish one marker for ``wearer`` (at ``t_s``, unix s; default now) and wait for the
    broker's acknowledgement. Returns the marker as the service records it. ``unreachable_hint``
    is added to the error when nothing answers at the broker's address."""
    from firmware_bridge.cli import broker_user_warning
    from monitor.errors import ValueRangeError
    from monitor.mqtt_client import parse_broker_url, private_client_id
    from monitor.replay import _wait, connect

    check_id("wearer", wearer)
    check_id("source", source)
    for name, text in (("label", label), ("kind", kind)):
        if len(text) > MAX_MARKER_TEXT:
            raise ValueRangeError(f"the {name} is longer than {MAX_MARKER_TEXT} characters")
    marker = make_marker(clock() if t_s is None else t_s, label, kind)
    if warning := broker_user_warning(parse_broker_url(broker).username, wearer):
        log.warning("%s", warning)
    client = connect(broker, private_client_id(f"anxmon-annotate-{wearer}"), unreachable_hint=unreachable_hint)
    try:
        info = client.publish(marker_topic(wearer, source), encode_marker(marker.t_s, marker.label, marker.kind),
                              qos=1)
        _wait(info, timeout_s, "the marker")
    finally:
        client.disconnect()
        client.loop_stop()
    return marker


def run_annotate(args) -> int:
    """``anxmon annotate``."""
    from monitor.broker import embedded_broker_hint, resolve_broker_url
    from monitor.export import parse_time

    t_s = parse_time(args.t) if args.t is not None else None
    marker = annotate(resolve_broker_url(args.broker, args.data_dir), args.wearer, args.label, args.kind or "", t_s,
                      args.source, unreachable_hint=embedded_broker_hint(args.broker, args.data_dir))
    print(f"marker of kind {marker.kind!r} for {args.wearer} at {marker.t_s:.3f} published")
    return 0
