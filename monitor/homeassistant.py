"""Home Assistant MQTT discovery: each wearer's stress score, heart rate, skin conductance and
last check-in appear as sensors of one Home Assistant device per wearer.

Home Assistant reads retained JSON configs on ``homeassistant/sensor/{object_id}/config``
(``<discovery_prefix>/<component>/<object_id>/config``; its MQTT discovery and MQTT sensor docs
list the fields used here). Each config names the sensor (``name``, ``unique_id``), where its
value comes from (``state_topic`` plus a ``value_template`` that reads anxmon's own JSON
payloads, so nothing is published twice), its ``unit_of_measurement``, ``device_class`` and
``state_class`` where Home Assistant has one, the ``device`` it belongs to
(``identifiers``, ``name``, ``manufacturer``, ``model``, ``sw_version``), the ``origin`` of the
message, and ``availability`` (the monitor service's retained state topic: the sensors show
"unavailable" while the service is offline). Indicator sensors also ``expire_after`` a quiet
spell (no data from the wearable). An empty retained payload on the same topic removes a
sensor: ``remove`` does that for a deleted wearer, and ``sync`` for every anxmon sensor whose
wearer is no longer known.

A template that finds no value renders ``None``, which Home Assistant's MQTT sensor shows as
"unknown" (a withheld score, an indicator without enough valid data).

Example
-------
>>> ha = HomeAssistantDiscovery(publish=lambda topic, payload, retain: None)
>>> sorted(ha.configs("alice"))[0]
'homeassistant/sensor/anxmon_alice_heart_rate/config'
>>> ha.configs("alice")["homeassistant/sensor/anxmon_alice_heart_rate/config"]["unit_of_measurement"]
'bpm'
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass
from typing import Any, Callable, Iterable

from monitor import __version__
from monitor.toml_tables import bad_value, is_integer
from monitor.wire import check_id, monitor_state_topic, wearer_topic

log = logging.getLogger("anxmon.homeassistant")

MANUFACTURER = "anxmon"
MODEL = "Wearable anxiety monitor (not a medical device)"
UNIQUE_PREFIX = "anxmon_"


@dataclass(frozen=True)
class SensorSpec:
    """One sensor of a wearer: where its state comes from and how Home Assistant shows it."""

    key: str  # part of the unique id and topic: anxmon_{wearer}_{key}
    name: str
    topic_kind: str  # the wearer topic of monitor.wire that carries the value
    value_template: str
    unit: str | None = None
    device_class: str | None = None
    state_class: str | None = None
    icon: str | None = None
    precision: int | None = None  # suggested_display_precision
    expires: bool = True  # expire_after applies (indicators arrive continuously; check-ins do not)
    attributes_template: str | None = None  # json_attributes_template (on the same topic)


def _indicator(key: str) -> str:
    # ``values`` is also a dict method in Jinja: index it. A missing key renders None -> unknown.
    return "{{ value_json['values'].get('%s') }}" % key


SENSORS: tuple[SensorSpec, ...] = (
    SensorSpec("stress_score", "Stress score", "indicators", "{{ value_json.score }}",
               state_class="measurement", icon="mdi:head-heart-outline", precision=1),
    SensorSpec("heart_rate", "Heart rate", "indicators", _indicator("HR_Mean"), unit="bpm",
               state_class="measurement", icon="mdi:heart-pulse", precision=0),
    SensorSpec("skin_conductance", "Skin conductance", "indicators", _indicator("EDA_Tonic_Mean"), unit="µS",
               state_class="measurement", icon="mdi:hand-wave-outline", precision=2),
    SensorSpec("last_checkin", "Last check-in", "checkin",
               "{{ value_json.t | timestamp_custom('%Y-%m-%dT%H:%M:%S+00:00', false) }}",
               device_class="timestamp", icon="mdi:message-question-outline", expires=False,
               attributes_template="{{ {'prompt_id': value_json.id, 'message': value_json.message, "
                                   "'why': value_json.why.sentence, 'expires_at': value_json.expires_at} | tojson }}"),
)


@dataclass(frozen=True)
class HomeAssistantConfig:
    """Section ``[homeassistant]`` of ``configs/app.toml``.

    Attributes
    ----------
    enabled : bool
        Publish discovery configs. Default False (opt in).
    discovery_prefix : str
        Home Assistant's discovery prefix. Default ``homeassistant``.
    expire_after_s : int
        Indicator sensors turn "unavailable" after this many seconds without data. Default 600.
    """

    enabled: bool = False
    discovery_prefix: str = "homeassistant"
    expire_after_s: int = 600

    def __post_init__(self) -> None:
        if not isinstance(self.enabled, bool):
            raise bad_value("homeassistant", "enabled", "true or false", self.enabled)
        if not isinstance(self.discovery_prefix, str) or not re.fullmatch(r"[A-Za-z0-9_-]+(/[A-Za-z0-9_-]+)*", self.discovery_prefix):
            raise bad_value("homeassistant", "discovery_prefix", "a plain topic prefix", self.discovery_prefix)
        if not is_integer(self.expire_after_s) or self.expire_after_s < 0:
            raise bad_value("homeassistant", "expire_after_s", "an integer >= 0 (0: never)", self.expire_after_s)


class HomeAssistantDiscovery:
    """Builds, publishes and removes the discovery configs of wearers.

    Parameters
    ----------
    publish : callable
        ``publish(topic, payload: bytes, retain: bool)``: QoS 1 on the broker Home Assistant
        reads (the app's MQTT client).
    instance : str
        The monitor service's instance id: its retained state topic is the availability.
    config : HomeAssistantConfig, optional
    public_url : str, optional
        The web app's address, shown in Home Assistant as the device's configuration URL.
    """

    def __init__(self, publish: Callable[[str, bytes, bool], Any], instance: str = "main",
                 config: HomeAssistantConfig | None = None, public_url: str | None = None):
        self.publish = publish
        self.instance = check_id("instance", instance)
        self.config = config or HomeAssistantConfig(enabled=True)
        self.public_url = public_url

    def topic(self, wearer: str, key: str) -> str:
        return f"{self.config.discovery_prefix}/sensor/{UNIQUE_PREFIX}{check_id('wearer', wearer)}_{key}/config"

    @property
    def subscription(self) -> str:
        """The topic filter that holds every sensor config (``sync`` reads the retained ones)."""
        return f"{self.config.discovery_prefix}/sensor/+/config"

    def configs(self, wearer: str) -> dict[str, dict]:
        """Discovery topic -> config (JSON object) of each sensor of ``wearer``."""
        device = {
            "identifiers": [f"{UNIQUE_PREFIX}{wearer}"],
            "name": f"anxmon {wearer}",
            "manufacturer": MANUFACTURER,
            "model": MODEL,
            "sw_version": __version__,
        }
        if self.public_url:
            device["configuration_url"] = self.public_url
        availability = [{
            "topic": monitor_state_topic(self.instance),
            "value_template": "{{ value_json.state }}",
            "payload_available": "online",
            "payload_not_available": "offline",
        }]
        out = {}
        for spec in SENSORS:
            state_topic = wearer_topic(wearer, spec.topic_kind)
            body: dict[str, Any] = {
                "name": spec.name,
                "unique_id": f"{UNIQUE_PREFIX}{wearer}_{spec.key}",
                "state_topic": state_topic,
                "value_template": spec.value_template,
                "availability": availability,
                "device": device,
                "origin": {"name": "anxmon", "sw_version": __version__},
                "qos": 1,
            }
            if spec.unit is not None:
                body["unit_of_measurement"] = spec.unit
            if spec.device_class is not None:
                body["device_class"] = spec.device_class
            if spec.state_class is not None:
                body["state_class"] = spec.state_class
            if spec.icon is not None:
                body["icon"] = spec.icon
            if spec.precision is not None:
                body["suggested_display_precision"] = spec.precision
            if spec.expires and self.config.expire_after_s:
                body["expire_after"] = self.config.expire_after_s
            if spec.attributes_template is not None:
                body["json_attributes_topic"] = state_topic
                body["json_attributes_template"] = spec.attributes_template
            out[self.topic(wearer, spec.key)] = body
        return out

    def announce(self, wearer: str) -> None:
        """Publish (retained) the configs of ``wearer``'s sensors."""
        for topic, body in self.configs(wearer).items():
            self.publish(topic, json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode(), True)
        log.info("Home Assistant: announced the sensors of %s", wearer)

    def remove(self, wearer: str) -> None:
        """Remove ``wearer``'s sensors from Home Assistant (an empty retained payload each)."""
        for spec in SENSORS:
            self.publish(self.topic(wearer, spec.key), b"", True)
        log.info("Home Assistant: removed the sensors of %s", wearer)

    @staticmethod
    def wearer_of(payload: bytes) -> str | None:
        """The wearer of an anxmon sensor config (from its device identifier), else None."""
        try:
            body = json.loads(bytes(payload).decode("utf-8"))
            ident = body["device"]["identifiers"][0]
        except (UnicodeDecodeError, ValueError, KeyError, IndexError, TypeError):
            return None
        if isinstance(ident, str) and ident.startswith(UNIQUE_PREFIX) and str(body.get("unique_id", "")).startswith(ident):
            return ident[len(UNIQUE_PREFIX):]
        return None

    def sync(self, wearers: Iterable[str], retained: Iterable[tuple[str, bytes]]) -> list[str]:
        """Announce ``wearers`` and remove the anxmon sensors of anybody else.

        ``retained`` are the (topic, payload) pairs found on ``subscription``; returns the
        wearers removed.
        """
        wanted = set(wearers)
        stale = sorted({w for _, p in retained if p and (w := self.wearer_of(p)) is not None} - wanted)
        for wearer in stale:
            self.remove(wearer)
        for wearer in sorted(wanted):
            self.announce(wearer)
        return stale
