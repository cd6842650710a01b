"""Live control over MQTT (``[mqtt] control = true``, ``--control``): a stream's live settings changed from the
home automation while it runs ("no motion events from the garden camera while the mower runs").

* ``{prefix}/{stream}/set`` takes a JSON object of the stream's *live* settings (those the settings schema marks
  ``live``: :data:`LIVE_KEYS`, ``enabled``, ``threshold``, ``alpha``, ``beta``, ``min_gap``, ``zone_threshold``)
  and ``zones``: ``{"zone name": threshold}`` for its zones. Each value is checked as the config file's (the same
  :class:`~streamer.settings.Check`). A payload that is not a JSON object, an unknown key or zone, or a bad value
  refuses the whole command: nothing changes and ``{prefix}/{stream}/set/result`` says why in one line,
  ``{"ok": false, "error": "..."}``; an accepted command gets ``{"ok": true, "changed": [...]}``.
* An accepted change applies from the stream's next timestep (the detectors' options, the model's weights), is
  kept in the state file (:func:`pipelines.config.control_file`: ``[mqtt] control_file``, else next to the config
  file) and so survives a restart, and the stream's current live settings are published retained on
  ``{prefix}/{stream}/settings``.
* ``enabled: false``: the stream is still decoded and scored (turning it on again is instant, its scores still
  go out), but it has no events: an open event ends (``reason`` ``"disabled"``), and its status is ``disabled``
  while its source is online.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from pipelines.config import STREAM_KEYS, EventOptions, StreamConfig, section_settings
from pipelines.stages.topics import Topics
from streamer.errors import ConfigError
from streamer.settings import Setting, number, shown_value

log = logging.getLogger("streamer")

_LIVE: dict[str, Setting] = {k: s for k, s in section_settings("stream").items() if s.live}
LIVE_KEYS: tuple[str, ...] = tuple(_LIVE)
_ZONE_THRESHOLD = number(0, 1, lo_open=True)
MAX_PAYLOAD = 4096  # bytes of a command


def _events(setting: Setting) -> bool:
    """Whether a live setting is one of the stream's event options (``config.events``), else its own."""
    return setting.owner == EventOptions.__name__


def live_settings(config: StreamConfig) -> dict[str, Any]:
    """A stream's live settings as ``{prefix}/{stream}/settings`` shows them (zones: each one's threshold)."""
    from pipelines.stages.zones import threshold

    values = {key: getattr(config.events if _events(s) else config, s.name) for key, s in _LIVE.items()}
    return values | {"zones": {z.name: threshold(config, z) for z in config.zones}}


def checked(config: StreamConfig, command: Any) -> dict[str, Any]:
    """The changes ``command`` (a parsed JSON value) asks of the stream, checked; ConfigError says why not."""
    where = f"stream '{config.stream_id}'"
    if not isinstance(command, Mapping) or not command:
        raise ConfigError(f"{where}: expected a JSON object of live settings ({', '.join(LIVE_KEYS)}, zones)")
    changes: dict[str, Any] = {}
    for key, value in command.items():
        if key == "zones":
            if not isinstance(value, Mapping):
                raise ConfigError(f"{where}.zones: expected an object {{zone: threshold}}, got {shown_value(value)}")
            names = {z.name for z in config.zones}
            zones: dict[str, float] = {}
            for name, raw in value.items():
                if name not in names:
                    raise ConfigError(
                        f"{where}.zones: no zone {shown_value(name)} (zones: {', '.join(sorted(names)) or 'none'})"
                    )
                zones[name] = _ZONE_THRESHOLD(f"{where}.zones.{name}", raw)
            changes["zones"] = zones
        elif key in LIVE_KEYS:
            changes[key] = STREAM_KEYS[key](f"{where}.{key}", value)
        else:
            raise ConfigError(
                f"{where}: {shown_value(key)} is not a live setting (live: {', '.join(LIVE_KEYS)}, zones)"
            )
    return changes


def changed(config: StreamConfig, changes: Mapping[str, Any]) -> StreamConfig:
    """``config`` with ``changes`` (:func:`checked`'s) made."""
    given = [(s, changes[key]) for key, s in _LIVE.items() if key in changes]
    events = replace(config.events, **{s.name: value for s, value in given if _events(s)})
    top = {s.name: value for s, value in given if not _events(s)}
    zones = config.zones
    if "zones" in changes:
        zones = tuple(replace(z, threshold=changes["zones"].get(z.name, z.threshold)) for z in zones)
    return replace(config, events=events, zones=zones, **top)


class Control:
    """The publisher's listener for ``{prefix}/+/set``. ``configs()``: the analyzer's stream configs by id now;
    ``apply(stream_id, new_config)`` makes a change happen; ``queue(topic, payload, retain)`` publishes."""

    def __init__(
        self, topics: Topics, state_file: Path, configs: Callable[[], Mapping[str, StreamConfig]],
        apply: Callable[[str, StreamConfig], None], queue: Callable[[str, bytes, bool], None],
    ) -> None:  # fmt: skip
        self.topics = topics
        self.state_file = state_file
        self.configs = configs
        self.apply = apply
        self.queue = queue
        self.kept: dict[str, dict[str, Any]] = {}  # stream id -> the changes made so far (the state file's)

    # -- at start ------------------------------------------------------------------------------------------------

    def load(self) -> None:
        """The changes kept by an earlier run, made again (a stream's that no longer check: a warning each)."""
        try:
            kept = json.loads(self.state_file.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return
        except (OSError, ValueError) as exc:
            log.warning("control: cannot read %s (%s); starting from the configured settings", self.state_file, exc)
            return
        if not isinstance(kept, dict):
            log.warning("control: %s holds no settings object; starting from the configured settings", self.state_file)
            return
        configs = self.configs()
        for stream_id, command in kept.items():
            config = configs.get(stream_id)
            if config is None:
                self.kept[stream_id] = command  # a stream not configured now: kept for when it is again
                continue
            try:
                changes = checked(config, command)
            except ConfigError as exc:
                log.warning("control: %s: %s; not applied", self.state_file, exc)
                continue
            self.kept[stream_id] = _merged({}, changes)
            self.apply(stream_id, changed(config, changes))

    # -- what the publisher hears --------------------------------------------------------------------------------

    def subscriptions(self) -> list[str]:
        return [f"{self.topics.prefix}/+/set"]

    def connected(self) -> None:
        for stream_id, config in self.configs().items():
            self.publish(stream_id, config)

    def received(self, topic: str, payload: bytes) -> None:
        stream_id = topic[len(self.topics.prefix) + 1 : -len("/set")]
        config = self.configs().get(stream_id)
        if config is None:
            return  # not a stream of this analyzer (a cluster's other worker, a typo): nothing to answer
        try:
            if len(payload) > MAX_PAYLOAD:
                raise ConfigError(f"stream '{stream_id}': a command of {len(payload)} bytes (at most {MAX_PAYLOAD})")
            try:
                command = json.loads(payload)
            except (ValueError, UnicodeDecodeError):
                raise ConfigError(f"stream '{stream_id}': the command is not JSON: {payload[:80]!r}") from None
            changes = checked(config, command)
        except ConfigError as exc:
            log.warning("control: refused: %s", exc)
            self._result(stream_id, {"ok": False, "error": str(exc)})
            return
        new = changed(config, changes)
        self.apply(stream_id, new)
        self.kept[stream_id] = _merged(self.kept.get(stream_id, {}), changes)
        self._save()
        self.publish(stream_id, new)
        self._result(stream_id, {"ok": True, "changed": sorted(changes)})
        log.warning("control: stream '%s': %s", stream_id, json.dumps(changes, sort_keys=True))

    def publish(self, stream_id: str, config: StreamConfig) -> None:
        """The stream's current live settings, retained."""
        self.queue(self.topics.stream(stream_id, "settings"), _json(live_settings(config)), True)

    def _result(self, stream_id: str, result: dict[str, Any]) -> None:
        self.queue(self.topics.stream(stream_id, "set/result"), _json(result), False)

    def _save(self) -> None:
        """The kept changes, written whole to a temporary file then renamed over the state file."""
        folder = self.state_file.parent
        try:
            with tempfile.NamedTemporaryFile("w", dir=folder, prefix=".control-", delete=False, encoding="utf-8") as f:
                json.dump(self.kept, f, indent=1, sort_keys=True)
            os.replace(f.name, self.state_file)
        except OSError as exc:
            log.warning("control: cannot write %s (%s): the change holds until the analyzer stops", self.state_file,
                        exc)  # fmt: skip


def _merged(kept: Mapping[str, Any], changes: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(kept)
    for key, value in changes.items():
        out[key] = {**out.get(key, {}), **value} if key == "zones" else value
    return out


def _json(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()
