"""Options of a source: how it is opened, decoded, paced, handed off and reconnected."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Literal

from . import hwaccel as _hwaccel


@dataclass(frozen=True, kw_only=True)
class SourceOptions:
    realtime: bool = False  # pace files at their native rate, like a live source
    loop: bool = False  # repeat files (and the synthetic schedule) forever
    rtsp_transport: Literal["tcp", "udp"] = "tcp"
    low_latency: bool | None = None  # None: on for live sources, off for files
    av_options: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))  # override FFmpeg's
    ca_file: str | None = None  # https/rtsps/rtmps: CA bundle to verify the server with (default: the system's)
    tls_insecure: bool = False  # https/rtsps/rtmps: do not verify the server's certificate
    luma_size: tuple[int, int] = (160, 90)  # (width, height) of the analysis image
    sample_rate: int = 16000  # analysis audio: mono float32 at this rate
    keep_full_frames: bool = True  # keep each decoded picture reachable for snapshots (converted on demand)
    # skip the video decoder's deblocking filter (15-20% of H.264 decoding; invisible in the small analysis
    # image); None: for MP4/MOV and Matroska/WebM files, whose snapshots are decoded again from the file in full
    fast_decode: bool | None = None
    # decode video on a hardware device (streamer.hwaccel): "cuda", "cuda:1", "vaapi", ..., "auto"; None: software
    hwaccel: str | None = None
    queue_size: int = 64  # items between the decode thread and asyncio
    # which track of each kind to analyze, counted from 0 among that kind's tracks; None: the first one FFmpeg can
    # decode; -1: none (ignore that modality)
    video_track: int | None = None
    audio_track: int | None = None
    open_timeout: float = 10.0  # seconds to open a network source
    stall_timeout: float = 5.0  # seconds without a packet before a live source counts as stalled
    reconnect: bool = True  # live sources reconnect on failure, stall or end
    fail_fast: bool = False  # raise when the very first connection fails instead of retrying
    backoff_initial: float = 0.5  # seconds before the first reconnect attempt
    backoff_max: float = 30.0  # cap of the exponential backoff (jittered +-25%)
    healthy_after: float = 10.0  # seconds a connection must stay up before its failures are forgiven
    offline_after: int = 5  # consecutive failures before the state goes from reconnecting to offline
    segment_align: float = 0.1  # reconnects and loops restart on a multiple of this (the hop)

    def __post_init__(self) -> None:
        width, height = self.luma_size
        if not (8 <= width <= 4096 and 8 <= height <= 4096):
            raise ValueError(f"luma_size must be between 8x8 and 4096x4096, got {width}x{height}")
        if self.sample_rate < 1000:
            raise ValueError(f"sample_rate must be >= 1000 Hz, got {self.sample_rate}")
        if self.queue_size < 2:
            raise ValueError("queue_size must be >= 2")
        if self.rtsp_transport not in ("tcp", "udp"):
            raise ValueError(f"rtsp_transport must be tcp or udp, got {self.rtsp_transport!r}")
        if min(self.open_timeout, self.stall_timeout, self.backoff_initial, self.backoff_max) <= 0:
            raise ValueError("timeouts and backoff intervals must be > 0")
        object.__setattr__(self, "hwaccel", _hwaccel.check(self.hwaccel))
