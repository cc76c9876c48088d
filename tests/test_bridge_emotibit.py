"""EmotiBit packets (network and SD card) and the WiFi host handshake.

Test data, and where it comes from:

* ``DOCS_SAMPLE``: the "Sample raw data file" printed in EmotiBit's documentation
  (github.com/EmotiBit/EmotiBit_Docs, Working_with_emotibit_data.md, section *Raw data
  format*; MIT License). It is EmotiBit's own output as published by its makers (a recording
  from 2024-09-18); we could not find a longer licensed raw recording.
* ``BUILT_TO_DOCS``: packets we built exactly to the documented header
  ``EMOTIBIT_TIMESTAMP,PACKET#,NUM_DATAPOINTS,TYPETAG,VERSION,RELIABILITY,PAYLOAD`` for type tags
  the sample lacks (HR heart rate, BI inter-beat interval, B% battery; tags from
  EmotiBit_XPlat_Utils/src/EmotiBitPacket.cpp). They are not device output.
* The handshake messages (HE, HH with ``DP,-1,DI,<id>``, EC with ``CP,<port>,DP,<port>``, PN)
  follow EmotiBit's firmware (EmotiBitWiFi) and BrainFlow's EmotiBit board, played here by a
  fake EmotiBit on loopback sockets.
"""

from __future__ import annotations

import socket
import threading
import time

import numpy as np
import pytest

from firmware_bridge.batcher import Chunk, Status
from firmware_bridge.bridge import Bridge
from firmware_bridge.devices import load_device
from firmware_bridge.emotibit import (
    EmotiBitConverter,
    iter_sd_file,
    make_packet,
    parse_datagram,
    parse_lines,
    parse_packet,
)
from firmware_bridge.outbox import Outbox
from firmware_bridge.transports import EmotiBitHost, run_emotibit
from monitor.wire import decode_batch

DOCS_SAMPLE = """\
531386,17296,1,RB,1,100,2024-09-18_22-59-45-827135
531388,17297,4,EM,1,100,RS,RB,2024-09-18_22-59-45-827135.csv,PS,MN
531473,17298,3,PI,1,100,112870,112866,112867
531473,17299,3,PR,1,100,26870,26855,26857
531473,17300,3,PG,1,100,3720,3704,3717
531459,17301,2,EA,1,100,0.030269,0.030269
531459,17302,2,EL,1,100,26425.000000,26425.000000
531452,17303,1,T1,1,100,33.037
531467,17304,1,TH,1,100,29.770
531473,17305,3,AX,1,100,-0.436,-0.434,-0.433
531473,17306,3,AY,1,100,-0.015,-0.015,-0.015
531473,17307,3,AZ,1,100,0.967,0.968,0.970
531473,17308,3,GX,1,100,-0.275,-0.244,-0.275
531473,17309,3,GY,1,100,0.732,0.793,0.732
531473,17310,3,GZ,1,100,-0.061,-0.061,-0.092
531473,17311,3,MX,1,100,37,38,37
531473,17312,3,MY,1,100,-56,-57,-56
531473,17313,3,MZ,1,100,-56,-56,-57
"""

BUILT_TO_DOCS = """\
531500,17314,1,HR,1,100,72
531500,17315,1,BI,1,100,830
531510,17316,1,B%,1,100,87
"""

T = 1_726_714_786.0  # gateway arrival time used in the conversion tests


def test_docs_sample_parses():
    result = parse_datagram(DOCS_SAMPLE.encode())
    assert result.errors == []
    assert len(result.packets) == 18
    ea = next(p for p in result.packets if p.typetag == "EA")
    assert (ea.timestamp_ms, ea.packet_number, ea.num_datapoints, ea.version, ea.reliability) == (531459.0, 17301, 2, 1, 100)
    assert ea.values().tolist() == [0.030269, 0.030269]
    pg = next(p for p in result.packets if p.typetag == "PG")
    assert pg.values().tolist() == [3720, 3704, 3717]
    # the EM control packet says 4 data points but carries 5 fields: EmotiBit's parser accepts that
    em = next(p for p in result.packets if p.typetag == "EM")
    assert em.num_datapoints == 4 and len(em.payload) == 5 and em.payload[-2:] == ("PS", "MN")
    assert [p.packet_number for p in result.packets] == list(range(17296, 17314))


def test_sd_card_file(tmp_path):
    path = tmp_path / "2024-09-18_22-59-45-827135.csv"
    path.write_text(DOCS_SAMPLE + "garbage line\n" + BUILT_TO_DOCS)
    packets = list(iter_sd_file(path))
    assert len(packets) == 21  # the garbage line is skipped
    assert [p.typetag for p in packets[-3:]] == ["HR", "BI", "B%"]


@pytest.mark.parametrize(
    "text, reason",
    [
        ("531459,17301,2,EA,1", "header alone has 6"),
        ("abc,17301,2,EA,1,100,0.03,0.03", "timestamp"),
        ("531459,x,2,EA,1,100,0.03,0.03", "packet number"),
        ("531459,17301,2,,1,100,0.03,0.03", "type tag is empty"),
        ("531459,17301,2,EA,1,100,0.03", "says 2 data point"),
        ("531459,17301,1,EA,1,100,0.03,0.03", "says 1 data point"),
        ("531459,17301,-1,EA,1,100", "negative"),
        ("531388,17297,4,EM,1,100,RS,RB", "carries only 2"),
        ("-5,17301,1,EA,1,100,0.03", "non-negative"),
    ],
)
def test_malformed_packets(text, reason):
    with pytest.raises(ValueError, match=reason):
        parse_packet(text)


def test_non_numeric_payload_is_reported_by_values():
    p = parse_packet("531459,17301,1,EA,1,100,abc")
    with pytest.raises(ValueError, match="not numbers"):
        p.values()


def test_datagram_reports_bad_packets_and_keeps_good_ones():
    result = parse_datagram(b"531452,17303,1,T1,1,100,33.037\nbroken\n531459,17301,2,EA,1,100,0.03\n")
    assert [p.typetag for p in result.packets] == ["T1"]
    assert len(result.errors) == 2


def test_host_messages_match_the_documented_layout():
    assert make_packet("EC", 0, ["CP", 3132, "DP", 3133]) == "0,0,4,EC,1,100,CP,3132,DP,3133\n"
    assert make_packet("HE") == "0,0,0,HE,1,100\n"
    hh = parse_packet("5000,3,0,HH,1,100,DP,-1,DI,MD-V5-0000410")
    assert hh.labelled() == {"DP": "-1", "DI": "MD-V5-0000410"}


def test_converter_maps_the_docs_sample_to_canonical_signals():
    conv = EmotiBitConverter(load_device("emotibit"))
    out = []
    for packet in parse_lines((DOCS_SAMPLE + BUILT_TO_DOCS).splitlines()).packets:
        out += conv.convert(packet, arrival_s=T)
    chunks = {c.signal: c for c in out if isinstance(c, Chunk)}
    assert set(chunks) == {"eda", "bvp", "temp", "acc", "hr", "ibi"}
    # the clock is anchored by the first data packet (PI at 531473 ms arrived at T)
    offset = T - 531.473
    assert chunks["eda"].values.tolist() == [0.030269, 0.030269]
    assert chunks["eda"].t0 == pytest.approx(offset + 531.459 - 1 / 15, abs=1e-6)  # packet time = last value
    assert chunks["bvp"].values.tolist() == [3720, 3704, 3717]  # PG, the definition's choice
    assert chunks["temp"].values.tolist() == [33.037]  # T1
    assert chunks["acc"].values.tolist() == [[-0.436, -0.015, 0.967], [-0.434, -0.015, 0.968], [-0.433, -0.015, 0.970]]
    assert chunks["acc"].t0 == pytest.approx(offset + 531.473 - 2 / 25, abs=1e-6)
    # HR's packet (531500 ms) also arrived at T: the least delayed packet sets the clock (a windowed
    # minimum of arrival - device time), so from it on the offset is T - 531.5 and HR maps to T
    assert chunks["hr"].values.tolist() == [72] and chunks["hr"].t.tolist() == pytest.approx([T], abs=1e-6)
    assert chunks["ibi"].values.tolist() == [830]
    battery = [s for s in out if isinstance(s, Status)]
    assert [(s.kind, s.value) for s in battery] == [("battery", 87.0)]


def test_beat_intervals_of_one_packet_get_their_own_beat_times():
    """A BI packet with three intervals gave all three beats the packet's time: three beats at
    one instant, and intervals that do not chain (each should start where the one before
    ended). Each beat now ends one interval after the one before, the last at the packet's time."""
    conv = EmotiBitConverter(load_device("emotibit"))
    conv.convert(parse_packet("1000,1,1,PG,1,100,3720"), arrival_s=T)  # anchors the clock: 1000 ms is T
    (chunk,) = conv.convert(parse_packet("5000,2,3,BI,1,100,800,850,900"), arrival_s=T + 4.0)
    assert chunk.values.tolist() == [800, 850, 900]
    assert chunk.t.tolist() == pytest.approx([T + 4.0 - 1.75, T + 4.0 - 0.9, T + 4.0], abs=1e-6)


def test_acc_axes_are_joined_by_timestamp_in_any_order():
    conv = EmotiBitConverter(load_device("emotibit"))
    got = []
    for text in ["100,1,2,AZ,1,100,1.0,1.1", "100,2,2,AX,1,100,0.1,0.2", "140,3,1,AX,1,100,9", "100,4,2,AY,1,100,0.5,0.6"]:
        got += conv.convert(parse_packet(text), arrival_s=T)
    assert len(got) == 1 and got[0].values.tolist() == [[0.1, 0.5, 1.0], [0.2, 0.6, 1.1]]


class FakeEmotiBit(threading.Thread):
    """Answers HE with HH, connects back to the control port on EC, streams EDA packets to the data port."""

    def __init__(self, device_id="MD-V5-0000410"):
        super().__init__(daemon=True)
        self.adv = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.adv.bind(("127.0.0.1", 0))
        self.adv.settimeout(0.1)
        self.port = self.adv.getsockname()[1]
        self.device_id = device_id
        self.stop = threading.Event()
        self.pings = 0
        self.control_messages = b""
        self.sent_values: list[float] = []

    def run(self):
        control = None
        data_addr = None
        number = 100
        ms = 10_000
        while not self.stop.is_set():
            try:
                msg, addr = self.adv.recvfrom(4096)
                for p in parse_datagram(msg).packets:
                    if p.typetag == "HE":
                        self.adv.sendto(make_packet("HH", 1, ["DP", -1, "DI", self.device_id]).encode(), addr)
                    elif p.typetag == "EC":
                        ports = p.labelled()
                        control = socket.create_connection(("127.0.0.1", int(ports["CP"])))
                        control.settimeout(0.05)
                        data_addr = ("127.0.0.1", int(ports["DP"]))
                    elif p.typetag == "PN":
                        self.pings += 1
            except socket.timeout:
                pass
            if control is not None:
                try:
                    self.control_messages += control.recv(4096)
                except socket.timeout:
                    pass
            if data_addr is not None:  # 2 EDA values every 0.1 s (a 20 Hz stream, timestamps in ms)
                values = [round(5.0 + 0.001 * (len(self.sent_values) + i), 6) for i in range(2)]
                ms += 100
                number += 1
                line = make_packet("EA", number, values, timestamp_ms=ms)
                self.adv.sendto(line.encode(), data_addr)
                self.sent_values += values
        if control is not None:
            control.close()
        self.adv.close()


def test_host_handshake_and_stream_into_the_outbox(tmp_path):
    fake = FakeEmotiBit()
    fake.start()
    definition = load_device("emotibit")
    outbox = Outbox(tmp_path / "outbox.sqlite")
    bridge = Bridge(definition, "alice", outbox=outbox)
    host = EmotiBitHost("127.0.0.1", advertising_port=fake.port, bind_host="127.0.0.1", timeout_s=3.0)
    stop = threading.Event()
    fed = [0]  # values the bridge has taken (datagrams still unread when it stops are not)
    feed = bridge.feed

    def counting_feed(items):
        items = list(items)
        fed[0] += sum(len(i.values) for i in items if hasattr(i, "values"))
        feed(items)

    bridge.feed = counting_feed
    runner = threading.Thread(target=run_emotibit, args=(bridge, host, stop), daemon=True)
    runner.start()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and (fake.pings < 2 or len(fake.sent_values) < 30 or fed[0] < 20):
        time.sleep(0.05)
    stop.set()
    runner.join(5)
    fake.stop.set()
    fake.join(5)
    bridge.tick(force=True)
    assert host.device_id == "MD-V5-0000410"  # read from the HH answer (DI label)
    assert b",MN," in fake.control_messages  # the host asked for normal power mode on the control channel
    assert fake.pings >= 2  # and kept the EmotiBit alive with pings
    batches = [decode_batch(r.payload, "eda") for r in outbox.peek(limit=1000)]
    received = np.concatenate([b.values for b in batches])
    # every value received is one the fake sent, in order, starting at the first packet
    assert len(received) >= 20
    assert received.tolist() == fake.sent_values[: len(received)]
    assert [b.seq for b in batches] == list(range(len(batches)))
    assert all(b.fs == 15.0 for b in batches)  # the declared rate (the fake sends 20 Hz)


def test_stop_while_waiting_for_the_emotibit_ends_the_connect_at_once():
    """Ctrl-C (the stop event) while the host waited for the EmotiBit's control connection
    used to wait out the whole timeout; an hour-long timeout shows it no longer does."""
    adv = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    adv.bind(("127.0.0.1", 0))
    adv.settimeout(5.0)
    stop = threading.Event()

    def answer_hello_then_stop():  # an EmotiBit that answers hello, then never connects back
        for _ in range(50):
            msg, addr = adv.recvfrom(4096)
            tags = [p.typetag for p in parse_datagram(msg).packets]
            if "HE" in tags:
                adv.sendto(make_packet("HH", 1, ["DP", -1, "DI", "MD-V5-0000410"]).encode(), addr)
            if "EC" in tags:
                stop.set()  # Ctrl-C while the host waits at accept()
                return

    fake = threading.Thread(target=answer_hello_then_stop, daemon=True)
    fake.start()
    host = EmotiBitHost("127.0.0.1", advertising_port=adv.getsockname()[1], bind_host="127.0.0.1", timeout_s=3600.0)
    try:
        with pytest.raises(InterruptedError):
            host.connect(stop)
    finally:
        host.close()
        fake.join(5)
        adv.close()
