"""The MQTT topics streamer publishes on, and the checks that keep names from injecting wildcards or levels.

``{prefix}/status``, ``{prefix}/stats``, ``{prefix}/cluster`` (a cluster's layout), per stream
``{prefix}/{stream}/events``, ``/scores``, ``/status``, ``/snapshot``, ``/clip``, ``/tags/{label}``, and per zone
of a stream ``{prefix}/{stream}/zones/{zone}/events``. A prefix is one or more levels of ``[A-Za-z0-9_-]``
separated by ``/`` (``home/streamer``); stream ids are already one such level
(:func:`streamer.spec.sanitize_stream_id`), and so are zone names and tag labels (:data:`LEVEL_RE`).
"""

from __future__ import annotations

from streamer.errors import ConfigError
from streamer.spec import STREAM_ID_RE

LEVEL_RE = STREAM_ID_RE  # one topic level: a prefix's, a stream id, a zone's name


def check_prefix(prefix: str) -> str:
    levels = prefix.split("/")
    if len(prefix) > 200 or not all(LEVEL_RE.match(level) for level in levels):
        raise ConfigError(
            f"mqtt prefix {prefix!r}: use levels of letters, digits, '_' and '-' separated by '/' "
            "(no wildcards, no empty levels)"
        )
    return prefix


class Topics:
    """``presence``: where this process's own online/offline goes (its MQTT will): ``{prefix}/status`` for
    ``streamer run``; a cluster's workers and driver each have their own under ``{prefix}/cluster/`` and
    publish ``online`` on ``{prefix}/status`` too, so one lost worker does not mark the whole site offline."""

    def __init__(self, prefix: str, presence: str | None = None) -> None:
        self.prefix = check_prefix(prefix)
        self.status = f"{prefix}/status"
        self.stats = f"{prefix}/stats"
        self.presence = f"{prefix}/{presence}" if presence else self.status
        self.cluster = f"{prefix}/cluster"
        self.cluster_moves = f"{prefix}/cluster/moves"

    def stream(self, stream_id: str, leaf: str) -> str:
        if not STREAM_ID_RE.match(stream_id):
            raise ConfigError(f"stream id {stream_id!r} cannot be an MQTT topic level")
        return f"{self.prefix}/{stream_id}/{leaf}"

    def zone(self, stream_id: str, zone: str, leaf: str) -> str:
        """``{prefix}/{stream}/zones/{zone}/{leaf}``."""
        if not LEVEL_RE.match(zone):
            raise ConfigError(f"zone name {zone!r} cannot be an MQTT topic level")
        return self.stream(stream_id, f"zones/{zone}/{leaf}")

    def events(self, stream_id: str, zone: str | None = None) -> str:
        """The stream's events, or those of one of its zones."""
        return self.stream(stream_id, "events") if zone is None else self.zone(stream_id, zone, "events")

    def scores(self, stream_id: str) -> str:
        return self.stream(stream_id, "scores")

    def stream_status(self, stream_id: str) -> str:
        return self.stream(stream_id, "status")

    def snapshot(self, stream_id: str) -> str:
        return self.stream(stream_id, "snapshot")

    def clip(self, stream_id: str) -> str:
        return self.stream(stream_id, "clip")

    def tag(self, stream_id: str, label: str) -> str:
        """``{prefix}/{stream}/tags/{label}``: whether an event with that tag is open (a label that is not one
        topic level is refused)."""
        if not LEVEL_RE.match(label):
            raise ConfigError(f"tag {label!r} cannot be an MQTT topic level")
        return self.stream(stream_id, f"tags/{label}")
