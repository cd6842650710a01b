"""Event clips (``--clips DIR``): each event's own compressed video and audio from its pre-roll to its post-roll,
remuxed, over RTSP (a real server and mosquitto) and from a file; retention; a folder that cannot be written."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest

from pipelines.config import ClipsConfig
from pipelines.outputs.clips import ClipKeeper
from tests.analyzer_run import read_events, run_streamer, start_streamer, subscribe
from tests.media import make_clip

IMPULSES = (4.0, 9.0, 14.0)  # a white frame and a beep together, media seconds
FRAME = 1 / 30


def impulse_clip(path: Path, duration: float = 18.0) -> Path:
    return make_clip(path, duration=duration, flashes=IMPULSES, beeps=IMPULSES, audio_codec="libopus",
                     bframes=False, keyint=30)  # fmt: skip


def onsets(path: Path) -> tuple[list[float], list[float], dict[str, float]]:
    """The clip's white frames' and beeps' onsets (seconds from its start) and each track's span."""
    whites: list[float] = []
    beeps: list[float] = []
    spans: dict[str, float] = {}
    with av.open(str(path)) as clip:
        assert {s.type for s in clip.streams} == {"video", "audio"}
        for s in clip.streams:
            assert s.duration is not None
            spans[s.type] = float(s.duration * s.time_base)
        was_white = False
        for frame in clip.decode(video=0):
            white = float(frame.to_ndarray(format="gray").mean()) > 150
            if white and not was_white:
                whites.append(float(frame.time))
            was_white = white
    with av.open(str(path)) as clip:
        loud = False
        for frame in clip.decode(audio=0):
            samples = frame.to_ndarray()
            level = np.abs(samples).reshape(samples.shape[0], -1).max(axis=0)
            hot = np.flatnonzero(level > 0.1)
            if hot.size and not loud:
                beeps.append(float(frame.time) + hot[0] / frame.sample_rate)
            loud = bool(hot.size) and hot[-1] > level.size - frame.sample_rate // 100
    return whites, beeps, spans


def check_clip(path: Path, event: dict[str, Any], pre: float, post: float, *, start: float, shared: bool,
               media_end: float = 1e9) -> None:  # fmt: skip
    """The clip (asked from media time ``start``; ``shared``: other events are in it too) decodes, holds both
    tracks over [event start - pre, event end + post] (up to ``media_end``, where the stream stopped), no longer
    than that plus a GOP when it is the event's own, and its picture and sound of each impulse come within a
    frame of each other."""
    whites, beeps, spans = onsets(path)
    first, last = max(0.0, event["start_t"] - pre), min(event["t"] + post, media_end)
    assert start <= first + 0.01, (start, event)
    assert spans["video"] >= last - start - 0.15, (spans, start, event)
    if not shared:
        assert spans["video"] <= last - first + 1.0 + 0.15, (spans, event)
    assert abs(spans["audio"] - spans["video"]) < 0.15, spans
    assert whites, f"no impulse seen in {path.name}"
    assert len(whites) == len(beeps), (whites, beeps)
    for white, beep in zip(whites, beeps, strict=True):
        assert abs(white - beep) <= FRAME + 0.005, (whites, beeps)


async def test_live_clips_over_rtsp_with_mqtt(tmp_path: Path, rtsp_server: Any, mqtt_broker: Any) -> None:
    server = rtsp_server(file=impulse_clip(tmp_path / "impulses.mkv"))
    broker = mqtt_broker()
    folder = tmp_path / "clips"
    async with subscribe(broker.host, broker.port) as sub:
        code, _, stderr = await run_streamer(
            f"door={server.url}", "--mqtt", broker.url, "--prefix", "test", "--clips", str(folder),
            "--clip-pre-roll", "1", "--clip-post-roll", "1", "--duration", "17", "-q", within=120,
        )  # fmt: skip
        assert code == 0, stderr
        ends = [e for e in sub.events("door") if e["type"] == "end"]
        assert len(ends) >= 2, sub.events("door")
        async with asyncio.timeout(30):  # each ended event's clip is told
            while len(sub.on("test/door/clip")) < len(ends):
                sub.arrived.clear()
                await sub.arrived.wait()
        clips = {m.json()["id"]: m.json() for m in sub.on("test/door/clip")}
    for end in ends:
        clip = clips[end["id"]]  # every ended event's clip was written and told
        assert clip["path"] == end["clip"]["path"] and clip["bytes"] == (folder / clip["path"]).stat().st_size
        assert clip["start"] <= max(0.0, end["start_t"] - 1.0) + 0.01 and clip["end"] >= end["t"] + 1.0 - 0.1
        shared = sum(c["path"] == clip["path"] for c in clips.values()) > 1
        check_clip(folder / clip["path"], end, 1.0, 1.0, start=end["clip"]["start"], shared=shared,
                   media_end=clip["end"] + FRAME)  # fmt: skip
    assert not list(folder.rglob("*.part"))


async def test_file_clips(tmp_path: Path) -> None:
    source = impulse_clip(tmp_path / "door.mp4")
    folder, out = tmp_path / "clips", tmp_path / "events.jsonl"
    code, _, stderr = await run_streamer(f"door={source}", "--mqtt", "none", "--events-out", str(out), "--clips",
                                         str(folder), "-q")  # fmt: skip
    assert code == 0, stderr
    ends = [e for e in read_events(out) if e["type"] == "end"]
    assert len(ends) == len(IMPULSES), read_events(out)
    paths = [end["clip"]["path"] for end in ends]
    for end in ends:  # the defaults: 5 s before and after
        check_clip(folder / end["clip"]["path"], end, 5.0, 5.0, start=end["clip"]["start"],
                   shared=paths.count(end["clip"]["path"]) > 1, media_end=18.0)  # fmt: skip
    # impulses 5 s apart with 5 s of post- and pre-roll: one clip holds them all
    assert len(set(paths)) == 1 and len(list(folder.rglob("*.mp4"))) == 1


async def test_events_apart_get_clips_of_their_own(tmp_path: Path) -> None:
    source = impulse_clip(tmp_path / "door.mp4")
    folder, out = tmp_path / "clips", tmp_path / "events.jsonl"
    code, _, stderr = await run_streamer(f"door={source}", "--mqtt", "none", "--events-out", str(out), "--clips",
                                         str(folder), "--clip-pre-roll", "1", "--clip-post-roll", "1",
                                         "-q")  # fmt: skip
    assert code == 0, stderr
    ends = [e for e in read_events(out) if e["type"] == "end"]
    assert len({end["clip"]["path"] for end in ends}) == len(ends) == len(IMPULSES)
    for end in ends:
        check_clip(folder / end["clip"]["path"], end, 1.0, 1.0, start=end["clip"]["start"], shared=False,
                   media_end=18.0)  # fmt: skip


async def test_a_clips_folder_that_cannot_be_written_is_one_line_and_events_go_on(tmp_path: Path) -> None:
    source = impulse_clip(tmp_path / "door.mp4")
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    out = tmp_path / "events.jsonl"
    proc = await start_streamer("run", f"door={source}", "--mqtt", "none", "--events-out", str(out), "--clips",
                                str(blocker / "clips"), "-q")  # fmt: skip
    _, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()
    lines = [line for line in err.decode().splitlines() if "no clip" in line]
    assert len(lines) == 1 and "stream 'door'" in lines[0], err.decode()
    assert len([e for e in read_events(out) if e["type"] == "end"]) == len(IMPULSES)


def test_retention_deletes_the_oldest_past_the_size_and_anything_past_the_age(tmp_path: Path) -> None:
    folder = tmp_path / "clips"
    (folder / "a").mkdir(parents=True)
    (folder / "b").mkdir()
    now = time.time()
    made = []
    for i, (stream, age_s) in enumerate([("a", 9 * 86400), ("a", 500), ("b", 400), ("a", 300), ("b", 200)]):
        path = folder / stream / f"{i}.mp4"
        path.write_bytes(b"x" * 400_000)
        os.utime(path, (now - age_s, now - age_s))
        made.append(path)
    other = folder / "notes.txt"
    other.write_bytes(b"y" * 5_000_000)  # not a clip: never counted, never deleted
    part = folder / "b" / "5.mp4.part"
    part.write_bytes(b"z" * 400_000)  # being written
    left = folder / "a" / "6.mp4.part"
    left.write_bytes(b"z" * 10)
    os.utime(left, (now - 2 * 86400, now - 2 * 86400))  # its writer was killed two days ago
    keeper = ClipKeeper(ClipsConfig(folder=folder, max_size=1.0, max_age=7.0), spawn=None, told=None)  # type: ignore[arg-type]
    assert keeper.retain() == 3
    assert [p.exists() for p in made] == [False, False, False, True, True]
    assert other.exists() and part.exists() and not left.exists()


@pytest.mark.parametrize("codecs, suffix", [(("h264", "aac"), ".mp4"), (("h264", "opus"), ".mp4"),
                                            (("h264", "pcm_mulaw"), ".mkv"), (("mjpeg",), ".mkv")])  # fmt: skip
def test_the_container_holds_the_codecs(codecs: tuple[str, ...], suffix: str) -> None:
    from streamer.clips import container_suffix

    assert container_suffix(*codecs) == suffix


async def test_the_web_view_serves_an_events_clip_with_ranges(tmp_path: Path) -> None:
    import aiohttp

    source = impulse_clip(tmp_path / "door.mp4")
    proc = await start_streamer("run", f"door={source}", "--realtime", "--mqtt", "none", "--clips",
                                str(tmp_path / "clips"), "--clip-post-roll", "1", "--ui", "127.0.0.1:0",
                                "--metrics", "127.0.0.1:0")  # fmt: skip
    assert proc.stderr is not None
    urls: dict[str, str] = {}
    async with asyncio.timeout(60):
        while len(urls) < 2:
            line = (await proc.stderr.readline()).decode()
            assert line, "the analyzer ended before its endpoints started"
            for name in ("live view", "metrics"):
                if f"{name} at " in line:
                    urls[name] = line.split(f"{name} at ")[1].strip().rstrip("/")
    url = urls["live view"]
    try:
        async with aiohttp.ClientSession() as http:
            for _ in range(200):  # the first event's clip: written 1 s after its end
                state = await (await http.get(f"{url}/api/state")).json()
                if state["clips"]:
                    break
                await asyncio.sleep(0.3)
            event = state["clips"][0]
            whole = await http.get(f"{url}/api/clip/{event}")
            assert whole.status == 200 and whole.headers["Content-Type"] == "video/mp4"
            body = await whole.read()
            part = await http.get(f"{url}/api/clip/{event}", headers={"Range": "bytes=100-199"})
            assert part.status == 206 and await part.read() == body[100:200]
            for wrong in ("0" * 32, "..%2F..%2Fdoor.mp4", "%2E%2E"):
                assert (await http.get(f"{url}/api/clip/{wrong}")).status == 404
            assert (await http.post(f"{url}/api/clip/{event}")).status == 405
            scraped = await (await http.get(urls["metrics"])).text()
            written = [line for line in scraped.splitlines() if line.startswith('streamer_clips_total{stream="door"}')]
            assert written and float(written[0].split()[-1]) >= 1, scraped
            assert 'streamer_clip_failures_total{stream="door"} 0.0' in scraped
    finally:
        proc.terminate()
        await proc.wait()


def test_a_clip_of_a_file_read_to_its_end_ahead_of_the_analysis_ends_where_its_event_does(tmp_path: Path) -> None:
    """The capture reaches the end of a file long before the analysis ends the event: the clip still ends at
    the end it is told (it ran to the end of the file)."""
    from streamer.clips import ClipInfo, PacketRing, wait_for_writers

    source = impulse_clip(tmp_path / "door.mp4")
    ring = PacketRing("door", keep=40.0)
    done: list[ClipInfo | str] = []
    with av.open(str(source)) as container:
        video, audio = container.streams.video[0], container.streams.audio[0]
        ring.open_session(video, audio)
        ring.learn(True, 0.0, 0.0)
        ring.learn(False, 0.0, 0.0)
        begun = False
        for packet in container.demux(video, audio):
            ring.add(packet, packet.stream is video)
            if not begun and packet.dts is not None and float(packet.dts * packet.time_base) > 3.0:
                ring.begin("event", 2.0, str(tmp_path / "clips" / "event"), done.append)
                begun = True
    ring.close_session()  # the end of the file, before the analysis has ended the event
    ring.progress(3.0)
    ring.end("event", 6.0)
    assert wait_for_writers(10.0) == 0
    (clip,) = done
    assert isinstance(clip, ClipInfo), clip
    assert clip.start <= 2.0 and 6.0 - 0.1 <= clip.end <= 6.0 + 0.1, clip


async def test_an_event_open_when_its_stream_stops_gets_its_clip_to_the_last_packet(tmp_path: Path) -> None:
    source = make_clip(tmp_path / "door.mp4", duration=10.0, beeps=(8.5,), beep_len=1.5, audio_codec="libopus",
                       bframes=False, keyint=30)  # fmt: skip
    folder, out = tmp_path / "clips", tmp_path / "events.jsonl"
    code, _, stderr = await run_streamer(f"door={source}", "--mqtt", "none", "--events-out", str(out), "--clips",
                                         str(folder), "--clip-pre-roll", "2", "-q")  # fmt: skip
    assert code == 0, stderr
    (end,) = [e for e in read_events(out) if e["type"] == "end"]
    assert end["reason"] == "stream ended"
    with av.open(str(folder / end["clip"]["path"])) as clip:
        video = clip.streams.video[0]
        assert video.duration is not None
        span = float(video.duration * video.time_base)
    assert 10.0 - 6.5 - 0.15 <= span <= 10.0 - 6.5 + 1.0 + 0.15  # from the key frame before 6.5 s to the end
