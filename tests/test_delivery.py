"""Delivery to the broker: what goes first after an outage, a message the broker will not take, a backlog kept
in flight. The outbox's rules on hand-made messages, then the publisher and ``streamer run`` against real
mosquitto processes (``max_packet_size``: mosquitto closes the connection of a client that sends a larger packet,
which is all an MQTT 3.1.1 client learns)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from pipelines.config import MqttConfig
from pipelines.stages.mqtt import Publisher
from pipelines.stages.outbox import Kind, Message, Outbox
from pipelines.stages.topics import Topics

from .analyzer_run import Subscriber, start_streamer, subscribe

SMALL_PACKETS = ["max_packet_size 4096"]  # events and stats pass; the synthetic source's JPEGs do not


async def away_with_a_session(mqtt_broker: Any, tmp_path: Path, identifier: str) -> Any:
    """A stopped broker that saved a persistent session for subscriber ``identifier``: started again, it keeps
    what is published (QoS 0 too) for that subscriber until it comes, however early the publisher reconnects."""
    saved = ["persistence true", f"persistence_location {tmp_path}/", "max_queued_messages 100000",
             "queue_qos0_messages true"]  # fmt: skip
    broker = mqtt_broker(extra_config=saved)
    async with subscribe(broker.host, broker.port, "t/#", identifier=identifier):
        pass
    broker.stop()
    return broker


async def until(sub: Subscriber, count: int, topic: str, within: float = 60) -> None:
    """Wait until ``count`` messages on ``topic`` arrived."""
    async with asyncio.timeout(within):
        while len(sub.on(topic)) < count:
            sub.arrived.clear()
            await sub.arrived.wait()


def message(kind: Kind, topic: str = "t/s/events", payload: bytes = b"x") -> Message:
    return Message(topic, payload, 0 if kind == "score" else 1, kind in ("status", "state"), kind, time.time())


def event(i: int, pad: int = 100) -> Message:
    return message("event", payload=json.dumps({"id": i, "pad": "x" * pad}).encode())


def ids(sub: Subscriber, topic: str = "t/s/events") -> list[int]:
    """Event ids in arrival order, each once (delivery is at least once: a resent message may come twice)."""
    seen: dict[int, None] = {}
    for m in sub.on(topic):
        seen.setdefault(m.json()["id"], None)
    return list(seen)


# -- the outbox's rules ---------------------------------------------------------------------------------------


def test_events_go_before_statuses_before_other_state_before_scores_and_state_keeps_its_latest() -> None:
    outbox = Outbox(10)
    outbox.connected = True
    outbox.put(message("state", "t/s/snapshot", b"jpeg"))
    outbox.put(message("score", "t/s/scores"))
    outbox.put(message("status", "t/s/status", b"reconnecting"))
    outbox.put(message("state", "t/stats", b"{}"))
    outbox.put(message("event", payload=b"start"))
    outbox.put(message("status", "t/s/status", b"online"))
    outbox.put(message("event", payload=b"end"))
    sent = []
    while (m := outbox.peek()) is not None:
        sent.append(m.payload)
        outbox.done(m)
    assert sent == [b"start", b"end", b"online", b"jpeg", b"{}", b"x"]
    assert outbox.sent == 6 and not len(outbox)


async def test_take_keeps_at_most_a_window_in_flight_and_an_ack_frees_a_place() -> None:
    outbox = Outbox(100)
    for i in range(5):
        outbox.put(event(i))
    taken = [await outbox.take(3) for _ in range(3)]
    assert outbox.in_flight == 3 and len(outbox) == 5 and outbox.pending_events == 5
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.05):
            await outbox.take(3)
    outbox.done(taken[1])  # acknowledgements may come in any order
    assert json.loads((await outbox.take(3)).payload)["id"] == 3
    assert outbox.sent == 1 and len(outbox) == 4


async def test_a_lost_connection_resends_one_at_a_time_and_gives_up_on_a_message_after_max_attempts() -> None:
    outbox = Outbox(100, max_attempts=3)
    for i in range(4):
        outbox.put(event(i))
    first = [await outbox.take(32) for _ in range(4)]
    assert outbox.lost() == []  # four were in flight: none of them is blamed, all wait again, in order
    assert outbox.retrying and outbox.in_flight == 0 and outbox.peek() is first[0]
    m0 = await outbox.take(32)
    with pytest.raises(TimeoutError):  # while retrying, one at a time
        async with asyncio.timeout(0.05):
            await outbox.take(32)
    outbox.done(m0)
    for attempt in range(1, 4):  # event 1 is alone in flight each time the connection is lost
        m1 = await outbox.take(32)
        assert m1 is first[1]
        rejected = outbox.lost()
        assert rejected == ([m1] if attempt == 3 else [])
    assert outbox.rejected == 1 and outbox.counters()["rejected"] == 1
    m2 = await outbox.take(32)
    outbox.done(m2)  # event 2 acknowledged: the last of the suspects (event 3) still goes alone
    m3 = await outbox.take(32)
    assert [json.loads(m.payload)["id"] for m in (m2, m3)] == [2, 3]
    assert outbox.retrying and outbox.in_flight == 1
    outbox.done(m3)
    assert not outbox.retrying and not len(outbox) and outbox.sent == 3


async def test_messages_that_were_not_sent_after_all_wait_again_in_their_send_order() -> None:
    # CI found 34, 33, 32 on the wire: three publishes refused one after another ("not currently connected") were
    # each put back first, reversing them, and the lost connection then put the earlier ones before them
    outbox = Outbox(100)
    for i in range(6):
        outbox.put(event(i))
    taken = [await outbox.take(32) for _ in range(5)]
    for m in taken[2:]:  # their publishes failed before reaching the wire, in send order
        outbox.release(m)
    outbox.lost()  # then the connection is declared lost: 0 and 1 were in flight
    order = []
    while len(outbox):
        m = await outbox.take(32)
        order.append(json.loads(m.payload)["id"])
        outbox.done(m)
    assert order == [0, 1, 2, 3, 4, 5]


async def test_a_cancelled_publisher_blames_nothing_and_newer_state_replaces_a_resend() -> None:
    outbox = Outbox(100, max_attempts=1)
    outbox.put(message("state", "t/s/snapshot", b"old"))
    old = await outbox.take(32)
    outbox.put(message("state", "t/s/snapshot", b"new"))
    assert outbox.lost(blame=False) == [] and not outbox.retrying
    newer = await outbox.take(32)
    assert newer.payload == b"new" and len(outbox) == 1 and old is not newer  # the old JPEG is not resent


# -- against mosquitto ------------------------------------------------------------------------------------------


class Running:
    """A :class:`Publisher` on its own task, as the analyzer runs it."""

    def __init__(self, url: str, outbox: Outbox) -> None:
        self.publisher = Publisher(MqttConfig(url=url, prefix="t"), Topics("t"), outbox)
        self.task = asyncio.create_task(self.publisher.run())

    async def close(self) -> bool:
        return await self.publisher.close(self.task, flush_for=1.0)


async def test_a_message_the_broker_disconnects_on_is_dropped_after_bounded_attempts_and_the_rest_goes_out(
    mqtt_broker: Any, caplog: pytest.LogCaptureFixture
) -> None:
    broker = mqtt_broker(extra_config=SMALL_PACKETS)
    outbox = Outbox(1000)
    for i in range(60):
        outbox.put(event(i, pad=8000 if i == 5 else 100))  # event 5 is larger than the broker takes
    async with subscribe(broker.host, broker.port, "t/#") as sub:
        running = Running(broker.url, outbox)
        try:
            async with asyncio.timeout(60):
                await outbox.empty()
        finally:
            await running.close()
        await asyncio.sleep(0.2)
    assert "disconnected due to oversize packet" in broker.log_tail(100_000)
    assert ids(sub) == [i for i in range(60) if i != 5]  # in order, each at least once
    assert outbox.rejected == 1 and outbox.counters()["rejected"] == 1 and outbox.overflow == 0
    dropped = [r.getMessage() for r in caplog.records if "dropped a" in r.getMessage()]
    assert len(dropped) == 1, caplog.text
    assert "t/s/events" in dropped[0] and "3 attempt(s)" in dropped[0] and "connection" in dropped[0]


async def test_after_an_outage_events_go_first_then_the_latest_status_then_the_snapshot_then_stats(
    mqtt_broker: Any, tmp_path: Path
) -> None:
    broker = await away_with_a_session(mqtt_broker, tmp_path, "order-test")
    outbox = Outbox(1000)
    running = Running(broker.url, outbox)
    try:
        outbox.put(message("status", "t/s/status", b"reconnecting"))
        outbox.put(message("event", payload=b'{"id": 0}'))
        outbox.put(message("state", "t/s/snapshot", b"\xff\xd8\xff" + bytes(100_000)))
        outbox.put(message("status", "t/s/status", b"online"))
        outbox.put(message("event", payload=b'{"id": 1}'))
        outbox.put(message("state", "t/stats", b"{}"))
        await asyncio.sleep(0.3)  # the publisher tried the broker
        broker.start()
        async with asyncio.timeout(30):
            await outbox.empty()
    finally:
        assert await running.close()
    async with subscribe(broker.host, broker.port, "t/#", identifier="order-test") as sub:
        await until(sub, 1, "t/stats")
    order = [m.topic for m in sub.messages if m.topic != "t/status"]  # t/status: the publisher's own online/offline
    assert order == ["t/s/events", "t/s/events", "t/s/status", "t/s/snapshot", "t/stats"]
    assert sub.payloads("t/s/status") == ["online"]  # the latest status only


async def test_a_backlog_of_2000_events_is_delivered_completely_and_in_order_when_the_broker_is_back(
    mqtt_broker: Any, tmp_path: Path
) -> None:
    broker = await away_with_a_session(mqtt_broker, tmp_path, "backlog-test")
    outbox = Outbox(10_000)
    running = Running(broker.url, outbox)
    try:
        for i in range(2000):
            outbox.put(event(i))
        await asyncio.sleep(0.3)
        assert outbox.pending_events == 2000 and not running.publisher.connected.is_set()
        broker.start()
        async with asyncio.timeout(60):
            await outbox.empty()
    finally:
        assert await running.close()
    async with subscribe(broker.host, broker.port, "t/#", identifier="backlog-test") as sub:
        await until(sub, 2000, "t/s/events")
    assert ids(sub) == list(range(2000))
    assert outbox.sent == 2000 and outbox.counters()["pending"] == 0 and outbox.rejected == 0


# -- streamer run ---------------------------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def streamer_run(*args: str) -> AsyncIterator[asyncio.subprocess.Process]:
    """``streamer run ARGS...``, killed at the end if a failing test left it running."""
    proc = await start_streamer("run", *args)
    try:
        yield proc
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def test_streamer_run_drops_a_snapshot_the_broker_will_not_take_and_goes_on(mqtt_broker: Any) -> None:
    broker = mqtt_broker(extra_config=SMALL_PACKETS)
    async with (
        subscribe(broker.host, broker.port) as sub,
        streamer_run("synthetic:?events=av@1,av@4&duration=0", "--mqtt", broker.url, "--prefix", "test",
                     "--stats-interval", "1", "-q") as proc,
    ):  # fmt: skip
        assert proc.stderr is not None
        lines: list[str] = []
        async with asyncio.timeout(60):
            while sum("dropped a" in line for line in lines) < 2:  # each burst's snapshot
                line = (await proc.stderr.readline()).decode()
                assert line, "".join(lines)
                lines.append(line)
            while len([e for e in sub.events("synthetic") if e["type"] == "end"]) < 2:  # the burst after it too
                await sub.wait_for("test/synthetic/events")
                await asyncio.sleep(0.2)
        proc.send_signal(signal.SIGTERM)
        async with asyncio.timeout(30):
            _, err = await proc.communicate()
        await sub.wait_for("test/status", "offline", within=10)
    assert proc.returncode == 0
    text = "".join(lines) + err.decode()
    dropped = [line for line in text.splitlines() if "dropped a" in line]
    assert len(dropped) == 2 and all(
        "message to test/synthetic/snapshot after 3 attempt(s)" in line for line in dropped
    ), text
    assert "not delivered" not in text, text
    assert [e["type"] for e in sub.events("synthetic")] == ["start", "end", "start", "end"]
    assert sub.on("test/synthetic/snapshot") == []
    assert sub.on("test/stats")[-1].json()["outbox"]["rejected"] == 2


async def test_streamer_run_sends_the_events_of_an_outage_before_its_snapshot(mqtt_broker: Any, tmp_path: Path) -> None:
    # The broker saves sessions to disk, so our subscriber's persistent session survives its crash and the broker
    # keeps what the analyzer delivers after reconnecting until the subscriber is back (no race between them).
    saved = ["persistence true", f"persistence_location {tmp_path}/", "autosave_interval 1", "autosave_on_changes true"]
    broker = mqtt_broker(extra_config=saved)
    async with streamer_run("synthetic:?events=av@3&duration=0", "--mqtt", broker.url, "--prefix", "test") as proc:
        assert proc.stdout is not None and proc.stderr is not None
        async with subscribe(broker.host, broker.port, identifier="order-test") as sub:
            await sub.wait_for("test/synthetic/status", "online", within=60)
        broker.kill()  # before the burst: its start, end and snapshot wait in the outbox
        async with asyncio.timeout(60):
            while b" END " not in await proc.stdout.readline():
                pass
        await asyncio.sleep(1.0)  # the snapshot is encoded on a thread after the end
        broker.start()
        async with asyncio.timeout(60):
            while b"reconnected" not in await proc.stderr.readline():
                pass
        proc.send_signal(signal.SIGTERM)  # flushes the outbox before it exits
        async with asyncio.timeout(30):
            code = await proc.wait()
    async with subscribe(broker.host, broker.port, identifier="order-test") as sub:
        await sub.wait_for("test/status", "offline", within=10)
    assert code == 0
    topics = [m.topic for m in sub.messages]
    assert [e["type"] for e in sub.events("synthetic")] == ["start", "end"], topics
    assert topics.count("test/synthetic/snapshot") == 1, topics
    assert topics.index("test/synthetic/events") + 1 < topics.index("test/synthetic/snapshot"), topics
