"""Live streams (and files that do not seek exactly) decode without the deblocking filter and keep their own
packets since the key frame, so that a snapshot's frame is decoded again at full quality (issue 30)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest

from streamer.luma import luma_from_av
from streamer.media import VideoFrame
from streamer.options import SourceOptions
from streamer.packets import GopKeeper, PacketFrame
from streamer.source import Source
from streamer.spec import parse_source

from .test_file_decoding import _decode, _textured_clip


def _fast_with_packets(clip: Path, *, limit: int = 1 << 30, skip: int = 0) -> list[tuple[Any, PacketFrame | None]]:
    """Each decoded frame (without the deblocking filter) and its packets, as the ingest keeps them; ``skip``
    packets left out at the start (a stream joined after its key frame)."""
    out = []
    with av.open(str(clip)) as container:
        stream = container.streams.video[0]
        stream.codec_context.options = {"skip_loop_filter": "all"}
        gops = GopKeeper("t", stream, limit)
        for i, packet in enumerate(container.demux(stream)):
            if i < skip:
                continue
            gops.add(packet)
            out.extend((frame, gops.frame(frame.pts)) for frame in packet.decode())
    return out


@pytest.mark.parametrize("suffix", ["mp4", "ts"])
def test_a_frame_decoded_again_from_its_packets_is_the_full_quality_picture(tmp_path: Path, suffix: str) -> None:
    """First frame, B-frames, the last before a key frame, the key frame, the last: each equal to the normal
    decoder's picture bit for bit (MP4: the decoder's setup in the track's extradata; MPEG-TS: in the stream),
    while the analysis decoded most of them differently."""
    clip = _textured_clip(tmp_path / f"t.{suffix}")
    reference = _decode(clip, deblock=True)
    ordered = sorted(reference)
    frames = sorted(_fast_with_packets(clip), key=lambda item: item[0].pts)
    assert [f.pts for f, _ in frames] == ordered
    differs = [not np.array_equal(f.to_ndarray(format="bgr24"), reference[f.pts].to_ndarray(format="bgr24"))
               for f, _ in frames]  # fmt: skip
    assert sum(differs) > len(frames) // 2  # the filter matters
    for i in (0, 1, 2, 59, 60, len(frames) - 1):
        frame, packets = frames[i]
        assert packets is not None and not packets.resident
        assert np.array_equal(packets.to_bgr(), reference[frame.pts].to_ndarray(format="bgr24")), i


def test_frames_before_the_first_key_frame_and_in_a_group_over_the_limit_keep_no_packets(tmp_path: Path) -> None:
    clip = _textured_clip(tmp_path / "t.ts", frames=120, keyint=30)
    whole = _fast_with_packets(clip)
    first_group = next(packets.gop for _, packets in whole if packets is not None)
    assert all(packets is not None for _, packets in whole)
    # joined after the first key frame: frames of the first group keep none (if the decoder gives any at all)
    joined = _fast_with_packets(clip, skip=5)
    starts = {packets.gop.packets[0][1] for _, packets in joined if packets is not None}
    assert first_group.packets[0][1] not in starts
    second = min(starts)
    assert all((packets is None) == (frame.pts < second) for frame, packets in joined)
    small = _fast_with_packets(clip, limit=3000)  # every group outgrows it: none is kept
    assert all(packets is None for _, packets in small)
    biggest = max(packets.gop.size for _, packets in whole if packets is not None)
    ok = _fast_with_packets(clip, limit=biggest)
    assert all(packets is not None for _, packets in ok)


async def test_a_live_streams_snapshot_is_decoded_again_from_its_packets_at_full_quality(
    tmp_path: Path, rtsp_server: Any
) -> None:
    """Over RTSP (the file's own H.264, not re-encoded): the analysis image is decoded without the deblocking
    filter, and a frame's full picture is its packets, decoded again into the deblocked picture."""
    clip = _textured_clip(tmp_path / "t.mkv", frames=150, keyint=30)
    reference = [f.to_ndarray(format="bgr24") for _, f in sorted(_decode(clip, deblock=True).items())]
    fast = [luma_from_av(f, SourceOptions().luma_size) for _, f in sorted(_decode(clip, deblock=False).items())]
    server = rtsp_server(file=clip, audio=False)
    frames: list[VideoFrame] = []
    async for item in Source(parse_source(f"cam={server.url}"), SourceOptions()):
        if isinstance(item, VideoFrame):
            frames.append(item)
        if len(frames) == 100:
            break
    assert all(isinstance(f.full, PacketFrame) for f in frames[10:])
    for frame in frames[40:100:20]:
        # which of the file's frames it is: its analysis image is the one decoded without the filter
        index = next(i for i, y in enumerate(fast) if np.array_equal(frame.luma, y))
        assert frame.full is not None
        assert np.array_equal(frame.full.to_bgr(), reference[index]), index
