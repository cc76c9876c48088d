"""Home Assistant MQTT discovery: the configs carry the fields Home Assistant documents for MQTT
sensors, their templates read anxmon's real payloads, and on a real broker they are retained
and removed when a wearer is deleted.

Where the expected fields come from: Home Assistant's "MQTT Sensor" integration page
(home-assistant.io/integrations/sensor.mqtt) lists the sensor options (``name``,
``unique_id``, ``state_topic``, ``value_template``, ``unit_of_measurement``, ``device_class``,
``state_class``, ``expire_after``, ``availability`` with ``topic`` / ``value_template`` /
``payload_available`` / ``payload_not_available``, ``device`` with ``identifiers``, ``name``,
``manufacturer``, ``model``, ``sw_version``, ``configuration_url``, ``json_attributes_topic``,
``json_attributes_template``, ``icon``, ``qos``, ``suggested_display_precision``); the "MQTT"
integration page documents discovery: the topic
``<discovery_prefix>/<component>/[<node_id>/]<object_id>/config``, the ``origin`` mapping, the
best practice ``object_id == unique_id``, and "publish an empty (retained) string payload to
the discovery topic" to remove a component. A template that renders ``None`` makes the MQTT
sensor "unknown" (``PAYLOAD_NONE``).
"""

from __future__ import annotations

import json
import logging
import time

import pytest

from monitor.homeassistant import SENSORS, HomeAssistantConfig, HomeAssistantDiscovery
from monitor.wire import encode_checkin, encode_indicators, monitor_state_topic, wearer_topic
from tests.conftest import need_broker
from tests.test_service import Probe, wait_until

SENSOR_OPTIONS = {
    "name", "unique_id", "state_topic", "value_template", "unit_of_measurement", "device_class", "state_class",
    "expire_after", "availability", "availability_mode", "availability_topic", "availability_template",
    "payload_available", "payload_not_available", "device", "origin", "json_attributes_topic",
    "json_attributes_template", "icon", "qos", "suggested_display_precision", "force_update", "enabled_by_default",
    "entity_category", "encoding", "default_entity_id", "object_id",
}
DEVICE_OPTIONS = {"identifiers", "connections", "name", "manufacturer", "model", "model_id", "sw_version",
                  "hw_version", "serial_number", "configuration_url", "suggested_area", "via_device"}
# HA sensor device classes that could apply here (none exists for heart rate or skin conductance)
DEVICE_CLASSES = {"timestamp"}


def published() -> tuple[list, HomeAssistantDiscovery]:
    out: list = []
    return out, HomeAssistantDiscovery(lambda t, p, r: out.append((t, p, r)), instance="main",
                                       public_url="https://anxmon.example")


def test_configs_have_the_documented_fields():
    out, ha = published()
    configs = ha.configs("alice")
    keys = {"stress_score", "heart_rate", "skin_conductance", "last_checkin"}
    assert set(configs) == {f"homeassistant/sensor/anxmon_alice_{k}/config" for k in keys}
    for topic, c in configs.items():
        assert set(c) <= SENSOR_OPTIONS, set(c) - SENSOR_OPTIONS
        object_id = topic.split("/")[2]
        assert c["unique_id"] == object_id  # HA's best practice: object_id = unique_id
        assert c["name"] and c["value_template"].startswith("{{")
        assert c["state_topic"] in (wearer_topic("alice", "indicators"), wearer_topic("alice", "checkin"))
        assert c["availability"] == [{"topic": monitor_state_topic("main"), "value_template": "{{ value_json.state }}",
                                      "payload_available": "online", "payload_not_available": "offline"}]
        d = c["device"]
        assert set(d) <= DEVICE_OPTIONS and isinstance(d["identifiers"], list)
        assert d["identifiers"] == ["anxmon_alice"] and d["name"] == "anxmon alice"
        assert d["manufacturer"] == "anxmon" and "not a medical device" in d["model"]
        assert d["configuration_url"] == "https://anxmon.example"
        assert c["origin"]["name"] == "anxmon"
        assert c.get("device_class") in DEVICE_CLASSES | {None}
    by_key = {topic.split("_", 2)[2].rsplit("/", 1)[0]: c for topic, c in configs.items()}
    assert by_key["heart_rate"]["unit_of_measurement"] == "bpm"
    assert by_key["skin_conductance"]["unit_of_measurement"] == "µS"
    assert "unit_of_measurement" not in by_key["stress_score"]  # a score in the wearer's own spreads
    for key in ("stress_score", "heart_rate", "skin_conductance"):
        assert by_key[key]["state_class"] == "measurement" and by_key[key]["expire_after"] == 600
    last = by_key["last_checkin"]
    assert last["device_class"] == "timestamp" and "expire_after" not in last
    assert last["json_attributes_topic"] == wearer_topic("alice", "checkin")
    # ids are unique across wearers; another wearer's configs name only that wearer
    bob = ha.configs("bob")
    assert not {c["unique_id"] for c in bob.values()} & {c["unique_id"] for c in configs.values()}
    assert "alice" not in json.dumps(bob)


def test_entity_ids_in_the_docs_are_the_ones_home_assistant_makes():
    """Without ``object_id`` / ``default_entity_id``, Home Assistant names an MQTT entity
    ``sensor.`` + slugify(device name + " " + entity name) (has_entity_name; slugify turns
    every run of other characters, "-" too, into one "_"). docs/homeassistant.md's automation
    triggered on ``sensor.anxmon_alice_last_checkin``, but "anxmon alice" + "Last check-in"
    is ``sensor.anxmon_alice_last_check_in``: the check-in never reached the phone."""
    import re
    from pathlib import Path

    _, ha = published()
    made = {"sensor." + re.sub(r"[^a-z0-9]+", "_", f"{c['device']['name']} {c['name']}".lower()).strip("_")
            for c in ha.configs("alice").values()}
    doc = (Path(__file__).parents[1] / "docs" / "homeassistant.md").read_text()
    named = set(re.findall(r"sensor\.anxmon_alice_\w+", doc))
    assert len(named) == len(SENSORS) and named == made, named ^ made


def test_the_documented_automation_asks_each_checkin_once():
    """The automation in docs/homeassistant.md fires on every state change of the last check-in
    sensor. While the monitor service is offline the sensor is "unavailable"; when it comes back,
    Home Assistant shows the last value again, with its attributes: the automation asked the old
    check-in (answered or expired) on the phone a second time. Its condition, rendered as Home
    Assistant does, now passes a new check-in only."""
    yaml = pytest.importorskip("yaml", reason="PyYAML reads the documented automation")
    jinja2 = pytest.importorskip("jinja2.sandbox", reason="jinja2 renders the templates (pip install jinja2)")
    from pathlib import Path

    doc = (Path(__file__).parents[1] / "docs" / "homeassistant.md").read_text()
    automation = yaml.safe_load(doc.split("```yaml", 1)[1].split("```", 1)[0])[0]
    template = automation["condition"][0]["value_template"]
    env = jinja2.ImmutableSandboxedEnvironment()
    checkin = {"state": "2023-11-14T22:13:20+00:00", "attributes": {"prompt_id": "alice-1700000000000"}}
    older = {"state": "2023-11-14T20:00:00+00:00", "attributes": {"prompt_id": "alice-1699992000000"}}
    unavailable = {"state": "unavailable", "attributes": {}}

    def fires(from_state, to_state) -> bool:
        rendered = env.from_string(template).render(trigger={"from_state": from_state, "to_state": to_state})
        return rendered.strip() == "True"

    assert fires({"state": "unknown", "attributes": {}}, checkin)  # the first one after Home Assistant starts
    assert fires(older, checkin) and fires(None, checkin)
    assert not fires(checkin, unavailable)  # the service goes offline ...
    assert not fires(unavailable, checkin)  # ... and back: the same check-in, not asked again


def test_the_documented_automations_answers_teach_the_default_policy():
    """The automation's two buttons send the answers its text promises: with the default
    ``[policy]``, "Tense" confirms (lowers the threshold) and "I'm fine" raises it; a label the
    check-in does not offer would be refused."""
    yaml = pytest.importorskip("yaml", reason="PyYAML reads the documented automation")
    jinja2 = pytest.importorskip("jinja2.sandbox", reason="jinja2 renders the templates (pip install jinja2)")
    from pathlib import Path

    from monitor.core.policy import CheckinPolicy, PolicyConfig
    from monitor.wire import decode_answer

    doc = (Path(__file__).parents[1] / "docs" / "homeassistant.md").read_text()
    automation = yaml.safe_load(doc.split("```yaml", 1)[1].split("```", 1)[0])[0]
    template = next(a for a in automation["action"] if a.get("service") == "mqtt.publish")["data"]["payload"]
    env = jinja2.ImmutableSandboxedEnvironment()
    for button, learned in (("ANXMON_TENSE_", "lower"), ("ANXMON_OK_", "raise")):
        policy = CheckinPolicy(PolicyConfig(sustain_s=0.0, quiet_hours=None), wearer_id="alice")
        prompt = policy.update(1.7e9, 2.5, {"HR_Mean": 3.0})[0].prompt
        payload = env.from_string(template).render(
            prompt=prompt.id, wait={"trigger": {"event": {"data": {"action": button + prompt.id}}}})
        answer = decode_answer(payload.strip(), "alice")
        assert policy.answer(1.7e9 + 60, answer.prompt_id, answer.rating, list(answer.labels)).learned == learned


def test_templates_read_anxmons_payloads():
    """Render each template as Home Assistant does (a Jinja2 sandbox with ``value_json``) on real
    ``encode_indicators`` / ``encode_checkin`` payloads."""
    jinja2 = pytest.importorskip("jinja2.sandbox", reason="jinja2 renders the templates (pip install jinja2)")
    from datetime import datetime, timezone

    env = jinja2.ImmutableSandboxedEnvironment()
    # Home Assistant's filters used by our templates
    env.filters["timestamp_custom"] = lambda t, fmt, local=True: datetime.fromtimestamp(float(t), timezone.utc).strftime(fmt)
    env.filters["tojson"] = json.dumps
    indicators = json.loads(encode_indicators(1_700_000_000.0, 2.345, None, {"HR_Mean": 71.5, "EDA_Tonic_Mean": 0.55},
                                              {"eda": "ok"}, threshold=2.0))
    withheld = json.loads(encode_indicators(1_700_000_005.0, None, "motion", {}, {"eda": "ok"}))
    checkin = json.loads(encode_checkin({"id": "alice-1700000000000", "t": 1_700_000_000.0, "message": "How are you?",
                                         "why": {"indicators": {}, "sentence": "Your heart is beating faster."},
                                         "expires_at": 1_700_000_900.0}))
    _, ha = published()
    render = lambda template, payload: env.from_string(template).render(value_json=payload)  # noqa: E731
    want = {"stress_score": ("2.345", "None"), "heart_rate": ("71.5", "None"), "skin_conductance": ("0.55", "None")}
    for spec in SENSORS:
        if spec.key in want:
            assert render(spec.value_template, indicators) == want[spec.key][0], spec.key
            assert render(spec.value_template, withheld) == want[spec.key][1], spec.key  # -> "unknown" in HA
    last = next(s for s in SENSORS if s.key == "last_checkin")
    stamp = render(last.value_template, checkin)
    assert stamp == "2023-11-14T22:13:20+00:00" and datetime.fromisoformat(stamp).timestamp() == 1_700_000_000.0
    attrs = json.loads(render(last.attributes_template, checkin))
    assert attrs == {"prompt_id": "alice-1700000000000", "message": "How are you?",
                     "why": "Your heart is beating faster.", "expires_at": 1_700_000_900.0}


def test_announce_is_retained_and_remove_publishes_empty_retained():
    out, ha = published()
    ha.announce("alice")
    assert len(out) == len(SENSORS) and all(retain for _, _, retain in out)
    assert all(json.loads(p)["unique_id"].startswith("anxmon_alice_") for _, p, _ in out)
    out.clear()
    ha.remove("alice")
    assert sorted(t for t, _, _ in out) == sorted(ha.configs("alice")) and all(p == b"" and r for _, p, r in out)
    assert HomeAssistantDiscovery.wearer_of(json.dumps(ha.configs("bob")[ha.topic("bob", "heart_rate")]).encode()) == "bob"
    assert HomeAssistantDiscovery.wearer_of(b'{"unique_id": "other_thing", "device": {"identifiers": ["x"]}}') is None


def test_config_is_checked():
    """Every mistake in [homeassistant] is a ConfigError naming the file, the table and the key."""
    from monitor.errors import ConfigError
    from monitor.toml_tables import read_table

    config = read_table(HomeAssistantConfig, {"enabled": True}, "app.toml", "homeassistant")
    assert config.enabled and config.discovery_prefix == "homeassistant"
    for bad, expected in [({"enabled": "yes"}, "'enabled' must be true or false, got 'yes'"),
                          ({"discovery_prefix": "a/#"}, "'discovery_prefix' must be a plain topic prefix, got 'a/#'"),
                          ({"discovery_prefix": 5}, "'discovery_prefix' must be a string, got 5"),
                          ({"expire_after_s": -1}, "'expire_after_s' must be an integer >= 0 (0: never), got -1"),
                          ({"expire_after_s": 60.0}, "'expire_after_s' must be an integer, got 60.0"),
                          ({"expire_after_s": False}, "'expire_after_s' must be an integer, got False"),
                          ({"colour": 1}, "unknown key(s) colour; known keys: discovery_prefix, enabled, expire_after_s")]:
        with pytest.raises(ConfigError) as info:
            read_table(HomeAssistantConfig, bad, "app.toml", "homeassistant")
        assert str(info.value) == f"app.toml: [homeassistant]: {expected}"


def test_discovery_on_a_real_broker_is_retained_and_removed_for_a_deleted_wearer(broker, tmp_path):
    """The app announces every account's sensors, retained (a late subscriber, as Home
    Assistant after a restart, gets them); started again without bob's account, it removes
    bob's sensors and keeps alice's."""
    from monitor.app import start_app
    from monitor.homeassistant import HomeAssistantConfig

    ha = HomeAssistantConfig(enabled=True)
    filt = "homeassistant/sensor/+/config"

    def retained(expected: int = 0) -> dict[str, dict]:
        probe = Probe(broker, [filt])
        time.sleep(1.0)  # the broker sends the retained messages right after the SUBACK
        wait_until(lambda: sum(1 for _, p, r in list(probe.received) if r and p) >= expected, 10)
        got = {t: json.loads(p) for t, p, r in probe.received if r and p}
        probe.close()
        return got

    app = start_app(broker.url, tmp_path, accounts={"alice": "a-pw", "bob": "b-pw"}, homeassistant=ha, recording=None)
    try:
        assert wait_until(lambda: len(retained()) == 2 * len(SENSORS), 10)
    finally:
        app.stop()
    found = retained(2 * len(SENSORS))
    assert {c["device"]["identifiers"][0] for c in found.values()} == {"anxmon_alice", "anxmon_bob"}
    assert found == {**app.homeassistant.configs("alice"), **app.homeassistant.configs("bob")}

    app = start_app(broker.url, tmp_path, accounts={"alice": "a-pw"}, homeassistant=ha, recording=None)
    try:
        assert wait_until(lambda: {c["device"]["identifiers"][0] for c in retained().values()} == {"anxmon_alice"}, 10)
    finally:
        app.stop()
    assert set(retained(len(app.homeassistant.configs("alice")))) == set(app.homeassistant.configs("alice"))


@pytest.mark.parametrize("broker", ["mosquitto"], indirect=True)  # the app's bookkeeping: one kind
def test_the_app_keeps_no_copy_of_other_integrations_configs_across_reconnects(broker, tmp_path):
    """Home Assistant users have hundreds of retained discovery configs of other integrations
    (zigbee2mqtt, ESPHome) under the same prefix; the broker resends all of them at each of the
    app's reconnects, and the app appended every one to a list it never emptied, growing with
    every reconnect. It keeps only anxmon's configs now, one per topic."""
    import paho.mqtt.client as mqtt

    from monitor.app import start_app

    probe = Probe(broker, ["homeassistant/sensor/+/config"])
    foreign = {f"homeassistant/sensor/zigbee_{i}_temperature/config": json.dumps(
        {"name": "Temperature", "unique_id": f"zigbee_{i}_temperature", "state_topic": f"zigbee2mqtt/{i}",
         "device": {"identifiers": [f"zigbee_{i}"]}}).encode() for i in range(20)}
    for topic, payload in foreign.items():
        probe.client.publish(topic, payload, qos=1, retain=True).wait_for_publish(5)
    app = start_app(broker.url, tmp_path, accounts={"alice": "a-pw"}, homeassistant=HomeAssistantConfig(enabled=True),
                    recording=None)
    alice = set(app.homeassistant.configs("alice"))
    try:
        assert wait_until(lambda: alice <= {t for t, p, _ in list(probe.received) if p}, 10)  # announced
        for _ in range(3):  # kicked off (a session taken over) and reconnected: the broker resends the retained
            kicker = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=app.relay._client._client_id.decode())
            kicker.username_pw_set("monitor", broker.users["monitor"])
            kicker.connect(broker.host, broker.port)
            kicker.disconnect()
            assert wait_until(lambda: not app.relay.connected, 10) and wait_until(lambda: app.relay.connected, 15)
        assert wait_until(lambda: set(app._ha_retained) == alice, 10), set(app._ha_retained) - alice
    finally:
        app.stop()
        for topic in foreign:
            probe.client.publish(topic, b"", qos=1, retain=True)
        probe.close()


def test_the_relay_knows_when_every_retained_message_is_in(broker):
    """The app synced Home Assistant a fixed 1 s after connecting, hoping the retained discovery
    configs had arrived by then: with many of them (hundreds from other integrations) or a slow
    broker, the sync saw only some, and a deleted wearer's sensors stayed. The relay now
    publishes a marker to a topic of its own right after subscribing; the broker queues a
    subscription's retained messages before it, so when the marker is back (``on_retained``)
    every one is in, at each connection. No subscriber of the service's topics sees the marker."""
    import collections

    import paho.mqtt.client as mqtt

    from monitor.app.relay import Relay
    from monitor.wire import CONTROL_SUBSCRIPTION, DATA_SUBSCRIPTION

    topics = [f"homeassistant/sensor/zigbee_{i}_temperature/config" for i in range(400)]
    probe = Probe(broker, [DATA_SUBSCRIPTION, CONTROL_SUBSCRIPTION])
    for topic in topics:
        probe.client.publish(topic, b'{"name": "Temperature"}', qos=1, retain=True).wait_for_publish(5)
    relay = Relay(broker.url, client_id="relay-retained-test")
    relay.extra_subscriptions.append("homeassistant/sensor/+/config")
    got: list[str] = []
    in_at_marker: list[collections.Counter] = []
    relay.on_other = lambda topic, payload, retain: got.append(topic)
    relay.on_retained.append(lambda: in_at_marker.append(collections.Counter(got)))
    relay.start()
    try:
        assert wait_until(lambda: in_at_marker, 15)
        assert in_at_marker[0] == collections.Counter(topics)  # every one, once, before the marker
        kicker = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="relay-retained-test")  # a session taken over
        kicker.username_pw_set("monitor", broker.users["monitor"])
        kicker.connect(broker.host, broker.port)
        kicker.disconnect()
        assert wait_until(lambda: len(in_at_marker) == 2, 20)  # reconnected: all of them again
        assert in_at_marker[1] == collections.Counter(topics * 2)
        assert not [t for t, _, _ in probe.received if "/app/" in t]
    finally:
        relay.stop()
        for topic in topics:
            probe.client.publish(topic, b"", qos=1, retain=True)
        probe.close()


def test_a_marker_the_broker_drops_is_warned_about_and_waited_for_no_longer(tmp_path, monkeypatch, caplog):
    """A broker whose access rules drop the marker (here a wearer's user, which may use its own
    topics only: nats-server refuses the subscription and drops the message; mosquitto would
    disconnect the client) never sends it back: the relay warns, naming the topic, and goes on."""
    from monitor.app import relay as relay_module
    from monitor.broker import start_broker

    need_broker("nats")
    monkeypatch.setattr(relay_module, "RETAINED_WAIT_S", 0.5)
    with start_broker("nats", tmp_path / "narrow", users={"alice": "alice-long-password"}) as narrow:
        relay = relay_module.Relay(narrow.url_for("alice"), client_id="relay-narrow-test")
        calls: list[int] = []
        relay.on_retained.append(lambda: calls.append(1))
        relay.start()
        try:
            assert wait_until(lambda: calls, 15)
            warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and "marker" in r.getMessage()]
            assert len(warned) == 1 and relay._marker_topic in warned[0] and calls == [1]
        finally:
            relay.stop()
