"""The embedded broker's process: a broker orphaned by a killed owner is stopped by the next start
in the same data directory; a directory whose owner still runs is refused.

``anxmon run`` starts nats-server in its own session (so a Ctrl-C to the terminal's process group
cannot kill it before the service has said goodbye through it). When the service is killed with
SIGKILL, the broker lives on and holds the data directory's store; the next start in the same
data directory must stop it first.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from monitor.broker import BrokerError, _running, start_broker
from tests.conftest import need_broker

ROOT = Path(__file__).resolve().parents[1]

OWNER = """
import sys, time
from monitor.broker import start_broker
b = start_broker("nats", data_dir=sys.argv[1])
print(b.process.pid, flush=True)
time.sleep(600)
"""


def test_a_broker_orphaned_by_sigkill_is_stopped_by_the_next_start(tmp_path):
    need_broker("nats")
    data_dir = tmp_path / "broker"
    owner = subprocess.Popen([sys.executable, "-c", OWNER, str(data_dir)], stdout=subprocess.PIPE,
                             cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    orphan = int(owner.stdout.readline())
    with pytest.raises(BrokerError, match="in use"):  # its owner still runs: not an orphan
        start_broker("nats", data_dir=data_dir)
    assert _running(orphan)
    owner.send_signal(signal.SIGKILL)
    owner.wait(10)
    time.sleep(0.3)
    assert _running(orphan), "the broker should have outlived its killed owner (its own session)"
    assert (data_dir / "nats.pid").read_text().split() == [str(orphan), str(owner.pid)]
    broker = start_broker("nats", data_dir=data_dir)
    try:
        assert not _running(orphan)  # stopped before the new one started on the same store
        assert broker.process.pid != orphan and broker.process.poll() is None
        assert (data_dir / "nats.pid").read_text().split() == [str(broker.process.pid), str(os.getpid())]
    finally:
        broker.stop()
    assert not (data_dir / "nats.pid").exists()  # a clean stop leaves nothing to reap


def test_a_stale_pid_file_of_another_process_is_left_alone(tmp_path):
    """A pid file whose process is not this directory's broker (the pid was reused): untouched."""
    need_broker("nats")
    data_dir = tmp_path / "broker"
    data_dir.mkdir()
    bystander = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (data_dir / "nats.pid").write_text(f"{bystander.pid} 1\n")
        with start_broker("nats", data_dir=data_dir) as broker:
            assert broker.process.poll() is None
        assert bystander.poll() is None  # still running
    finally:
        bystander.kill()
        bystander.wait()


def _anxmon_run(data_dir: str, cwd: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "monitor.cli", "run", "--data-dir", data_dir, "--no-record"],
                            cwd=cwd, env={**os.environ, "PYTHONPATH": str(ROOT)}, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_a_second_run_on_the_same_data_directory_is_refused_however_it_is_written(tmp_path):
    """``anxmon run --data-dir /abs/data`` and ``--data-dir data`` (from its parent) are one
    directory: the second is refused before it touches the broker or the checkpoints; after a
    SIGKILL of the first, the next run (by the relative name) stops the orphaned broker."""
    need_broker("nats")
    first = _anxmon_run(str(tmp_path / "data"), ROOT)
    procs = [first]
    try:
        assert "running" in "".join(first.stdout.readline() for _ in range(2)), first.stderr
        creds = (tmp_path / "data" / "broker-credentials.json").read_text()
        procs.append(second := _anxmon_run("data", tmp_path))
        _, err = second.communicate(timeout=60)
        assert second.returncode == 2 and "is in use by another anxmon run (pid" in err, err
        assert (tmp_path / "data" / "broker-credentials.json").read_text() == creds  # untouched
        orphan = int((tmp_path / "data" / "broker" / "nats.pid").read_text().split()[0])
        first.send_signal(signal.SIGKILL)
        first.wait(10)
        assert _running(orphan)
        procs.append(third := _anxmon_run("data", tmp_path))
        assert "running" in "".join(third.stdout.readline() for _ in range(2)), third.stderr
        assert not _running(orphan)
        third.send_signal(signal.SIGTERM)
        assert third.wait(30) == 128 + signal.SIGTERM
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait(10)


@pytest.mark.parametrize("twice", ["monitor", "alice"])
def test_a_user_given_twice_in_the_credentials_file_is_refused(tmp_path, twice):
    """A wearer added as ``"monitor": "..."`` under ``users`` (after the service's own entry)
    silently became the service's password, and that wearer the broker's admin, able to read and
    write every wearer's topics; a wearer given twice silently lost one password. Now the run is
    refused (exit 2) with the file and the name, before any broker starts."""
    from monitor.broker import free_port

    data = tmp_path / "data"
    data.mkdir(mode=0o700)
    creds = data / "broker-credentials.json"
    port = free_port()
    creds.write_text(
        '{"kind": "nats", "host": "127.0.0.1", "port": %d, "url": "mqtt://monitor:service-password@127.0.0.1:%d",\n'
        ' "users": {"monitor": "service-password", "alice": "alice-password",\n'
        '           "%s": "a-wearer-password"}}\n' % (port, port, twice))
    os.chmod(creds, 0o600)
    run = _anxmon_run(str(data), ROOT)
    try:
        _, err = run.communicate(timeout=30)
    finally:
        if run.poll() is None:  # (SIGTERM: a clean stop stops the broker it started, too)
            run.terminate()
            run.wait(30)
    assert run.returncode == 2 and str(creds) in err and f"'{twice}' is given twice" in err, err
    assert "Traceback" not in err
    if twice == "monitor":
        assert "never a wearer" in err
    assert not (data / "broker" / "nats.conf").exists()  # no broker was started with it


def test_the_nats_store_is_bounded_and_the_bound_can_be_set(tmp_path, monkeypatch):
    """A backlog (the service stopped or behind) must not fill the data directory's disk: the
    broker's JetStream store has a limit, 10 GB unless $ANXMON_BROKER_MAX_STORE_GB says otherwise."""
    from monitor.broker import MAX_STORE_GB_VARIABLE, max_store_bytes

    need_broker("nats")
    assert max_store_bytes() == 10 * 10**9
    monkeypatch.setenv(MAX_STORE_GB_VARIABLE, "2.5")
    with start_broker("nats", data_dir=tmp_path / "b", users={"alice": "alice-long-password"}) as b:
        assert f"max_file_store: {int(2.5e9)}" in (tmp_path / "b" / "nats.conf").read_text()
        # it holds every broker user's password: readable by its owner only (audit 16: was 0644)
        assert (tmp_path / "b" / "nats.conf").stat().st_mode & 0o777 == 0o600

        def reported() -> str:
            lines = [x for x in (tmp_path / "b" / "nats.log").read_text().splitlines() if "Max Storage" in x]
            return lines[-1] if lines else ""

        deadline = time.monotonic() + 10
        while not reported() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert reported().endswith("2.33 GB"), reported()  # 2.5e9 bytes in GiB, as nats-server prints it
        assert b.exited() is None
        b.process.kill()
        b.process.wait(10)
        assert b.exited() == "killed by SIGKILL"
    monkeypatch.setenv(MAX_STORE_GB_VARIABLE, "lots")
    with pytest.raises(BrokerError, match=MAX_STORE_GB_VARIABLE):
        start_broker("nats", data_dir=tmp_path / "c")


def test_a_store_at_its_limit_refuses_more_and_a_restart_lets_the_service_drain_it(tmp_path, monkeypatch, caplog):
    """What the documented bound does: at its limit nats-server acknowledges no more publications
    (bridges keep them in their outboxes) and refuses new connections (it cannot store their
    sessions), the service's too. A start that finds the store full (every ``anxmon run`` starts
    its broker) gives it room, with a WARNING, and the service's session gets its backlog."""
    import paho.mqtt.client as mqtt

    from monitor.broker import MAX_STORE_GB_VARIABLE

    need_broker("nats")
    monkeypatch.setenv(MAX_STORE_GB_VARIABLE, "0.01")  # 10 MB
    b = start_broker("nats", data_dir=tmp_path / "b")

    def client(client_id: str, clean: bool) -> tuple[mqtt.Client, list]:
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=clean)
        c.username_pw_set("monitor", b.password)
        connected: list = []
        c.on_connect = lambda cl, u, f, rc, p: connected.append(str(rc))
        c.connect(b.host, b.port)
        c.loop_start()
        return c, connected

    def wait(predicate, timeout_s=10.0) -> bool:
        deadline = time.monotonic() + timeout_s
        while not predicate() and time.monotonic() < deadline:
            time.sleep(0.02)
        return predicate()

    try:
        svc, connected = client("svc", clean=False)  # the service's persistent session
        assert wait(lambda: connected)
        subscribed: list = []
        svc.on_subscribe = lambda *a: subscribed.append(1)
        svc.subscribe("anxmon/v1/#", 1)
        assert wait(lambda: subscribed)  # (a session without the subscription would store nothing)
        svc.disconnect()
        svc.loop_stop()
        pub, _ = client("pub", clean=True)
        acked = 0
        for _ in range(200):  # 20 MB for the stopped service: the store fills at 10 MB
            info = pub.publish("anxmon/v1/alice/e4/eda", b"x" * 100_000, qos=1)
            with contextlib.suppress(RuntimeError, ValueError):
                info.wait_for_publish(3)
            if not info.is_published():
                break
            acked += 1
        pub.loop_stop()
        assert 50 < acked < 200
        late, late_connected = client("late", clean=False)
        time.sleep(2)
        assert not late_connected  # full: nobody gets in
        late.loop_stop()

        b.stop()
        with caplog.at_level("WARNING", logger="anxmon.broker"):
            b.start()
        assert any("at its limit" in r.getMessage() for r in caplog.records)
        got: list = []
        svc, connected = client("svc", clean=False)
        svc.on_message = lambda c, u, m: got.append(m.mid)
        assert wait(lambda: connected == ["Success"]), connected
        assert wait(lambda: len(got) >= acked, 30), (len(got), acked)
        svc.disconnect()
        svc.loop_stop()
    finally:
        b.stop()


def largest_legal_batch() -> bytes:
    """The longest message the wire contract allows: ``MAX_SAMPLES_PER_BATCH`` acc rows, every
    number at its longest (24 characters), as ``encode_batch`` writes it (checked legal here)."""
    import numpy as np

    from monitor.wire import MAX_SAMPLES_PER_BATCH, SampleBatch, decode_batch, encode_batch

    longest = -1.2345678901234567e-300
    assert len(repr(longest)) == len(repr(-1.7976931348623157e308)) == 24
    batch = SampleBatch("acc", seq=2**63, values=np.full((MAX_SAMPLES_PER_BATCH, 3), longest),
                        t0=1.2345678901234567e9, fs=999.9999999999999)
    payload = encode_batch(batch)
    decode_batch(payload, "acc")  # legal
    return payload


def test_a_message_over_the_size_limit_is_refused_and_the_largest_legal_batch_passes(broker):
    """mosquitto took messages of any size (up to MQTT's 256 MB), nats-server up to 1 MiB, only
    1.36 times the largest legal batch. Both now take up to ``MAX_MESSAGE_BYTES``: the largest
    legal batch reaches the monitor intact, with at least a factor 2 to spare; one byte more and
    the sender is disconnected and the message never reaches anyone."""
    from monitor.broker import MAX_MESSAGE_BYTES
    from monitor.wire import data_topic
    from tests.test_service import Probe, wait_until

    legal = largest_legal_batch()
    assert 2 * len(legal) <= MAX_MESSAGE_BYTES  # the margin monitor/broker.py documents
    broker.add_user("alice")
    broker.stop()
    broker.start()
    topic = data_topic("alice", "e4", "acc")
    monitor = Probe(broker, ["anxmon/v1/alice/#"])
    alice = Probe(broker, user="alice")
    try:
        alice.publish(topic, legal)
        assert wait_until(lambda: monitor.on(topic) == [legal], 20)

        disconnects = []
        alice.client.on_disconnect = lambda *args: disconnects.append(args)
        info = alice.client.publish(topic, b"x" * (MAX_MESSAGE_BYTES + 1), qos=1)
        assert wait_until(lambda: disconnects, 20), "the broker took an oversized message"
        alice.close()  # (else paho sends it again at each reconnect)
        assert not info.is_published()

        again = Probe(broker, user="alice")  # the next message of the same sender still passes
        again.publish(topic, b"after")
        again.close()
        assert wait_until(lambda: b"after" in monitor.on(topic), 20)
        assert monitor.on(topic) == [legal, b"after"]
    finally:
        alice.close()
        monitor.close()


_STARTED: list[list[str]] | None = None  # the command lines of the processes started meanwhile


def _record_process_starts(event: str, args: tuple) -> None:
    if event == "subprocess.Popen" and _STARTED is not None:
        _STARTED.append([str(a) for a in args[1]])


def test_no_broker_password_is_on_a_command_line(tmp_path):
    """Every local user can read a process's command line (``ps``): the mosquitto password file
    was written with ``mosquitto_passwd -b FILE USER PASSWORD``, the service's password among
    them. The passwords now go on standard input; the broker still takes them, whatever their
    characters (a ``:`` ends the password in a plain-text password file, a space ends a word)."""
    global _STARTED
    need_broker("mosquitto")
    sys.addaudithook(_record_process_starts)  # (a hook stays for the process: it records only here)
    password = " pass:word with spaces "
    _STARTED = []
    try:
        b = start_broker("mosquitto", data_dir=tmp_path / "m", users={"alice": password})
    finally:
        started, _STARTED = _STARTED, None
    try:
        assert any("mosquitto" in " ".join(cmd) for cmd in started)  # the hook saw the broker start
        for secret in b.users.values():
            assert not any(secret in " ".join(cmd) for cmd in started), started
        assert _connack(b, "alice", password) == "Success"  # all of it, and only all of it
        assert _connack(b, "alice", password.split(":")[0]) == "Not authorized"
    finally:
        b.stop()


def _connack(broker, user: str | None, password: str | None) -> str:
    """The broker's answer to a CONNECT as ``user`` with ``password`` (``Success``, ...; user
    None: a CONNECT without a name)."""
    import paho.mqtt.client as mqtt

    answers: list[str] = []
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    if user is not None:
        client.username_pw_set(user, password)
    client.on_connect = lambda c, u, f, rc, p: answers.append(str(rc))
    client.connect(broker.host, broker.port)
    deadline = time.monotonic() + 10
    while not answers and time.monotonic() < deadline:
        client.loop(0.1)
    client.disconnect()
    return answers[0] if answers else "no answer"


@pytest.mark.parametrize("password", ["$2a$10$my-own-password", "scrypt$my-own-password"])
def test_a_password_that_looks_like_a_hash_is_refused(tmp_path, password):
    """nats-server takes a password beginning ``$2a$10$`` for a bcrypt hash, the check-in app one
    beginning ``scrypt$`` for its own hash: the wearer could never sign in, and nothing said why.
    Refused at start with the user named; the same characters later in a password are fine."""
    need_broker("nats")
    with pytest.raises(BrokerError, match="password of broker user 'bob' .*begins like a password hash"):
        b = start_broker("nats", tmp_path / "refused", users={"bob": password})
        b.stop()  # (only reached when it was not refused)
    assert not (tmp_path / "refused" / "nats.conf").exists()
    b = start_broker("nats", tmp_path / "b", users={"bob": "x" + password})
    try:
        assert _connack(b, "bob", "x" + password) == "Success"
    finally:
        b.stop()


def test_no_login_system_topic_shared_subscription_or_borrowed_client_id_reaches_another_wearer(broker):
    """What the wearer ACL tests left out: no name, an empty or a near name (``Alice``, a
    trailing space) is refused; ``$SYS/#`` and shared subscriptions (``$share/g/...``) bring a
    wearer nothing of another; and a wearer who connects with another wearer's client id
    (persistent session) gets none of the messages queued for that session or sent while she
    holds it. (nats-server then hands the owner back its session and backlog; mosquitto drops
    that backlog, which is why every anxmon client id ends in a secret: see docs/service.md.)"""
    import paho.mqtt.client as mqtt

    from monitor.wire import data_topic
    from tests.test_service import Probe, wait_until

    broker.add_user("alice")
    broker.add_user("bob")
    broker.stop()
    broker.start()
    for user, password in [(None, None), ("", ""), ("", broker.password), ("Alice", broker.users["alice"]),
                           ("alice ", broker.users["alice"]), ("alice", "")]:
        assert _connack(broker, user, password) not in ("Success", "no answer"), (user, password)

    checkin = "anxmon/v1/bob/checkin"
    monitor = Probe(broker, ["anxmon/v1/bob/#"])
    alice = Probe(broker, ["$SYS/#", "$share/g/anxmon/v1/bob/#", "$share/g/#"], user="alice")

    def session(user: str) -> tuple[mqtt.Client, list[bytes]]:
        got: list[bytes] = []
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="bobs-phone-secret", clean_session=False)
        c.username_pw_set(user, broker.users[user])
        c.on_message = lambda cl, u, m: got.append(bytes(m.payload))
        c.on_subscribe = lambda *a: got.append(b"(subscribed)")
        c.connect(broker.host, broker.port, keepalive=10)
        c.loop_start()
        assert wait_until(c.is_connected, 10)
        return c, got

    try:
        bob, acks = session("bob")
        bob.subscribe("anxmon/v1/bob/#", 1)
        assert wait_until(lambda: acks == [b"(subscribed)"], 10)
        bob.disconnect()
        bob.loop_stop()
        monitor.publish(checkin, b"queued for bob")
        borrowed, got = session("alice")  # alice with bob's client id
        monitor.publish(checkin, b"sent while alice holds it")
        monitor.publish(data_topic("bob", "e4", "eda"), b"bob's data")
        assert wait_until(lambda: len(monitor.on(checkin)) == 2 and monitor.on(data_topic("bob", "e4", "eda")), 10)
        time.sleep(1)  # (what the broker would deliver has had time to come)
        borrowed.disconnect()
        borrowed.loop_stop()
        assert got == [] and alice.received == [], (got, alice.received)
        if broker.kind == "nats":
            bob, got = session("bob")
            assert wait_until(lambda: len(got) == 3, 10), got
            assert sorted(got) == [b"bob's data", b"queued for bob", b"sent while alice holds it"]
            bob.disconnect()
            bob.loop_stop()
    finally:
        monitor.close()
        alice.close()
