"""streamer: synchronized audio and video ingest for real-time analysis.

The pieces, in the order data flows: :mod:`streamer.spec` (source strings), :mod:`streamer.source` (capture
threads, reconnects), :mod:`streamer.av_input` / :mod:`streamer.camera` / :mod:`streamer.synthetic` (the kinds
of source), :mod:`streamer.timeline` (media time), :mod:`streamer.sync` (timesteps), :mod:`streamer.stream`
(all of it as one async iterator).
"""

from typing import TYPE_CHECKING, Any

from .errors import ConfigError, DecodeError, SourceError, SourceOpenError, SourceSpecError, StreamerError
from .media import AudioChunk, Discontinuity, SourceState, StateChange, StreamInfo, Timestep, VideoFrame
from .options import SourceOptions
from .spec import SourceKind, SourceSpec, parse_source, redact
from .sync import SyncOptions

if TYPE_CHECKING:
    from .source import Source
    from .stream import Stream


def __getattr__(name: str) -> Any:
    """``Source`` and ``Stream`` load the decoders (PyAV, OpenCV) only when asked for: ``streamer --help`` and a
    config check import this package for its options and errors alone."""
    if name == "Source":
        from .source import Source

        return Source
    if name == "Stream":
        from .stream import Stream

        return Stream
    raise AttributeError(f"module 'streamer' has no attribute {name!r}")


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
