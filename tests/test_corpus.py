"""Malformed media (:mod:`pipelines.bench.corpus`, made here from real encodes) through one real ``streamer run``
with a real mosquitto, beside a healthy stream: each case is analyzed as far as it goes or ends in one line naming
its stream and the cause, the healthy stream's event is found, the run ends in bounded time with no process left
behind and bounded memory."""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import time
from pathlib import Path
from typing import Any

import psutil

from pipelines.bench.corpus import ANALYZED, EITHER, FAILED, build, encode
from tests.analyzer_run import start_streamer, subscribe
from tests.media_servers import free_udp_port

RSS_LIMIT_MB = 4096  # the whole tree: the analyzer (torch) and its ingest processes, about 1.5 GB usually


async def test_every_malformed_case_is_analyzed_or_one_line_and_the_others_go_on(
    tmp_path: Path, mqtt_broker: Any
) -> None:
    cases = build(tmp_path / "corpus")
    healthy = encode(tmp_path / "healthy.mp4", event=3.0)
    broker = mqtt_broker()
    tree: dict[int, psutil.Process] = {}
    peak_mb = 0.0
    async with subscribe(broker.host, broker.port, "test/#") as got:
        proc = await start_streamer("run", f"healthy={healthy}", *(f"{c.name}={c.path}" for c in cases), "--mqtt",
                                    broker.url, "--prefix", "test", "--stats-interval", "0.5", "-q")  # fmt: skip
        async with asyncio.timeout(150):
            while proc.returncode is None:
                try:
                    root = psutil.Process(proc.pid)
                    for p in [root, *root.children(recursive=True)]:
                        tree.setdefault(p.pid, p)
                    peak_mb = max(peak_mb, sum(p.memory_info().rss for p in tree.values() if p.is_running()) / 2**20)
                except psutil.Error:
                    pass
                await asyncio.sleep(0.2)
            _, err_bytes = await proc.communicate()
        await asyncio.sleep(0.5)
    err = err_bytes.decode()
    assert proc.returncode == 3, err[-3000:]  # some streams failed, the run did not
    assert "Traceback" not in err, err[-4000:]
    assert not [p for p in tree.values() if p.is_running() and p.status() != psutil.STATUS_ZOMBIE], "left behind"
    assert peak_mb < RSS_LIMIT_MB, peak_mb
    reached: dict[str, float] = {}
    for message in got.on("test/stats"):
        for stream, figures in message.json()["streams"].items():
            reached[stream] = max(reached.get(stream, 0.0), figures.get("media_t") or 0.0)
    starts = [m.json() for m in got.on("test/healthy/events") if m.json()["type"] == "start"]
    assert [round(s["t"]) for s in starts] == [3], json.dumps(starts)  # the healthy stream, untouched
    outcomes: dict[str, str] = {}
    for case in cases:
        lines = [line for line in err.splitlines() if f"stream '{case.name}'" in line]
        failed = len(lines) == 1
        assert len(lines) <= 1, (case.name, lines)  # never more than one line a stream
        outcomes[case.name] = f"{'failed: ' + lines[0] if failed else 'analyzed'} to {reached.get(case.name)}"
        if case.expect == FAILED:
            assert failed and case.why in lines[0], (case.name, outcomes[case.name])
        elif case.expect == ANALYZED:  # as far as it goes: a file cut short says so, in its one line
            assert reached.get(case.name, 0.0) >= case.min_t, (case.name, outcomes[case.name])
            cut = case.name.startswith(("ts_cut", "mkv_cut"))
            assert not failed or (cut and "file is truncated" in lines[0]), (case.name, outcomes[case.name])
        else:
            assert case.expect == EITHER
        statuses = [m.payload.decode() for m in got.on(f"test/{case.name}/status")]
        assert statuses[-1:] == ["ended"] or failed, (case.name, statuses)


def _send_udp(path: Path, port: int, seconds: float, passes: int) -> None:
    """``path``'s bytes as MPEG-TS over UDP (7 packets a datagram), paced over ``seconds`` a pass, like a live
    encoder: what a camera that sends damaged or changing streams looks like."""
    data = path.read_bytes()
    chunks = [data[i : i + 1316] for i in range(0, len(data), 1316)]
    gap = seconds / max(1, len(chunks))
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        for _ in range(passes):
            start = time.monotonic()
            for i, chunk in enumerate(chunks):
                sock.sendto(chunk, ("127.0.0.1", port))
                time.sleep(max(0.0, start + i * gap - time.monotonic()))


async def test_malformed_streams_served_live_leave_the_run_and_the_healthy_stream_alone(
    tmp_path: Path, mqtt_broker: Any
) -> None:
    """A subset served live (MPEG-TS over UDP, paced): damaged payload, mid-stream changes of resolution, sample
    rate and channel layout, timestamps that jump back and decode times that go back, and random bytes, beside a
    healthy live stream. The run stays up without a traceback, each decodable one goes online and is analyzed,
    the healthy stream's events are found."""
    cases = {c.name: c for c in build(tmp_path / "corpus")}
    chosen = ["ts_body_flips", "ts_resolution_change", "ts_rate_change", "ts_layout_change", "ts_jump_back",
              "ts_dts_back", "random_bytes"]  # fmt: skip
    files = {"healthy": encode(tmp_path / "healthy.ts", fmt="mpegts")} | {n: cases[n].path for n in chosen}
    ports = {name: free_udp_port() for name in files}
    broker = mqtt_broker()
    async with subscribe(broker.host, broker.port, "test/#") as got:
        proc = await start_streamer("run", *(f"{n}=udp://127.0.0.1:{p}" for n, p in ports.items()), "--mqtt",
                                    broker.url, "--prefix", "test", "--stats-interval", "1", "-q")  # fmt: skip
        async with asyncio.timeout(60):  # the analyzer is up (its own status), and so its listeners soon after
            while "online" not in [m.payload.decode() for m in got.on("test/status")]:
                got.arrived.clear()
                await got.arrived.wait()
        await asyncio.sleep(1.0)
        senders = [asyncio.to_thread(_send_udp, files[n], p, 12.0 if "change" in n else 6.0, 2)
                   for n, p in ports.items()]  # fmt: skip
        await asyncio.gather(*senders)
        await asyncio.sleep(2.0)
        assert proc.returncode is None  # still up
        proc.send_signal(signal.SIGTERM)
        async with asyncio.timeout(60):
            _, err_bytes = await proc.communicate()
    err = err_bytes.decode()
    assert proc.returncode == 4 and "Traceback" not in err, err[-4000:]  # 4: random_bytes never opened
    starts = [m.json() for m in got.on("test/healthy/events") if m.json()["type"] == "start"]
    assert len(starts) >= 1, err[-2000:]  # its beep and box, at least once of the two passes
    reached: dict[str, float] = {}
    for message in got.on("test/stats"):
        for stream, figures in message.json()["streams"].items():
            reached[stream] = max(reached.get(stream, 0.0), figures.get("media_t") or 0.0)
    for name in chosen[:-1]:
        assert "online" in [m.payload.decode() for m in got.on(f"test/{name}/status")], (name, err[-2000:])
        assert reached.get(name, 0.0) >= 3.0, (name, reached)
    assert "online" not in [m.payload.decode() for m in got.on("test/random_bytes/status")]
