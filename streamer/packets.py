"""A live stream's own compressed video since its last key frame: a frame decoded for the analysis only can be
decoded again at full quality when a snapshot shows it.

A live stream's video is decoded without the deblocking filter (``SourceOptions.fast_decode``): the model reads
a 160x90 picture, where the filter's work does not show, and the filter is 15-20% of H.264 decoding. A snapshot
is full resolution, where it shows; so each frame's full picture is a :class:`PacketFrame`: the packets of its
group of pictures (from the key frame before it, in decode order) and its timestamp, decoded again, with the
filter, when a snapshot asks for it (as a file's frames are decoded again from the file,
:class:`streamer.av_input.FileFrame`).

:class:`GopKeeper` holds the track's current group, and the one before it (a decoder may hand out a frame of the
old group after the new key frame's packet). An older group lives on only while a frame still refers to it: a
queued timestep's, or an open event's peak. A group longer than ``limit`` bytes (a camera that sends a key frame
every few minutes) stops being kept; until the next key frame, frames keep their own decoded picture, as without
this module.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any, ClassVar

import av
import numpy as np
import numpy.typing as npt

from .errors import DecodeError

GOP_LIMIT_BYTES = 16 * 1024 * 1024  # a group of pictures kept up to this size (2 s at 64 Mbit/s)


@dataclass(frozen=True, slots=True)
class Track:
    """What a decoder needs to start on a video track's packets, and the stream it belongs to."""

    stream_id: str
    codec: str
    extradata: bytes | None
    time_base: Fraction | None


@dataclass(eq=False, slots=True)
class Gop:
    """One group of pictures of a track: its packets ``(data, pts, dts)`` in decode order, the first a key
    frame."""

    track: Track
    packets: list[tuple[bytes, int | None, int | None]] = field(default_factory=list)
    stamps: set[int] = field(default_factory=set)  # the packets' pts
    size: int = 0


class GopKeeper:
    """The current and the previous group of pictures of one video track (``stream``: PyAV's) of a stream."""

    def __init__(self, stream_id: str, stream: Any, limit: int = GOP_LIMIT_BYTES) -> None:
        context = stream.codec_context
        extradata = bytes(context.extradata) if context.extradata else None
        self.track = Track(stream_id, context.name, extradata, stream.time_base)
        self.limit = limit
        self.current: Gop | None = None  # None: none yet, or the current one outgrew the limit
        self.previous: Gop | None = None

    def add(self, packet: Any) -> None:
        """Keep a packet of the track, before it is decoded."""
        if packet.size == 0:
            return  # a flush packet
        if packet.is_keyframe:
            self.previous = self.current
            self.current = Gop(self.track)
        gop = self.current
        if gop is None:
            return  # the stream joined after a key frame: nothing to start decoding from until the next
        gop.size += packet.size
        if gop.size > self.limit:
            self.current = None
            return
        gop.packets.append((bytes(packet), packet.pts, packet.dts))
        if packet.pts is not None:
            gop.stamps.add(packet.pts)

    def frame(self, pts: int | None) -> PacketFrame | None:
        """The full picture of the decoded frame with ``pts``, as its packets; None when they are not kept."""
        if pts is None:
            return None
        for gop in (self.current, self.previous):
            if gop is not None and pts in gop.stamps:
                return PacketFrame(gop, pts, len(gop.packets))
        return None


@dataclass(frozen=True, slots=True)
class PacketFrame:
    """A frame by its group of pictures and its timestamp, decoded again (at full quality) when asked for."""

    resident: ClassVar[bool] = False
    gop: Gop
    pts: int
    count: int  # the group's packets up to this frame's (decode order), as far as they had come

    def to_bgr(self) -> npt.NDArray[np.uint8]:
        track = self.gop.track
        codec: Any = av.CodecContext.create(track.codec, "r")  # a video decoder
        if track.extradata:
            codec.extradata = track.extradata
        # its group's packets up to its own, then None: what the decoder still holds (its reordering delay)
        for packet in itertools.chain(map(self._packet, self.gop.packets[: self.count]), [None]):
            for frame in codec.decode(packet):
                if frame.pts == self.pts:
                    image: npt.NDArray[np.uint8] = frame.to_ndarray(format="bgr24")
                    return image
        raise DecodeError(track.stream_id, f"snapshot: the frame at pts {self.pts} did not come out of its "
                          f"{self.count} packets")  # fmt: skip

    def _packet(self, kept: tuple[bytes, int | None, int | None]) -> Any:
        data, pts, dts = kept
        packet = av.Packet(data)
        packet.pts, packet.dts = pts, dts
        if self.gop.track.time_base is not None:
            packet.time_base = self.gop.track.time_base
        return packet
