"""The one error hierarchy of streamer.

Library errors (PyAV/FFmpeg, OpenCV, OS) are converted at the boundary with ``raise ... from exc`` so that
callers catch one family. Every message is a single line that names the stream and the cause.

Process exit codes (documented in docs/reliability.md): a run's code says what happened, so a script that sees 0
knows every stream was analyzed and every event reached the broker.

====  ===========================================================================================================
code  when
====  ===========================================================================================================
0     done: every stream opened, none failed, every event was delivered (or there was no broker)
1     an unexpected error (a bug): the traceback is printed
2     bad command line, source syntax or configuration
3     a source failed: it could not be opened or decoded and was given up (a missing file, not media, truncated,
      an unsupported codec, a malformed source, an untrusted certificate)
4     a source never opened before the run ended: a live source retried until it was stopped (a URL answering
      404, an unreachable host, an absent camera); the summary names each with its last error
5     events were not delivered: the broker had not acknowledged them when the run ended (they are lost; events
      dropped earlier by a full outbox are counted in stats and logged, and do not change the code)
130   interrupted (Ctrl-C) where no clean stop is in place: ``probe``, ``bench``, the learning commands, or ``run``
      before its event loop started. ``run``, ``demo`` and ``cluster run`` stop cleanly on SIGINT and SIGTERM and
      exit with one of the codes above
====  ===========================================================================================================

When several apply the lowest wins: a source that failed (3) before one that never opened (4) before events not
delivered (5); the summary line says all of them.
"""

from __future__ import annotations

# Process exit codes: the table above.
EXIT_OK = 0
EXIT_FAILURE = 1  # an unexpected error (a bug): the traceback is printed
EXIT_USAGE = 2  # bad command line, source syntax or configuration
EXIT_SOURCE = 3  # a source could not be opened or decoded
EXIT_NOT_OPENED = 4  # a (live) source never opened before the run ended
EXIT_UNDELIVERED = 5  # events not delivered to the broker when the run ended


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
