"""Files decode fast and keep no pictures (issue 14): no deblocking in the analysis, snapshots decoded again in
full from the file, and a file's ingest process runs ahead of the analyzer."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest

from streamer.av_input import FileFrame, file_identity
from streamer.ingest import FILE_INBOX, INBOX, RESIDENT_LIMIT, IngestHub, IngestStream, Kept
from streamer.luma import luma_from_av
from streamer.media import AvFullFrame, VideoFrame
from streamer.options import SourceOptions
from streamer.packets import PacketFrame
from streamer.source import Source
from streamer.spec import parse_source
from streamer.sync import SyncOptions


def _textured_clip(path: Path, frames: int = 90, keyint: int = 60) -> Path:
    """Moving noise at a low bitrate, B-frames on: deblocking changes nearly every decoded picture."""
    rng = np.random.default_rng(7)
    texture = rng.integers(0, 256, (480, 640, 3), dtype=np.uint8)
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=30)
        stream.width, stream.height, stream.pix_fmt = 320, 240, "yuv420p"
        stream.options = {"crf": "38", "g": str(keyint), "bf": "2", "preset": "veryfast"}
        for i in range(frames):
            picture = texture[i % 200 : i % 200 + 240, 2 * i % 300 : 2 * i % 300 + 320]
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(picture), format="rgb24")
            frame.pts = i
            out.mux(stream.encode(frame))
        out.mux(stream.encode())
    return path


def _decode(path: Path, *, deblock: bool) -> dict[int, Any]:
    """Reference pictures, BGR, by pts."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        if not deblock:
            stream.codec_context.options = {"skip_loop_filter": "all"}
        return {f.pts: f for f in container.decode(stream)}


@pytest.mark.parametrize("suffix", ["mp4", "mkv", "ts"])
def test_a_files_frame_decoded_again_is_the_full_quality_picture(tmp_path: Path, suffix: str) -> None:
    """First frame, B-frames, the last before a key frame and the key frame itself: each equal to the normal
    decoder's picture, bit for bit. MPEG-TS seeks land a GOP late (it is not analyzed this way, see below): the
    frame is then decoded from the start, still exact."""
    clip = _textured_clip(tmp_path / f"t.{suffix}")
    reference = _decode(clip, deblock=True)
    spec, options = parse_source(str(clip)), SourceOptions()
    with av.open(str(clip)) as container:
        track = container.streams.video[0].index
    ordered = sorted(reference)
    identity = file_identity(spec)
    assert identity is not None
    for pts in (ordered[0], ordered[1], ordered[2], ordered[59], ordered[60], ordered[-1]):
        got = FileFrame(spec, options, track, pts, identity).to_bgr()
        assert np.array_equal(got, reference[pts].to_ndarray(format="bgr24")), pts


async def test_containers_without_exact_seeking_snapshot_from_their_own_packets(tmp_path: Path) -> None:
    """An MPEG-TS (or AVI) file's snapshots would be decoded again after an inexact seek: they are decoded again
    from the file's own packets since the key frame instead (streamer.packets, as a live stream's), so such a file
    too is analyzed without the deblocking filter and keeps no picture."""
    clip = _textured_clip(tmp_path / "t.ts")
    size = SourceOptions().luma_size
    reference = sorted(_decode(clip, deblock=True).items())
    fast = [luma_from_av(f, size) for _, f in sorted(_decode(clip, deblock=False).items())]
    frames = await _frames(clip, SourceOptions())
    assert all(isinstance(f.full, PacketFrame) and not f.full.resident for f in frames)
    assert all(np.array_equal(f.luma, y) for f, y in zip(frames, fast, strict=True))
    middle = frames[45].full
    assert middle is not None and np.array_equal(middle.to_bgr(), reference[45][1].to_ndarray(format="bgr24"))
    frames = await _frames(clip, SourceOptions(fast_decode=False))  # with the filter: its own pictures
    assert all(isinstance(f.full, AvFullFrame) and f.full.resident for f in frames)
    full = [luma_from_av(f, size) for _, f in reference]
    assert all(np.array_equal(f.luma, y) for f, y in zip(frames, full, strict=True))


async def _frames(clip: Path, options: SourceOptions) -> list[VideoFrame]:
    return [item async for item in Source(parse_source(f"t={clip}"), options) if isinstance(item, VideoFrame)]


async def test_files_are_analyzed_without_deblocking_and_snapshot_with_it(tmp_path: Path) -> None:
    """By default a file's analysis image comes from the decoder without its deblocking filter, and its frames
    keep no picture: the snapshot is the deblocked picture decoded again. ``fast_decode = false`` analyzes the
    deblocked pictures."""
    clip = _textured_clip(tmp_path / "t.mp4")
    size = SourceOptions().luma_size
    fast = {pts: luma_from_av(f, size) for pts, f in _decode(clip, deblock=False).items()}
    full = {pts: luma_from_av(f, size) for pts, f in _decode(clip, deblock=True).items()}
    ordered = sorted(full)
    assert sum(not np.array_equal(fast[p], full[p]) for p in ordered) > len(ordered) // 2  # the filter matters

    frames = await _frames(clip, SourceOptions())
    assert len(frames) == len(ordered)
    assert all(np.array_equal(f.luma, fast[p]) for f, p in zip(frames, ordered, strict=True))
    assert all(isinstance(f.full, FileFrame) and not f.full.resident for f in frames)
    middle = frames[45].full
    assert middle is not None
    assert np.array_equal(middle.to_bgr(), _decode(clip, deblock=True)[ordered[45]].to_ndarray(format="bgr24"))

    frames = await _frames(clip, SourceOptions(fast_decode=False))
    assert all(np.array_equal(f.luma, full[p]) for f, p in zip(frames, ordered, strict=True))


async def _queued_after(hub: IngestHub, stream_id: str, seconds: float) -> int:
    """Timesteps a stream's ingest process sent ahead while nothing consumed them."""
    await asyncio.sleep(seconds)
    remote = hub.remotes[stream_id]
    return sum(1 for message in list(remote._inbox._queue) if message[0] == "ts")  # type: ignore[attr-defined]


@pytest.mark.timeout(120)
async def test_a_file_runs_ahead_of_the_analyzer(tmp_path: Path) -> None:
    """With nothing consuming it, a file's ingest process sends far more than a live stream's inbox holds (it
    decodes on while the analyzer starts), up to FILE_INBOX timesteps."""
    from .media import make_clip

    clip = make_clip(tmp_path / "long.mp4", duration=32.0, flashes=[1.0])
    hub = IngestHub([IngestStream(parse_source(f"file={clip}"), SourceOptions(), SyncOptions())])
    try:
        await hub.start()
        queued = 0
        async with asyncio.timeout(60):
            while queued < FILE_INBOX - 1:  # and its "info"
                queued = await _queued_after(hub, "file", 0.2)
        assert queued > 4 * RESIDENT_LIMIT > INBOX
        steps = []
        async for ts in hub.remotes["file"]:
            steps.append(ts.k)
        assert steps == list(range(len(steps))) and len(steps) >= 315  # all of it, in order
    finally:
        await hub.close()


async def test_held_pictures_stop_a_file_until_scored() -> None:
    """A file's frames that hold their decoded picture (MPEG-TS, AVI, no timestamp) stop its ingest at
    RESIDENT_LIMIT of them until the analyzer has scored some; frames decoded again on demand do not count."""
    kept = Kept()
    spec = parse_source("f=/tmp/x.mp4")
    for k in range(3 * RESIDENT_LIMIT):
        kept.add(k, FileFrame(spec, SourceOptions(), 0, k, (0, 0)))
    await asyncio.wait_for(kept.room(), 1.0)
    kept = Kept()
    for k in range(RESIDENT_LIMIT):
        kept.add(k, AvFullFrame(None))
    waiting = asyncio.ensure_future(kept.room())
    await asyncio.sleep(0.05)
    assert not waiting.done()
    kept.release(-1)  # nothing scored yet
    await asyncio.sleep(0.05)
    assert not waiting.done()
    kept.release(0)
    await asyncio.wait_for(waiting, 1.0)
    assert sorted(kept.frames) == list(range(1, RESIDENT_LIMIT))


@pytest.mark.parametrize(("fps", "threads", "realtime"), [(10, None, False), (5, 16, False), (10, None, True)])
async def test_a_files_video_held_back_by_its_decoder_is_not_taken_for_missing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fps: int, threads: int | None, realtime: bool
) -> None:
    """The decoder's frame threads and B-frames hold a file's video back by a number of frames against the audio
    of the same stretch: half a second with FFmpeg's own 3 threads at 10 fps, 3.4 s with 16 threads (a machine
    of 15 cores or more) at 5 fps. Every timestep must still have its video (the sync skips a modality that
    lags by more than max_wait, 0.5 s: a stalled track, which a file's never is), paced or not."""
    import streamer.av_input
    from streamer.stream import Stream

    from .media import make_clip

    if threads is not None:
        monkeypatch.setattr(streamer.av_input, "frame_threads", lambda: threads)
    seconds = 3.0 if realtime else 8.0
    clip = make_clip(tmp_path / "av.mp4", duration=seconds, fps=fps, flashes=[2.0], beeps=[2.0])
    options = SourceOptions(realtime=realtime)
    steps = [ts async for ts in Stream(parse_source(f"c={clip}"), options)]
    assert len(steps) >= seconds * 10
    assert [ts.k for ts in steps if ts.video_missing or ts.audio_missing] == []


def test_a_file_replaced_since_it_was_analyzed_gives_no_snapshot(tmp_path: Path) -> None:
    """A rotating recorder or a watch folder may put another file under the same name: its frame at that
    timestamp is not the one analyzed."""
    from streamer.errors import DecodeError

    clip = _textured_clip(tmp_path / "t.mp4", frames=30)
    spec = parse_source(str(clip))
    identity = file_identity(spec)
    assert identity is not None
    frame = FileFrame(spec, SourceOptions(), 0, 0, identity)
    assert frame.to_bgr().shape == (240, 320, 3)
    other = _textured_clip(tmp_path / "other.mp4", frames=30)
    other.replace(clip)
    with pytest.raises(DecodeError, match="replaced or gone since it was analyzed"):
        frame.to_bgr()
    assert file_identity(parse_source(str(tmp_path))) is None  # a directory, like a FIFO, is not a regular file
