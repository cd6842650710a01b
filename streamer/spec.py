"""Source strings: the ``[NAME=]URI`` syntax shared by every command, stream ids and credential redaction.

Accepted URIs:

* files: a path or ``file://`` URL, in any container PyAV opens (mp4, mkv, ts, webm, ...);
* network: ``rtsp://``, ``rtsps://``, ``rtmp://``, ``rtmps://``, ``http(s)://`` (HLS, MPEG-TS, MJPEG),
  ``srt://``, ``udp://``, ``tcp://``;
* cameras: ``camera:N`` or ``/dev/videoN`` (OpenCV, V4L2), with ``?audio=alsa:DEVICE`` for a microphone
  and ``width``/``height``/``fps`` requests;
* ``synthetic:`` the built-in live A/V source (see :mod:`streamer.synthetic`).
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from urllib.parse import parse_qsl, quote, urlsplit, urlunsplit

from .errors import SourceSpecError

NETWORK_SCHEMES = frozenset({"rtsp", "rtsps", "rtmp", "rtmps", "http", "https", "srt", "udp", "tcp"})
STREAM_ID_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
# query keys whose values are credentials (compared in lower case): passwords, tokens, SRT's passphrase and
# streamid, signed-URL signatures and credentials (AWS S3/CloudFront, Azure SAS, Google)
_SECRET_QUERY_KEYS = frozenset({
    "password", "pass", "pwd", "passwd", "passphrase", "token", "access_token", "refresh_token", "id_token",
    "auth", "authorization", "key", "apikey", "api_key", "api-key", "secret", "client_secret", "session",
    "sessionid", "streamid", "sig", "signature", "x-amz-signature", "x-amz-credential", "x-amz-security-token",
    "policy", "key-pair-id", "x-goog-signature", "x-goog-credential",
})  # fmt: skip
_KEY_IN_PATH_SCHEMES = frozenset({"rtmp", "rtmps"})  # rtmp://host/APP/STREAM_KEY: the key is a credential
_NOT_IN_NAME = re.compile(r"[:/\\?.]")
_CAMERA_DEV_RE = re.compile(r"^/dev/video(\d+)$")


class SourceKind(enum.StrEnum):
    FILE = "file"
    NETWORK = "network"
    CAMERA = "camera"
    SYNTHETIC = "synthetic"


@dataclass(frozen=True)
class SourceSpec:
    """A parsed source string. ``uri`` may hold credentials: print :attr:`redacted`, never ``uri``."""

    stream_id: str
    uri: str = field(repr=False)
    kind: SourceKind
    params: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))

    @property
    def redacted(self) -> str:
        return redact(self.uri)

    @property
    def scheme(self) -> str:
        """The URI's scheme in lower case (``rtsp``, ``https``...); empty for a plain file path or a camera."""
        head, sep, _ = self.uri.partition("://")
        return head.lower() if sep else ""

    @property
    def is_live(self) -> bool:
        """Live sources run in real time: they drop rather than block, and reconnect on failure."""
        if self.kind is SourceKind.SYNTHETIC:
            return self.params.get("realtime", "1") not in ("0", "false", "no")
        return self.kind in (SourceKind.NETWORK, SourceKind.CAMERA)

    def __repr__(self) -> str:
        return f"SourceSpec(stream_id={self.stream_id!r}, uri={self.redacted!r}, kind={self.kind.value!r})"


def redact(uri: str) -> str:
    """Hide the password of ``scheme://user:password@host`` and secret-looking query values."""
    if "://" not in uri:
        return uri
    try:
        parts = urlsplit(uri)
        netloc = parts.netloc
        if "@" in netloc:
            userinfo, _, hostport = netloc.rpartition("@")
            user, sep, _password = userinfo.partition(":")
            netloc = f"{user}:***@{hostport}" if sep else f"{user}@{hostport}"
        query = parts.query
        if query:
            pairs = parse_qsl(query, keep_blank_values=True)
            if any(k.lower() in _SECRET_QUERY_KEYS for k, _ in pairs):
                query = "&".join(
                    f"{quote(k)}={'***' if k.lower() in _SECRET_QUERY_KEYS else quote(v, safe=':,/@')}"
                    for k, v in pairs
                )
        path = parts.path
        if parts.scheme.lower() in _KEY_IN_PATH_SCHEMES:
            app, _, key = path.lstrip("/").partition("/")
            path = f"/{app}/***" if key else path
        return urlunsplit((parts.scheme, netloc, path, query, parts.fragment))
    except ValueError:
        # Unparseable: hide everything between "://" and the last "@", if any.
        head, _, rest = uri.partition("://")
        return f"{head}://***@{rest.rpartition('@')[2]}" if "@" in rest else uri


def sanitize_stream_id(text: str) -> str:
    """Map any text to a valid stream id (``[A-Za-z0-9_-]``, at most 64 characters)."""
    cleaned = re.sub(r"[^A-Za-z0-9-]+", "_", text).strip("_")[:64]
    return cleaned or "stream"


def parse_source(text: str) -> SourceSpec:
    """Parse ``[NAME=]URI``. NAME must match ``[A-Za-z0-9_-]+``; without it the id is derived from the URI."""
    name: str | None = None
    left, eq, right = text.partition("=")
    if eq and right and left and not _NOT_IN_NAME.search(left):
        if not STREAM_ID_RE.match(left):
            raise SourceSpecError(
                left, "invalid stream name: use 1-64 letters, digits, '_' or '-' (no MQTT wildcards or levels)"
            )
        name, text = left, right
    uri = text.strip()
    if not uri:
        raise SourceSpecError(name or "?", "empty source")
    try:
        kind, params, derived = _classify(uri, name)
    except ValueError:  # urllib's: an address it cannot split (a bad IPv6 host, odd Unicode in the host); its
        # message would show the address, password included
        label = name or sanitize_stream_id(uri.partition("://")[0] or "source")
        raise SourceSpecError(label, "malformed address: its host or port cannot be read") from None
    return SourceSpec(stream_id=name or derived, uri=uri, kind=kind, params=MappingProxyType(params))


def _classify(uri: str, name: str | None) -> tuple[SourceKind, dict[str, str], str]:
    label = name or sanitize_stream_id(redact(uri))
    if uri.startswith("synthetic:"):
        return SourceKind.SYNTHETIC, _query(uri, "synthetic:", label), "synthetic"
    if uri.startswith("camera:"):
        params = _query(uri, "camera:", label)
        device = params.get("device", "")
        if not device.isdigit():
            raise SourceSpecError(label, f"camera index must be a number, as in camera:0 (got {device!r})")
        return SourceKind.CAMERA, params, f"camera{device}"
    dev_path, _, dev_query = uri.partition("?")
    match = _CAMERA_DEV_RE.match(dev_path)
    if match:
        params = dict(parse_qsl(dev_query, keep_blank_values=True))
        params["device"] = dev_path
        return SourceKind.CAMERA, params, f"video{match.group(1)}"
    if "://" in uri:
        scheme = uri.partition("://")[0].lower()
        if scheme == "file":
            path = urlsplit(uri).path
            return SourceKind.FILE, {"path": path}, sanitize_stream_id(Path(path).stem)
        if scheme not in NETWORK_SCHEMES:
            allowed = ", ".join(sorted(NETWORK_SCHEMES | {"file"}))
            raise SourceSpecError(label, f"unsupported scheme {scheme}:// (supported: {allowed}, camera:, synthetic:)")
        parts = urlsplit(uri)
        host = (parts.hostname or "").replace(".", "_")
        # from the host and the path only (never the query); an RTMP path's stream key (after the app) is left out
        path = parts.path.lstrip("/").partition("/")[0] if scheme in _KEY_IN_PATH_SCHEMES else parts.path
        return SourceKind.NETWORK, {}, sanitize_stream_id(f"{host}_{path}")
    return SourceKind.FILE, {"path": uri}, sanitize_stream_id(Path(uri).stem)


def _query(uri: str, prefix: str, label: str) -> dict[str, str]:
    """``camera:0?a=1`` -> ``{"device": "0", "a": "1"}``; ``synthetic:?x=1`` -> ``{"x": "1"}``."""
    body = uri[len(prefix) :]
    device, _, query = body.partition("?")
    try:
        pairs = parse_qsl(query, keep_blank_values=True, strict_parsing=bool(query))
    except ValueError as exc:
        raise SourceSpecError(label, f"malformed parameters {query!r}: {exc}") from None
    params = dict(pairs)
    if device:
        params["device"] = device
    return params
