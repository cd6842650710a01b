"""streamer: synchronized audio and video ingest for real-time analysis.

The pieces, in the order data flows: :mod:`streamer.spec` (source strings), :mod:`streamer.source` (capture
threads, reconnects), :mod:`streamer.av_input` / :mod:`streamer.camera` / :mod:`streamer.synthetic` (the kinds
of source), :mod:`streamer.timeline` (media time), :mod:`streamer.sync` (timesteps), :mod:`streamer.stream`
(all of it as one async iterator).
"""

from .errors import ConfigError, DecodeError, SourceError, SourceOpenError, SourceSpecError, StreamerError
from .media import AudioChunk, Discontinuity, SourceState, StateChange, StreamInfo, Timestep, VideoFrame
from .options import SourceOptions
from .source import Source
from .spec import SourceKind, SourceSpec, parse_source, redact
from .stream import Stream
from .sync import SyncOptions

__all__ = [
    "AudioChunk",
    "ConfigError",
    "DecodeError",
    "Discontinuity",
    "Source",
    "SourceError",
    "SourceKind",
    "SourceOpenError",
    "SourceOptions",
    "SourceSpec",
    "SourceSpecError",
    "SourceState",
    "StateChange",
    "Stream",
    "StreamInfo",
    "StreamerError",
    "SyncOptions",
    "Timestep",
    "VideoFrame",
    "parse_source",
    "redact",
]
