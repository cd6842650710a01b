"""The timestep assembler on hand-made frames and samples."""

from __future__ import annotations

import numpy as np

from streamer.media import AudioChunk, Timestep, VideoFrame
from streamer.sync import SyncOptions, TimestepAssembler

SR = 16000
OPTS = SyncOptions(hop=0.1, context=0.05, max_wait=0.3, sample_rate=SR)


def frame(t: float, value: int = 0, duration: float | None = 1 / 30) -> VideoFrame:
    return VideoFrame(t=t, luma=np.full((9, 16), value, np.uint8), duration=duration)


def chunk(t: float, seconds: float = 0.02, value: float = 0.0) -> AudioChunk:
    return AudioChunk(t=t, samples=np.full(round(seconds * SR), value, np.float32))


def feed(asm: TimestepAssembler, until: float, *, fps: float = 30, video: bool = True, audio: bool = True,
         video_from: float = 0.0, audio_from: float = 0.0) -> list[Timestep]:  # fmt: skip
    """Interleave frames and 20 ms chunks in time order, as a demuxer would."""
    out: list[Timestep] = []
    i = j = 0
    while True:
        tv = video_from + i / fps if video else np.inf
        ta = audio_from + j * 0.02 if audio else np.inf
        if min(tv, ta) >= until:
            return out
        if tv <= ta:
            out += asm.push_video(frame(tv, value=i % 256, duration=1 / fps))
            i += 1
        else:
            out += asm.push_audio(chunk(ta, value=j))
            j += 1


def test_timesteps_carry_their_frames_and_samples_in_order() -> None:
    asm = TimestepAssembler("s", OPTS, has_video=True, has_audio=True)
    out = feed(asm, 1.0) + asm.flush()
    assert [ts.k for ts in out] == list(range(10))
    for ts in out:
        assert len(ts.frames) == 3 and all(ts.t - 1e-9 <= f.t < ts.end for f in ts.frames)
        assert ts.audio.shape == (1600,) and len(ts.audio_window) == 1600 + 800
        assert not (ts.video_missing or ts.audio_missing or ts.video_repeated)
    # audio chunk j holds the value j: timestep k holds chunks 5k..5k+4, and its context the 2.5 chunks before
    assert list(np.unique(out[3].audio)) == [15, 16, 17, 18, 19]
    assert list(np.unique(out[3].audio_window[:800])) == [12, 13, 14]
    # before the stream: its first samples mirrored (chunks 0, 1, 2 backwards), not silence
    assert list(out[0].audio_window[:800]) == list(out[0].audio_window[800:1600][::-1])


def test_emitted_as_soon_as_both_tracks_pass_the_end() -> None:
    asm = TimestepAssembler("s", OPTS, has_video=True, has_audio=True)
    for j in range(5):
        assert asm.push_audio(chunk(j * 0.02)) == []
    assert asm.push_video(frame(0.0)) == [] and asm.push_video(frame(1 / 30)) == []
    out = asm.push_video(frame(2 / 30))  # this frame lasts until 0.1: no need to wait for the next one
    assert [ts.k for ts in out] == [0]


def test_video_only_and_audio_only_do_not_wait() -> None:
    asm = TimestepAssembler("v", OPTS, has_video=True, has_audio=False)
    out = feed(asm, 0.5, audio=False)
    assert [ts.k for ts in out] == [0, 1, 2, 3, 4]
    assert all(ts.audio_missing and not ts.video_missing for ts in out)
    asm = TimestepAssembler("a", OPTS, has_video=False, has_audio=True)
    out = feed(asm, 0.5, video=False)
    assert [ts.k for ts in out] == [0, 1, 2, 3, 4]
    assert all(ts.video_missing and not ts.audio_missing and ts.frames == () for ts in out)


def test_stalled_track_is_skipped_after_the_wait_and_flagged() -> None:
    asm = TimestepAssembler("s", OPTS, has_video=True, has_audio=True)
    out = feed(asm, 0.2) + feed(asm, 1.0, audio=False, video_from=0.2)
    # audio stopped at 0.2 s: video may lead by max_wait (0.3 s), so timesteps up to 0.6 s are out
    assert [ts.k for ts in out] == [0, 1, 2, 3, 4, 5, 6]
    assert [ts.audio_missing for ts in out] == [False, False, True, True, True, True, True]
    late = asm.push_audio(chunk(0.25))  # the stalled audio comes back late: dropped, never reordered
    assert late == [] and asm.stats.late_samples == 320


def test_low_frame_rate_repeats_the_previous_frame() -> None:
    asm = TimestepAssembler("s", OPTS, has_video=True, has_audio=False)
    out = feed(asm, 1.0, fps=4, audio=False)
    assert [ts.k for ts in out][:8] == list(range(8))
    assert [len(ts.frames) for ts in out][:4] == [1, 1, 1, 1]
    assert [ts.video_repeated for ts in out][:6] == [False, True, False, True, True, False]  # 0, 0.25, 0.5 s
    assert out[1].frames[0] is out[0].frames[0]


def test_late_frame_joins_the_next_timestep() -> None:
    asm = TimestepAssembler("s", OPTS, has_video=True, has_audio=False)
    out = asm.push_video(frame(0.0, duration=0.1))
    assert [ts.k for ts in out] == [0]
    out = asm.push_video(frame(0.05, duration=0.01))  # older than what was emitted (bad VFR duration)
    assert out == [] and asm.stats.late_frames == 1
    out = asm.push_video(frame(0.15, duration=0.05))
    assert [ts.k for ts in out] == [1] and [f.t for f in out[0].frames] == [0.05, 0.15]


def test_discontinuity_flushes_then_jumps_forward() -> None:
    asm = TimestepAssembler("s", OPTS, has_video=True, has_audio=True)
    out = feed(asm, 0.45)
    out += asm.discontinuity(3.0)
    assert [ts.k for ts in out] == [0, 1, 2, 3, 4]
    out = feed(asm, 3.3, video_from=3.0, audio_from=3.0)
    assert [ts.k for ts in out] == [30, 31, 32]
    assert not any(ts.video_repeated or ts.audio_missing for ts in out)
    out = asm.discontinuity(1.0)  # never backwards
    assert asm.next_t >= 3.3 - 1e-9


def test_audio_gap_reads_as_silence() -> None:
    asm = TimestepAssembler("a", OPTS, has_video=False, has_audio=True)
    out = asm.push_audio(chunk(0.0, 0.1, value=1.0)) + asm.push_audio(chunk(0.2, 0.1, value=1.0))
    assert [ts.k for ts in out] == [0, 1, 2]
    assert out[1].audio.max() == 0.0 and not out[1].audio_missing and out[2].audio.min() == 1.0


def test_final_partial_timestep_has_only_real_samples() -> None:
    asm = TimestepAssembler("a", OPTS, has_video=False, has_audio=True)
    out = asm.push_audio(chunk(0.0, 0.13)) + asm.flush()
    assert [len(ts.audio) for ts in out] == [1600, 480]


def test_audio_a_millisecond_short_of_every_boundary_reaches_each_alike() -> None:
    """A resampler's delay leaves audio that is aligned with the timesteps exactly 1 ms short of each boundary
    (16 samples at 16 kHz). Each boundary must count it as reached: in float, 0.1 s and 0.2 s did and 0.3 s and
    0.7 s did not, and those timesteps waited for one more audio packet."""
    for k in range(1, 12):
        sync = TimestepAssembler("a", SyncOptions(), has_video=False, has_audio=True)
        samples = np.zeros(k * 1600 - 16, np.float32)
        assert len(sync.push_audio(AudioChunk(t=0.0, samples=samples, wall_time=0.0))) == k, k
