"""Files the tests encode with PyAV: A/V sync across containers and codecs, odd timing, bad input."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest

from streamer.errors import DecodeError, SourceOpenError
from streamer.media import Timestep
from streamer.options import SourceOptions
from streamer.spec import parse_source
from streamer.stream import Stream

from .helpers import brightest, collect, loudest
from .media import make_clip, make_random_bytes, truncate


def analyze(path: Path, **options: object) -> list[Timestep]:
    return asyncio.run(collect(Stream(parse_source(str(path)), SourceOptions(**options))))  # type: ignore[arg-type]


def assert_timeline(steps: list[Timestep]) -> None:
    ks = [ts.k for ts in steps]
    assert ks == sorted(set(ks)), "timesteps must be unique and in order"
    times = [f.t for ts in steps for f in ts.frames if not ts.video_repeated]
    assert times == sorted(times), "frame times must never go backwards"


@pytest.mark.parametrize(
    ("suffix", "audio_codec"),
    [(".mp4", "aac"), (".mkv", "aac"), (".ts", "aac"), (".mkv", "libopus"), (".ts", "libopus"), (".mp4", "libopus")],
)
def test_flash_and_beep_at_the_same_time_land_in_the_same_timestep(
    tmp_path: Path, suffix: str, audio_codec: str
) -> None:
    clip = make_clip(tmp_path / f"sync{suffix}", duration=4.0, audio_codec=audio_codec, flashes=[2.0], beeps=[2.0])
    steps = analyze(clip)
    assert_timeline(steps)
    assert steps[0].k == 0 and len(steps) >= 39
    assert brightest(steps) == loudest(steps) == 20


def test_audio_delayed_by_500_ms_lands_five_timesteps_later(tmp_path: Path) -> None:
    clip = make_clip(tmp_path / "late.mkv", duration=4.0, flashes=[1.5], beeps=[1.5], audio_offset=0.5)
    steps = analyze(clip)
    assert_timeline(steps)
    assert (brightest(steps), loudest(steps)) == (15, 20)
    assert all(ts.audio_missing for ts in steps[:5]) and not any(ts.audio_missing for ts in steps[5:39])


def test_variable_frame_rate_and_b_frames(tmp_path: Path) -> None:
    clip = make_clip(tmp_path / "vfr.mkv", duration=4.0, vfr=True, bframes=True, flashes=[2.0], beeps=[2.0])
    steps = analyze(clip)
    assert_timeline(steps)
    intervals = np.diff([f.t for ts in steps for f in ts.frames if not ts.video_repeated])
    assert intervals.min() < 0.8 * intervals.max(), "the clip should really be variable frame rate"
    assert brightest(steps) == loudest(steps) == 20


def test_audio_only_and_video_only_files(tmp_path: Path) -> None:
    audio_only = analyze(make_clip(tmp_path / "a.mkv", duration=2.0, with_video=False, beeps=[1.0]))
    # AAC pads its last frame: a short 21st timestep may follow
    assert [ts.k for ts in audio_only][:20] == list(range(20)) and len(audio_only) <= 21
    assert all(ts.video_missing and not ts.audio_missing for ts in audio_only)
    assert loudest(audio_only) == 10
    video_only = analyze(make_clip(tmp_path / "v.mp4", duration=2.0, audio_codec=None, flashes=[1.0]))
    assert [ts.k for ts in video_only] == list(range(20))
    assert all(ts.audio_missing and not ts.video_missing for ts in video_only)
    assert brightest(video_only) == 10


def test_loop_continues_the_timeline(tmp_path: Path) -> None:
    clip = make_clip(tmp_path / "loop.mkv", duration=1.0, audio_codec=None, flashes=[0.5])

    async def first(n: int) -> list[Timestep]:
        return await collect(Stream(parse_source(str(clip)), SourceOptions(loop=True)), limit=n)

    steps = asyncio.run(first(30))
    assert [ts.k for ts in steps] == list(range(30))
    assert [ts.k for ts in steps if max(f.luma.mean() for f in ts.frames) > 200] == [5, 15, 25]


def test_missing_file_random_bytes_and_truncation_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(SourceOpenError, match=r"^stream 'nothere': cannot open .*nothere.mp4: no such file$"):
        analyze(tmp_path / "nothere.mp4")
    with pytest.raises(SourceOpenError, match=r"^stream 'noise': cannot open .*: not a media file"):
        analyze(make_random_bytes(tmp_path / "noise.mp4"))
    whole = make_clip(tmp_path / "whole.mp4", duration=3.0)
    with pytest.raises(SourceOpenError, match="not a media file, or a damaged one"):
        analyze(truncate(whole, tmp_path / "cut.mp4", 0.5))  # moov atom at the end: nothing to read
    whole = make_clip(tmp_path / "whole.mkv", duration=6.0)
    with pytest.raises(DecodeError, match=r"file is truncated: its media ends at \d.\d s of the 6.0 s it declares"):
        analyze(truncate(whole, tmp_path / "cut.mkv", 0.5))


def test_small_luma_for_analysis_full_picture_on_demand(tmp_path: Path) -> None:
    clip = make_clip(tmp_path / "big.mkv", duration=0.5, width=640, height=360, flashes=[0.2])
    steps = analyze(clip, luma_size=(64, 36))
    frame = steps[2].frames[0]
    assert frame.luma.shape == (36, 64) and frame.luma.dtype == np.uint8 and frame.luma.mean() > 200
    assert frame.full is not None
    picture = frame.full.to_bgr()
    assert picture.shape == (360, 640, 3) and picture.mean() > 200
    assert analyze(clip, keep_full_frames=False)[0].frames[0].full is None


def test_a_track_without_a_decoder_is_skipped_and_none_left_is_a_clear_error(tmp_path: Path) -> None:
    data = make_clip(tmp_path / "clip.mkv", duration=2.0, beeps=[1.0]).read_bytes()
    no_video = tmp_path / "no_video.mkv"  # Matroska names codecs in clear: rename H.264 to nothing FFmpeg knows
    no_video.write_bytes(data.replace(b"V_MPEG4/ISO/AVC", b"V_UNKNOWN/X/ZZZ"))
    steps = analyze(no_video)
    assert steps and all(s.video_missing and not s.audio_missing for s in steps)
    neither = tmp_path / "neither.mkv"
    neither.write_bytes(no_video.read_bytes().replace(b"A_AAC", b"A_ZZZ"))
    with pytest.raises(DecodeError, match="unsupported codec: no decoder for its video or audio"):
        analyze(neither)
