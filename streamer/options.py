"""Options of a source: how it is opened, decoded, paced, handed off and reconnected."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Literal

from . import hwaccel as _hwaccel
from .settings import (
    CAPTURE,
    boolean,
    choice,
    default_of,
    integer,
    number,
    on_off_auto,
    optional_path,
    setting,
    size,
    string,
    string_table,
)
from .sync import SyncOptions


@dataclass(frozen=True, kw_only=True)
class SourceOptions:
    """How a source is opened, decoded, paced, handed off and reconnected. The fields with ``setting()`` are
    per-stream settings (:mod:`streamer.settings`); the others are internal."""

    realtime: bool = setting(False, section="stream", check=boolean, commands=CAPTURE,
                             help="pace files at their native rate, like a live source")  # fmt: skip
    loop: bool = setting(False, section="stream", check=boolean, commands=CAPTURE,
                         help="repeat files (and the synthetic schedule) forever")  # fmt: skip
    rtsp_transport: Literal["tcp", "udp"] = setting("tcp", section="stream", check=choice("tcp", "udp"),
                                                    commands=CAPTURE, help="RTSP over TCP or UDP")  # fmt: skip
    low_latency: bool | None = setting(
        None, section="stream", check=on_off_auto, commands=CAPTURE, shown="auto: on for live sources",
        help="demux and decode for latency (small probe, no buffering)",
    )  # fmt: skip
    av_options: Mapping[str, str] = setting(
        factory=lambda: MappingProxyType({}), section="stream", check=string_table, flag="--av-option",
        commands=CAPTURE, metavar="KEY=VALUE", shown="none",
        help="FFmpeg demuxer/protocol options, over the defaults (the flag is repeatable)",
    )  # fmt: skip
    ca_file: str | None = setting(
        None, section="stream", check=optional_path, commands=CAPTURE, metavar="PEM", shown="the system's",
        help="https/rtsps/rtmps sources: CA bundle to verify the server with",
    )  # fmt: skip
    tls_insecure: bool = setting(False, section="stream", check=boolean, commands=CAPTURE,
                                 help="https/rtsps/rtmps sources: do not verify the server's certificate")  # fmt: skip
    luma_size: tuple[int, int] = setting(
        (160, 90), section="model", check=size, commands=CAPTURE, metavar="WxH",
        help="the analysis image (luma), width x height",
    )  # fmt: skip
    sample_rate: int = default_of(SyncOptions, "sample_rate")  # the sync's (the setting's home)
    keep_full_frames: bool = True  # keep each decoded picture reachable for snapshots (converted on demand)
    # skip the video decoder's deblocking filter (15-20% of H.264 decoding; invisible in the small analysis
    # image); None: wherever snapshots are decoded again in full: MP4/MOV and Matroska/WebM files from the file,
    # other sources from their own packets since the key frame (streamer.packets), software decoding only
    fast_decode: bool | None = setting(
        None, section="stream", check=on_off_auto, commands=CAPTURE,
        shown="auto: on wherever a snapshot is decoded again in full, in software decoding",
        help="decode video without the deblocking filter (15-20% of H.264 decoding, invisible in the analysis "
        "image)",
    )  # fmt: skip
    hwaccel: str | None = setting(
        None, section="stream", check=string, commands=CAPTURE, metavar="TYPE[:DEVICE]", shown="software",
        help="decode video on a hardware device: cuda, cuda:1, vaapi, ... or auto (the first that opens); where "
        "it does not open, in software",
    )  # fmt: skip
    queue_size: int = 64  # items between the decode thread and asyncio
    # which track of each kind to analyze, counted from 0 among that kind's tracks; None: the first one FFmpeg can
    # decode; -1: none (ignore that modality)
    video_track: int | None = setting(None, section="stream", check=integer(-1, 64), commands=CAPTURE, metavar="N",
                                      shown="the first decodable", help="analyze the Nth video track, from 0 "
                                      "(-1: none)")  # fmt: skip
    audio_track: int | None = setting(None, section="stream", check=integer(-1, 64), commands=CAPTURE, metavar="N",
                                      shown="the first decodable", help="analyze the Nth audio track, from 0 "
                                      "(-1: none)")  # fmt: skip
    open_timeout: float = 10.0  # seconds to open a network source
    stall_timeout: float = setting(5.0, section="stream", check=number(0, lo_open=True), unit="s", commands=CAPTURE,
                                   help="time without data before a live source counts as stalled and "
                                   "reconnects")  # fmt: skip
    reconnect: bool = True  # live sources reconnect on failure, stall or end
    fail_fast: bool = False  # raise when the very first connection fails instead of retrying
    backoff_initial: float = 0.5  # seconds before the first reconnect attempt
    backoff_max: float = 30.0  # cap of the exponential backoff (jittered +-25%)
    healthy_after: float = 10.0  # seconds a connection must stay up before its failures are forgiven
    offline_after: int = 5  # consecutive failures before the state goes from reconnecting to offline
    segment_align: float = default_of(SyncOptions, "hop")  # reconnects and loops restart on a multiple of the hop

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
