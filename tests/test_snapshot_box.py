"""Events say where (issue 29): the snapshot of an event with a box has it drawn as a red rectangle, whichever way
its picture is kept (a camera's array, a file's frame decoded again, an ingest process's picture, in-process or
across the process boundary); a sound-only event's snapshot has none."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from pipelines.config import AnalyzerConfig
from pipelines.outputs.observers import Observer
from pipelines.stages.events import Ended, Event, Peak
from pipelines.stages.outbox import Outbox
from pipelines.stages.publishing import Hooks, Publishing
from pipelines.stages.stats import PipelineStats
from pipelines.stages.topics import Topics
from streamer.av_input import FileFrame
from streamer.ingest import IngestHub, IngestStream, KeptFrame, RemoteStream
from streamer.media import ArrayFullFrame, AvFullFrame, Box, VideoFrame
from streamer.options import SourceOptions
from streamer.snapshot import box_pixels, box_thickness, encode_full
from streamer.spec import parse_source
from streamer.stream import Stream
from streamer.sync import SyncOptions

from .analyzer_run import retained, run_streamer, subscribe
from .boxes import check_drawn, check_plain
from .media import make_clip

BOX: Box = (0.1, 0.15, 0.6, 0.7)


def _picture(height: int = 240, width: int = 320) -> npt.NDArray[np.uint8]:
    rng = np.random.default_rng(3)
    return np.clip(110 + rng.integers(-25, 25, (height, width, 3)), 0, 255).astype(np.uint8)


@pytest.mark.parametrize(("height", "width"), [(240, 320), (720, 1280), (1080, 1920)])
def test_the_box_is_drawn_on_the_picture_and_a_sound_only_snapshot_has_none(height: int, width: int) -> None:
    image = _picture(height, width)
    before = image.copy()
    full = ArrayFullFrame(image)
    check_drawn(encode_full(full, box=BOX), BOX)
    assert np.array_equal(image, before)  # a camera's own frame is drawn on a copy
    check_plain(encode_full(full))
    assert box_thickness(height, width) == {240: 2, 720: 3, 1080: 3}[height]
    for box in [(0.0, 0.0, 1.0, 1.0), (0.5, 0.5, 0.5625, 0.5556)]:  # the whole picture; one cell of a 16x9 grid
        check_drawn(encode_full(full, box=box), box)


async def _frames(stream: Stream, count: int) -> list[VideoFrame]:
    frames = []
    async for ts in stream:
        frames += [f for f in ts.frames if f.full is not None]
        if len(frames) >= count:
            break
    return frames


async def test_a_files_frame_decoded_again_has_the_box(tmp_path: Path) -> None:
    """An MP4's frames keep no picture: the snapshot decodes it again from the file, then draws the box."""
    clip = make_clip(tmp_path / "c.mp4", duration=2.0, flashes=[1.0])
    stream = Stream(parse_source(f"c={clip}"), SourceOptions(), SyncOptions())
    frame = (await _frames(stream, 5))[-1]
    assert isinstance(frame.full, FileFrame)
    check_drawn(await stream.snapshot(frame, BOX), BOX)
    check_plain(await stream.snapshot(frame))


@contextlib.asynccontextmanager
async def kept_by_an_ingest_process(clip: Path) -> AsyncIterator[tuple[RemoteStream, dict[int, VideoFrame]]]:
    """The clip's stream in an ingest process, and the frames of its first 20 timesteps whose picture it keeps."""
    hub = IngestHub([IngestStream(parse_source(f"c={clip}"), SourceOptions(), SyncOptions())])
    await hub.start()
    try:
        remote = hub.remotes["c"]
        kept: dict[int, VideoFrame] = {}
        async for ts in remote:
            kept[ts.k] = next(f for f in ts.frames if f.full is not None)
            if len(kept) == 20:
                break
        yield remote, kept
    finally:
        await hub.close()


@pytest.mark.parametrize("suffix", [".mp4", ".ts"])
async def test_the_box_crosses_to_the_ingest_process_that_encodes_the_snapshot(tmp_path: Path, suffix: str) -> None:
    """The ingest process keeps the picture (an MPEG-TS frame's decoded picture, an MP4's decoded again there):
    the box travels with the request and is drawn there; the pinned frame and one still kept alike."""
    clip = make_clip(tmp_path / f"c{suffix}", duration=3.0, flashes=[1.0])
    async with kept_by_an_ingest_process(clip) as (remote, kept):
        assert all(isinstance(f.full, KeptFrame) for f in kept.values())
        remote.pin(kept[10])
        remote.scored(15)
        pinned, still, plain = await asyncio.gather(
            remote.snapshot(kept[10], BOX), remote.snapshot(kept[18], (0.5, 0.0, 1.0, 0.5)), remote.snapshot(kept[19])
        )
        check_drawn(pinned, BOX)
        check_drawn(still, (0.5, 0.0, 1.0, 0.5))
        check_plain(plain)


async def test_a_snapshot_asked_before_the_next_pin_gets_its_picture(tmp_path: Path) -> None:
    """An event ends and the next one's peak is pinned in the same batch (a file, a source faster than real time):
    the ingest process keeps one pinned picture, so the snapshot is asked for at once, before that pin."""
    clip = make_clip(tmp_path / "c.mp4", duration=3.0, flashes=[1.0])
    async with kept_by_an_ingest_process(clip) as (remote, kept):
        remote.pin(kept[5])
        remote.scored(19)
        snapshot = remote.snapshot(kept[5], BOX)  # the first event's end
        remote.pin(kept[12])  # the next event's peak
        check_drawn(await snapshot, BOX)


class _Snapshots(Observer):
    wants_snapshots = True

    def __init__(self) -> None:
        self.jpegs: list[bytes] = []

    def snapshot(self, stream_id: str, jpeg: bytes) -> None:
        self.jpegs.append(jpeg)


def _end(n: int, box: Box | None, zone: str | None = None) -> Event:
    return Event(type="end", id=f"e{n}", stream="cam", t=2.0, wall_time=0.0, score=0.9, s_v=0.9 if box else 0.0,
                 s_a=0.8, alpha=0.5, beta=0.5, start_t=1.0, duration=1.0, peak=Peak(1.5, 0.9, 0.9, 0.8), box=box,
                 peak_box=box, zone=zone)  # fmt: skip


def _publishing() -> tuple[Publishing, _Snapshots, list[asyncio.Task[None]]]:
    """The analyzer's publishing with snapshots on and no broker: the snapshots it publishes reach the observer;
    the tasks it spawns for them are listed, for a test to await."""
    tasks: list[asyncio.Task[None]] = []

    def spawn(coro: Any, name: str) -> asyncio.Task[None]:
        tasks.append(asyncio.get_running_loop().create_task(coro, name=name))
        return tasks[-1]

    observer = _Snapshots()
    publishing = Publishing(AnalyzerConfig(streams=()), Topics("t"), Outbox(16), PipelineStats("cpu"), broker=False,
                            observers=observer, hooks=Hooks(), snapshots=True, spawn=spawn)  # fmt: skip
    return publishing, observer, tasks


async def test_an_ended_events_peak_box_reaches_its_snapshot(tmp_path: Path) -> None:
    """Through the analyzer's publishing: the peak box of the end is drawn; a sound-only end has none; a zone's
    event takes no snapshot (the stream's own events do)."""
    image = _picture()
    frame = VideoFrame(1.5, np.zeros((90, 160), np.uint8), ArrayFullFrame(image))
    publishing, observer, tasks = _publishing()
    stream = Stream(parse_source("cam=synthetic:"), SourceOptions(), SyncOptions())
    rt: Any = SimpleNamespace(stream_id="cam", stream=stream, snapshots=set())
    for n, (box, zone) in enumerate([(BOX, None), (None, None), (BOX, "door")]):
        publishing.events(rt, [Ended(_end(n, box, zone), frame)])
        await asyncio.gather(*tasks)
    assert len(observer.jpegs) == 2
    check_drawn(observer.jpegs[0], BOX)
    check_plain(observer.jpegs[1])


def test_a_decoded_frame_kept_for_its_snapshot_has_the_box() -> None:
    """A decoded frame kept for its snapshot (where its packets are not: hardware decoding, ``fast_decode`` off);
    asked again without a box (another event's), it has none."""
    import av

    frame = av.VideoFrame.from_ndarray(_picture(), format="bgr24")
    full = AvFullFrame(frame)
    check_drawn(encode_full(full, box=BOX), BOX)
    check_plain(encode_full(full))


@pytest.mark.parametrize(("source", "ingest"), [("file", "process"), ("file", "thread"), ("synthetic", "process")])
async def test_the_last_events_snapshot_has_its_peak_box_drawn_end_to_end(
    tmp_path: Path, mqtt_broker: Any, source: str, ingest: str
) -> None:
    """``streamer run`` with a broker and two streams, the moving square with a tone at 4 s, then the square alone
    (``seen``) or the tone alone (``heard``) at 7 s: the retained snapshot of each, its last event's, has that
    end's peak box drawn, or none for the tone. A file's snapshot is its frame decoded again (in the ingest
    process, or in the analyzer's with ``--ingest thread``); the synthetic camera's picture is kept and encoded
    in its ingest process."""
    from .burst_clip import make_burst_clip

    specs = []
    for name, events in (("seen", "av@4,v@7"), ("heard", "av@4,a@7")):
        if source == "file":
            specs.append(f"{name}={make_burst_clip(tmp_path / f'{name}.mp4', events=events, duration=10.0)}")
        else:
            specs.append(f"{name}=synthetic:?events={events}&realtime=0&duration=10")
    config = tmp_path / "streamer.toml"
    config.write_text(f'ingest = "{ingest}"\n')
    broker = mqtt_broker()
    async with subscribe(broker.host, broker.port) as sub:
        code, _, stderr = await run_streamer(*specs, "--config", str(config), "--mqtt", broker.url, "--prefix",
                                             "test", "-q")  # fmt: skip
        assert code == 0, stderr
        await sub.wait_for("test/status", "offline", within=10)
    kept = await retained(broker.host, broker.port)
    ends = {name: [e for e in sub.events(name) if e["type"] == "end"] for name in ("seen", "heard")}
    assert [len(e) for e in ends.values()] == [2, 2], ends
    assert all(e[0]["peak"]["box"] is not None for e in ends.values()), ends  # the square and tone at 2 s
    assert ends["heard"][1]["peak"]["box"] is None, ends
    check_drawn(kept["test/seen/snapshot"], tuple(ends["seen"][1]["peak"]["box"]))
    check_plain(kept["test/heard/snapshot"])


async def test_a_later_events_snapshot_is_not_replaced_by_an_earlier_one_finishing_after_it() -> None:
    """Two events end close together (a file, a source faster than real time): their snapshots are encoded at
    once, and the earlier event's may finish last; the stream's last snapshot is still the later event's."""
    answers: list[asyncio.Future[bytes | None]] = []

    class Stream:
        def snapshot(self, frame: VideoFrame, box: Box | None = None) -> asyncio.Future[bytes | None]:
            answers.append(asyncio.get_running_loop().create_future())
            return answers[-1]

    publishing, observer, tasks = _publishing()
    rt: Any = SimpleNamespace(stream_id="cam", stream=Stream(), snapshots=set())
    frame = VideoFrame(1.5, np.zeros((90, 160), np.uint8), ArrayFullFrame(_picture()))
    publishing.events(rt, [Ended(_end(1, BOX), frame)])
    publishing.events(rt, [Ended(_end(2, None), frame)])
    answers[1].set_result(b"second")
    await asyncio.sleep(0)
    answers[0].set_result(b"first")
    await asyncio.gather(*tasks)
    assert observer.jpegs == [b"second"]
    publishing.events(rt, [Ended(_end(3, None), frame)])
    answers[2].set_result(b"third")
    await asyncio.gather(*tasks)
    assert observer.jpegs == [b"second", b"third"]


@pytest.mark.parametrize(("height", "width"), [(180, 320), (360, 640), (480, 640), (720, 1280), (1080, 1920)])
def test_a_published_box_gives_the_pixels_drawn(height: int, width: int) -> None:
    """Events publish boxes rounded to 4 decimals: read back, each cell box of the 16x9 grid covers the pixels
    the snapshot's rectangle was drawn on (1/9 is 0.1111: 19.998 pixels of 180 is still pixel 20)."""
    for x0, y0, x1, y1 in [(1, 1, 2, 2), (0, 0, 16, 9), (5, 2, 9, 7), (15, 8, 16, 9)]:
        exact = (x0 / 16, y0 / 9, x1 / 16, y1 / 9)
        published = tuple(round(v, 4) for v in exact)
        assert box_pixels(published, height, width) == box_pixels(exact, height, width)  # type: ignore[arg-type]
