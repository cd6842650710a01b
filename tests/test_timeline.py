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
