"""Against a real RTSP server (GStreamer's gst-rtsp-server, H.264 + Opus): probe, kill, restart, resume."""

from __future__ import annotations

import asyncio
import itertools
import json
import subprocess
import sys
import threading
from collections.abc import Callable
from typing import Literal

import pytest

from streamer.media import SourceState, StateChange, Timestep
from streamer.options import SourceOptions
from streamer.spec import parse_source
from streamer.stream import Stream

from .conftest import RtspServers
from .helpers import collect

pytestmark = pytest.mark.rtsp


def test_probe_describes_and_times_a_live_stream(rtsp_server: RtspServers) -> None:
    server = rtsp_server()
    cmd = [sys.executable, "-m", "pipelines.cli.main", "probe", server.url, "--timeline", "--seconds", "3"]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    info, steps = lines[0], lines[1:]
    assert info["live"] and info["kind"] == "network" and info["uri"] == server.url
    assert info["video"]["codec"] == "h264" and (info["video"]["width"], info["video"]["height"]) == (
        320,
        240,
    )
    assert info["audio"]["codec"] == "opus" and info["audio"]["sample_rate"] == 48000
    assert [s["k"] for s in steps] == list(range(steps[0]["k"], steps[0]["k"] + len(steps)))
    assert 25 <= len(steps) <= 30
    # video starts at the first key frame (one a second here): until then its timesteps say so
    assert all(s["frames"] == 0 and s["luma"] is None for s in steps if s["frames"] == 0)
    assert all(s["frames"] >= 1 and s["samples"] == 1600 for s in steps[12:])


async def wait_for(condition: Callable[[], bool], seconds: float, what: str) -> None:
    """Poll ``condition`` (state the test reads, not an event anyone sets) until true, for ``seconds``."""
    deadline = asyncio.get_running_loop().time() + seconds
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


async def test_killed_server_reconnects_and_the_timeline_goes_on(rtsp_server: RtspServers) -> None:
    server = rtsp_server()
    states: list[StateChange] = []
    options = SourceOptions(backoff_initial=0.2, backoff_max=1.0, stall_timeout=3.0)
    stream = Stream(parse_source(f"cam={server.url}"), options, on_state=states.append)
    steps: list[Timestep] = []

    def seen(state: SourceState) -> int:
        return sum(change.state is state for change in states)

    def complete(since: int) -> int:
        """Timesteps from index ``since`` on that carry both video and audio."""
        return sum(not (ts.video_missing or ts.audio_missing) for ts in steps[since:])

    consumer = asyncio.create_task(collect(stream, into=steps), name="consume-cam")
    try:
        await wait_for(lambda: complete(0) >= 10, 20, "timesteps before the kill")
        await asyncio.to_thread(server.kill)
        await wait_for(lambda: seen(SourceState.RECONNECTING) >= 1, 15, "reconnecting after the kill")
        before = len(steps)
        await asyncio.sleep(2.0)  # the server stays down for a while: retries fail and back off
        await asyncio.to_thread(server.start)
        await wait_for(lambda: seen(SourceState.ONLINE) >= 2, 20, "online again after the restart")
        await wait_for(lambda: complete(before) >= 10, 20, "timesteps after the restart")
    finally:
        consumer.cancel()
        await asyncio.gather(consumer, return_exceptions=True)

    assert [c.state for c in states][:2] == [SourceState.CONNECTING, SourceState.ONLINE]
    assert all(c.retry_in is not None and c.retry_in > 0 for c in states if c.state is SourceState.RECONNECTING)
    assert "hunter" not in repr(states)
    ks = [ts.k for ts in steps]
    assert ks == sorted(set(ks)), "timesteps must stay unique and in order across the reconnect"
    frame_times = [f.t for ts in steps if not ts.video_repeated for f in ts.frames]
    assert frame_times == sorted(frame_times), "media time must never go backwards"
    # The outage (> 2 s) shows as a gap. Less than its length: a live source's media time runs up to the
    # ~1 s its server had buffered ahead of the wall clock, and the reconnect resumes at elapsed wall time.
    gap = max(b - a for a, b in itertools.pairwise(ks))
    assert gap >= 5, "the outage shows as a gap in the timeline"


async def test_stalled_server_is_detected_and_reconnected(rtsp_server: RtspServers) -> None:
    server = rtsp_server()
    states: list[StateChange] = []
    options = SourceOptions(backoff_initial=0.2, backoff_max=1.0, stall_timeout=1.0, open_timeout=2.0)
    stream = Stream(parse_source(server.url), options, on_state=states.append)
    steps: list[Timestep] = []

    consumer = asyncio.create_task(collect(stream, into=steps), name="consume-stalled")
    try:
        await wait_for(lambda: any(not ts.video_missing for ts in steps), 20, "video before the stall")
        server.pause()
        await wait_for(lambda: any(c.state is SourceState.RECONNECTING for c in states), 15, "stall detected")
        server.resume()
        resumed = len(steps)
        await wait_for(lambda: sum(not ts.video_missing for ts in steps[resumed:]) >= 5, 30, "video after")
    finally:
        server.resume()
        consumer.cancel()
        await asyncio.gather(consumer, return_exceptions=True)
    stall = next(c for c in states if c.state is SourceState.RECONNECTING)
    assert "stalled" in stall.detail or "timed out" in stall.detail
    assert [c.state for c in states][-1] is SourceState.ONLINE
    ks = [ts.k for ts in steps]
    assert ks == sorted(set(ks))


@pytest.mark.parametrize("transport", ["tcp", "udp"])
async def test_a_stalled_connections_capture_thread_ends_while_the_server_stays_stalled(
    rtsp_server: RtspServers, transport: Literal["tcp", "udp"]
) -> None:
    """RTSP is read without PyAV's read timeout (it takes the interpreter lock on every socket read): FFmpeg's
    own socket timeout must end the stalled connection's thread, or every stall would leave one behind for good."""
    server = rtsp_server()
    states: list[StateChange] = []
    options = SourceOptions(
        rtsp_transport=transport, backoff_initial=0.2, backoff_max=1.0, stall_timeout=1.0, open_timeout=2.0
    )
    stream = Stream(parse_source(f"stalls={server.url}"), options, on_state=states.append)
    steps: list[Timestep] = []

    consumer = asyncio.create_task(collect(stream, into=steps), name="consume-stalls")
    try:
        await wait_for(lambda: any(not ts.video_missing for ts in steps), 20, "video before the stall")
        (stalled,) = [t for t in threading.enumerate() if t.name == "capture-stalls"]
        server.pause()
        await wait_for(lambda: any(c.state is SourceState.RECONNECTING for c in states), 15, "stall detected")
        # FFmpeg's timeout is max(open_timeout, stall_timeout) = 2 s; it gives up after one to two of them
        await wait_for(lambda: not stalled.is_alive(), 15, "the stalled connection's thread to end")
        assert server.running, "the server was still stalled"
    finally:
        server.resume()
        consumer.cancel()
        await asyncio.gather(consumer, return_exceptions=True)
