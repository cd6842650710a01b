"""What a lost source means downstream, with real processes: an open event ends where the source was lost (its
end says so), and after the reconnect the stream starts afresh instead of comparing the new picture and sound
with those from before the outage."""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path
from typing import Any

from pipelines.config import EventOptions
from pipelines.stages.events import EventDetector, Scores

from .analyzer_run import start_streamer, subscribe
from .burst_clip import make_burst_clip


def test_the_detector_ends_an_open_event_as_source_lost_at_the_last_timestep() -> None:
    detector = EventDetector("cam", EventOptions(threshold=0.5), 0.5, 0.5)
    out = []
    for k in range(10):
        out += detector.update(Scores(t=k / 10, hop=0.1, score=0.9 if k >= 3 else 0.0, s_v=1.0, s_a=0.8))
    ends = [m.event for m in detector.flush("source lost") if hasattr(m, "event")]
    assert len(ends) == 1 and ends[0].reason == "source lost"
    assert ends[0].as_dict()["reason"] == "source lost" and ends[0].t == 1.0 and ends[0].duration == 0.7
    assert detector.flush("source lost") == []  # nothing open any more


async def test_an_event_open_when_the_camera_dies_ends_there_and_the_reconnect_starts_afresh(
    tmp_path: Path, rtsp_server: Any, mqtt_broker: Any
) -> None:
    clip = tmp_path / "cam.mkv"
    # a sound and a moving square from 8 s for 30 s: the event is open when the server is killed (it starts 8 s
    # in: the baselines' windows hold 8 s of quiet, so the activity is still unusual when the kill comes)
    make_burst_clip(clip, events="av@8", duration=46, scene={"length": "30"})
    server = rtsp_server(file=clip)
    broker = mqtt_broker()
    async with subscribe(broker.host, broker.port) as sub:
        proc = await start_streamer("run", f"cam={server.url}", "--mqtt", broker.url, "--prefix", "test",
                                    "--scores", "-q")  # fmt: skip
        await sub.wait_for("test/cam/events", within=60)  # the start, at 8 s
        await asyncio.sleep(2.0)
        server.kill()
        killed = time.monotonic()
        # another scene with another sound level, and no burst for 20 s: whatever fires right after the
        # reconnect comes from comparing it with the picture and sound from before the outage
        make_burst_clip(clip, events="av@20", duration=40, scene={"seed": "7", "noise_db": "-35"})
        async with asyncio.timeout(30):
            while not [e for e in sub.events("cam") if e["type"] == "end"]:
                sub.arrived.clear()
                await sub.arrived.wait()
        ended_after = time.monotonic() - killed
        await sub.wait_for("test/cam/status", "reconnecting", within=30)
        server.start()
        async with asyncio.timeout(60):
            while sub.payloads("test/cam/status").count("online") < 2:
                sub.arrived.clear()
                await sub.arrived.wait()
        await asyncio.sleep(4.0)  # 4 s of the new scene
        proc.send_signal(signal.SIGTERM)
        async with asyncio.timeout(20):
            assert await proc.wait() == 0
    events = sub.events("cam")
    start, end = events[0], events[1]
    assert start["type"] == "start" and end["type"] == "end" and end["id"] == start["id"]
    assert end["reason"] == "source lost"
    assert ended_after < 10  # it ended when the source was lost, not when (if ever) it came back
    scores = [m.json() for m in sub.on("test/cam/scores")]
    before = [s["t"] for s in scores if s["t"] < end["t"] + 1e-6]
    # at the last timestep: its end, or its start when that timestep was cut short by the kill (it then holds
    # neither a picture nor sound, so S fell there)
    assert max(before) - 1e-3 < end["t"] < max(before) + 0.1 + 1e-3, (end["t"], max(before))
    # the outage is not in the event: it lasted about as long as the stream was seen (2 s + up to the kill)
    assert end["duration"] < 6
    assert [e for e in events[2:] if e["type"] == "start"] == []  # no spurious event after the reconnect
    after = [s for s in scores if s["t"] > end["t"] + 1.0]
    assert after and max(max(s["s_v"] or 0.0, s["s_a"] or 0.0) for s in after) < 0.5  # null: absent
