"""The one error hierarchy of streamer.

Library errors (PyAV/FFmpeg, OpenCV, OS) are converted at the boundary with ``raise ... from exc`` so that
callers catch one family. Every message is a single line that names the stream and the cause.
"""

from __future__ import annotations

# Process exit codes, documented in the README.
EXIT_OK = 0
EXIT_FAILURE = 1  # an unexpected error (a bug): the traceback is printed
EXIT_USAGE = 2  # bad command line, source syntax or configuration
EXIT_SOURCE = 3  # a source could not be opened or decoded


class StreamerError(Exception):
    """Base class of every error streamer raises on purpose."""

    exit_code = EXIT_FAILURE


class ConfigError(StreamerError):
    """A bad option, source syntax or configuration value."""

    exit_code = EXIT_USAGE


class SourceError(StreamerError):
    """A source failed. ``str()`` reads ``stream 'ID': CAUSE``."""

    exit_code = EXIT_SOURCE

    def __init__(self, stream_id: str, cause: str) -> None:
        self.stream_id = stream_id
        self.cause = " ".join(cause.split())  # always one line
        # a rejected name may hold anything: show it escaped (control characters) and short
        shown = stream_id if stream_id.isprintable() else stream_id.encode("unicode_escape").decode("ascii")
        shown = shown if len(shown) <= 80 else shown[:77] + "..."
        super().__init__(f"stream '{shown}': {self.cause}")


class SourceSpecError(SourceError, ConfigError):
    """The source string itself is malformed (unknown scheme, bad name, bad parameter)."""

    exit_code = EXIT_USAGE


class SourceOpenError(SourceError):
    """The source could not be opened: missing file, unreachable host, no such camera, unknown format."""


class SourceUnsupportedError(SourceOpenError):
    """This build of FFmpeg lacks what the source needs (a protocol, a demuxer, a decoder): retrying cannot help."""


class SourceCertificateError(SourceOpenError):
    """A TLS source's certificate failed verification: a setting to change (CA file), not an outage to wait out."""


class DecodeError(SourceError):
    """The source opened but its data could not be decoded (corrupt, truncated, unsupported codec)."""


class UnsupportedCodecError(DecodeError, SourceUnsupportedError):
    """No track of the source (or not the one asked for) has a decoder in this FFmpeg: permanent."""
