"""Media time: rebasing, shared A/V origin, segments and jumps."""

from __future__ import annotations

import pytest

from streamer.timeline import Timeline


def test_shared_origin_keeps_av_offset() -> None:
    tl = Timeline()
    tl.start_segment(0.0, raw_origin=10.0)  # e.g. an MPEG-TS starting at 10 s
    assert tl.to_stream_time("video", 10.0) == 0.0
    assert tl.to_stream_time("audio", 10.5) == pytest.approx(0.5)  # audio delayed by 500 ms stays delayed


def test_first_timestamp_is_origin_without_container_start() -> None:
    tl = Timeline()
    tl.start_segment(0.0)
    assert tl.to_stream_time("audio", 3.0) == 0.0
    assert tl.to_stream_time("video", 3.2) == pytest.approx(0.2)


def test_later_segment_continues_forward() -> None:
    tl = Timeline()
    tl.start_segment(0.0, 0.0)
    tl.reached(tl.to_stream_time("video", 4.9) + 0.1)
    with pytest.raises(ValueError):
        tl.start_segment(2.0, 0.0)
    tl.start_segment(5.0, 0.0)  # a reconnect: raw time restarts at 0
    assert tl.to_stream_time("video", 0.0) == 5.0
    assert tl.segments == 2


def test_jump_inside_a_segment_is_reanchored() -> None:
    tl = Timeline(max_back=0.5, max_jump=10.0)
    tl.start_segment(0.0, 0.0)
    for i in range(10):
        tl.reached(tl.to_stream_time("video", i * 0.1) + 0.1)
    assert tl.to_stream_time("video", 500.0) == pytest.approx(1.0)  # forward jump: continue at the end
    assert tl.to_stream_time("video", 500.1) == pytest.approx(1.1)
    tl.reached(1.2)
    assert tl.to_stream_time("video", 3.0) == pytest.approx(1.2)  # backward jump
    assert tl.jumps == 2


def _interleaved(tl: Timeline, seconds: float, video_raw, audio_raw) -> list[tuple[str, float, float]]:  # type: ignore[no-untyped-def]
    """Feed 25 fps video and 20 ms audio chunks in time order; ``*_raw(t)`` gives each track's raw timestamp
    for true time t. Returns (track, true time, stream time) in feed order."""
    out = []
    items = [("video", i / 25, 1 / 25) for i in range(round(seconds * 25))]
    items += [("audio", i / 50, 1 / 50) for i in range(round(seconds * 50))]
    for track, true_t, dur in sorted(items, key=lambda x: (x[1], x[0])):
        raw = video_raw(true_t) if track == "video" else audio_raw(true_t)
        t = tl.to_stream_time(track, raw)  # type: ignore[arg-type]
        tl.reached(t + dur)
        out.append((track, true_t, t))
    return out


def _check_together(out: list[tuple[str, float, float]], after: float, tolerance: float = 0.15) -> None:
    """After ``after`` (true time), both tracks advance together and never go backwards."""
    last: dict[str, float] = {}
    for track, _true_t, t in out:
        assert t >= last.get(track, -1.0) - 1e-9, f"{track} went backwards at {t}"
        last[track] = t
    for track, true_t, t in out:
        if true_t < after:
            continue
        other = [s for tr, tt, s in out if tr != track and abs(tt - true_t) < 0.021]
        assert other, "no data of the other track nearby"
        assert abs(t - other[0]) < tolerance, f"{track} at true {true_t:.2f} is {t - other[0]:+.2f} s off"


def test_one_stray_video_timestamp_keeps_both_tracks_together() -> None:
    """One video frame with a pts 5 s ahead (a glitch): both tracks continue together after it; the audio is not
    left behind (it used to be re-anchored alone, leaving every later chunk 'late')."""
    tl = Timeline()
    tl.start_segment(0.0, 0.0)
    out = _interleaved(tl, 8.0, lambda t: t + 5.0 if abs(t - 3.0) < 1e-9 else t, lambda t: t)
    _check_together(out, after=3.5)
    assert tl.jumps >= 1
    assert tl.end < 8.0 + 0.5  # the glitch did not stretch the timeline by 5 s


def test_wraparound_seen_on_video_first() -> None:
    """An MPEG-TS pts wrap (2**33 / 90 kHz) reached by video 0.3 s before audio: one timeline, tracks together."""
    wrap = 2**33 / 90000
    base = wrap - 4.0
    tl = Timeline()
    tl.start_segment(0.0, base)

    def raw(shift: float):  # type: ignore[no-untyped-def]
        return lambda t: (base + t + shift) % wrap

    out = _interleaved(tl, 10.0, raw(0.3), raw(0.0))
    _check_together(out, after=4.5, tolerance=0.45)
    assert out[-1][2] == pytest.approx(10.0, abs=0.6)


def test_rtcp_resync_moves_both_tracks_onto_a_shared_clock() -> None:
    """Before RTCP, an RTSP client times each track from its own first RTP timestamp (here audio 0.3 s off); at
    3 s both are re-mapped onto the sender's clock, far away. Afterwards the tracks stay together, in the sender's
    alignment, and the timeline goes on without a gap or a step back."""
    tl = Timeline()
    tl.start_segment(0.0)
    out = _interleaved(tl, 9.0, lambda t: t if t < 3.0 else 5000.0 + t, lambda t: t + 0.3 if t < 3.04 else 5000.0 + t)
    _check_together(out, after=3.5)
    assert out[-1][2] < 9.0 + 3.0
