"""Home Assistant MQTT discovery: each stream becomes a device with an activity, its scores, its status and its
last snapshot, with no YAML to write.

With ``[homeassistant] discovery = true`` (or ``--homeassistant``) every stream gets, retained at
``{ha}/{component}/{node}/{object}/config`` (``{ha}``: the discovery prefix, ``homeassistant``; ``{node}``:
``{prefix}_{stream}`` with ``/`` as ``_``, e.g. ``streamer_front``):

==================  =============  ========================================================================
object              component      state
==================  =============  ========================================================================
``activity``        binary_sensor  ``{prefix}/{stream}/activity``: ``ON`` while an event is open, else ``OFF``
                                   (retained); device class ``motion`` or ``sound`` (``device_class``)
``score``           sensor         ``{prefix}/{stream}/levels`` (JSON, QoS 0, every ``interval`` s): the
``s_v``, ``s_a``                   highest S, S_v, S_a since the last message; ``state_class: measurement``
``status``          sensor         ``{prefix}/{stream}/status`` (enum: connecting, online, ...)
``snapshot``        image          ``{prefix}/{stream}/snapshot`` (the last event's peak, JPEG)
``zone_{zone}``     binary_sensor  per zone of the stream (``docs/zones.md``), named "{zone} motion":
                                   ``{prefix}/{stream}/zones/{zone}/activity``: ``ON`` while the zone has an
                                   event open, else ``OFF`` (retained); device class ``motion``
``detection``       switch         with live control (``--control``): detection on or off, state from
                                   ``{prefix}/{stream}/settings``, commands to ``{prefix}/{stream}/set``
``threshold``       number         with live control: the stream's threshold (0.01-1), likewise
``zone_{zone}_``    number         with live control: each zone's threshold, likewise
``threshold``
``tag_{label}``     binary_sensor  per tag label announced (``speech`` with speech tags on, ``docs/tags.md``),
                                   named "{Label}": ``{prefix}/{stream}/tags/{label}`` (JSON ``state``):
                                   ``ON`` while an event with that tag is open, else ``OFF``
==================  =============  ========================================================================

Availability: the analyzer's ``{prefix}/status`` (its will says ``offline``) and, for the activities and the
scores, the stream's status being ``online`` (``availability_mode: all``). The configs are sent on every
connection to the broker and again when Home Assistant announces itself (``{ha}/status`` = ``online``). A
stream that leaves gets empty retained configs (Home Assistant removes its entities): at once when it is
removed while running (a cluster's config reload), and at start-up for streams an earlier run announced and
the config no longer has (they are listed, retained, on ``{prefix}/homeassistant/streams``, a zone as
``{stream}/{zone}``: a zone an earlier run announced and the config no longer has goes too). Payloads hold no
source URL and no credential: names come from stream ids and zone names, which never carry one.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import time
from dataclasses import dataclass
from typing import Any

from pipelines.config import HomeAssistantConfig, StreamConfig
from pipelines.outputs.observers import Observer, streamer_version
from pipelines.stages.events import Event, Scores, rounded
from pipelines.stages.outbox import Kind, Message, Outbox
from pipelines.stages.publishing import DISABLED
from pipelines.stages.stats import Stamps
from pipelines.stages.topics import Topics
from streamer.media import SourceState
from streamer.spec import STREAM_ID_RE

log = logging.getLogger("streamer")

# each entity's object id and its Home Assistant component
COMPONENTS = {"activity": "binary_sensor", "score": "sensor", "s_v": "sensor", "s_a": "sensor", "status": "sensor",
              "snapshot": "image", "detection": "switch", "threshold": "number"}  # fmt: skip
STATUS_OPTIONS = [s.value for s in SourceState] + [DISABLED]
REGISTRY_WAIT = 2.0  # seconds after connecting with no retained registry: there is none
ONLINE_ONLY = "{{ 'online' if value == 'online' else 'offline' }}"


AUDIO_LABELS = frozenset({"speech"})  # labels of sounds: their sensors' device class is "sound"


def node_id(prefix: str, stream_id: str) -> str:
    """``{prefix}_{stream}`` with ``/`` as ``_`` (``streamer_front``): unique per site and stream."""
    return f"{prefix.replace('/', '_')}_{stream_id}"


def config_topic(ha_prefix: str, component: str, node: str, obj: str) -> str:
    return f"{ha_prefix}/{component}/{node}/{obj}/config"


def zone_object(zone: str) -> str:
    """A zone's entity's object id (its component: ``binary_sensor``)."""
    return f"zone_{zone}"


def zone_threshold_object(zone: str) -> str:
    """A zone's threshold entity's object id (its component: ``number``; with live control)."""
    return f"zone_{zone}_threshold"


def tag_object(label: str) -> str:
    """A tag label's entity's object id (its component: ``binary_sensor``)."""
    return f"tag_{label}"


def discovery_configs(
    stream: StreamConfig, topics: Topics, ha_prefix: str, *, control: bool = False, tags: tuple[str, ...] = ()
) -> dict[str, dict[str, Any]]:
    """``{config topic: payload}`` for one stream's entities (the documented payloads)."""
    sid = stream.stream_id
    node = node_id(topics.prefix, sid)
    site = {"topic": topics.status, "payload_available": "online", "payload_not_available": "offline"}
    stream_online = {"topic": topics.stream_status(sid), "value_template": ONLINE_ONLY}
    device = {
        "identifiers": [node],
        "name": sid,
        "manufacturer": "streamer",
        "model": "A/V stream analyzer",
        "sw_version": streamer_version(),
    }
    origin = {"name": "streamer", "sw_version": streamer_version()}

    def entity(obj: str, name: str, live: bool, component: str = "", **fields: Any) -> tuple[str, dict[str, Any]]:
        component, unique = component or COMPONENTS.get(obj, "binary_sensor"), f"{node}_{obj}"  # not listed: a zone's
        payload: dict[str, Any] = {
            "name": name,
            "unique_id": unique,
            "default_entity_id": f"{component}.{unique}",
            "device": device,
            "origin": origin,
            "availability": [site, stream_online] if live else [site],
            "availability_mode": "all",
            **fields,
        }
        return config_topic(ha_prefix, component, node, obj), payload

    levels = topics.stream(sid, "levels")
    sensors = [
        entity(key, label, True, state_topic=levels, value_template=f"{{{{ value_json.{key} }}}}",
               state_class="measurement", suggested_display_precision=2, icon=icon, expire_after=60)
        for key, label, icon in (("score", "Activity score", "mdi:pulse"), ("s_v", "Video activity", "mdi:cctv"),
                                 ("s_a", "Audio activity", "mdi:microphone"))
    ]  # fmt: skip
    controls = []
    if control:  # live control (pipelines.stages.control): bound to the stream's set and settings topics
        command, settings = topics.stream(sid, "set"), topics.stream(sid, "settings")
        slider: dict[str, Any] = {"command_topic": command, "state_topic": settings, "min": 0.01, "max": 1.0,
                                  "step": 0.01, "mode": "slider", "entity_category": "config"}  # fmt: skip
        controls = [
            entity("detection", "Detection", False, command_topic=command, state_topic=settings,
                   payload_on='{"enabled":true}', payload_off='{"enabled":false}', state_on="ON", state_off="OFF",
                   value_template="{{ 'ON' if value_json.enabled else 'OFF' }}", entity_category="config",
                   icon="mdi:motion-sensor"),
            entity("threshold", "Threshold", False, command_template='{"threshold": {{ value }}}',
                   value_template="{{ value_json.threshold }}", icon="mdi:tune", **slider),
            *[entity(zone_threshold_object(z.name), f"{z.name} threshold", False, component="number",
                     command_template=f'{{"zones": {{"{z.name}": {{{{ value }}}}}}}}',
                     value_template=f"{{{{ value_json.zones['{z.name}'] }}}}", icon="mdi:tune", **slider)
              for z in stream.zones],
        ]  # fmt: skip
    return dict([
        *controls,
        entity("activity", "Activity", True, state_topic=topics.stream(sid, "activity"),
               payload_on="ON", payload_off="OFF", device_class=stream.activity_class),
        *sensors,
        entity("status", "Status", False, state_topic=topics.stream_status(sid), device_class="enum",
               options=STATUS_OPTIONS, entity_category="diagnostic", icon="mdi:video-check"),
        entity("snapshot", "Last event", False, image_topic=topics.snapshot(sid), content_type="image/jpeg"),
        *[entity(zone_object(z.name), f"{z.name} motion", True, state_topic=topics.zone(sid, z.name, "activity"),
                 payload_on="ON", payload_off="OFF", device_class="motion") for z in stream.zones],
        *[entity(tag_object(label), label.replace("_", " ").capitalize(), True, state_topic=topics.tag(sid, label),
                 value_template="{{ value_json.state }}", payload_on="ON", payload_off="OFF",
                 device_class="sound" if label in AUDIO_LABELS else "occupancy") for label in tags],
    ])  # fmt: skip


@dataclass
class _Levels:
    score: float = -math.inf
    s_v: float | None = None
    s_a: float | None = None

    def add(self, s: Scores) -> None:
        self.score = max(self.score, s.score)
        if s.has_v:
            self.s_v = s.s_v if self.s_v is None else max(self.s_v, s.s_v)
        if s.has_a:
            self.s_a = s.s_a if self.s_a is None else max(self.s_a, s.s_a)


def _listed(entry: str) -> bool:
    """A registry entry: a stream id, or ``{stream}/{zone}``."""
    sid, slash, zone = entry.partition("/")
    return bool(STREAM_ID_RE.match(sid)) and (not slash or bool(STREAM_ID_RE.match(zone)))


class HomeAssistant(Observer):
    """Discovery configs, the activity state and the throttled score sensors, queued in the analyzer's outbox.
    ``registry``: prune what an earlier run announced (off for a cluster's workers, which hold a share each)."""

    def __init__(
        self, config: HomeAssistantConfig, topics: Topics, outbox: Outbox, *, registry: bool = True,
        snapshots: bool = True, control: bool = False, tags: tuple[str, ...] = (),
    ) -> None:  # fmt: skip
        self.config = config
        self.tags = tags  # the tag labels announced as binary sensors
        self.control = control  # announce the live-control switch and numbers
        self.snapshots = snapshots  # announce the image entity (the snapshots are published)
        self.topics = topics
        self.outbox = outbox
        self.registry_topic = f"{topics.prefix}/homeassistant/streams" if registry else None
        self.birth_topic = f"{config.prefix}/status"
        self.streams: dict[str, StreamConfig] = {}
        self._levels: dict[str, _Levels] = {}
        self._announced: list[str] | None = None  # what the registry said, once read
        self._connected_at: float | None = None

    # -- what the publisher hears --------------------------------------------------------------------------

    def subscriptions(self) -> list[str]:
        return [self.birth_topic] + ([self.registry_topic] if self.registry_topic else [])

    def connected(self) -> None:
        """A new connection to the broker: (re)send every config (a broker without persistence forgot them)."""
        self._connected_at = time.monotonic()
        self._send_all()

    def received(self, topic: str, payload: bytes) -> None:
        if topic == self.birth_topic:
            if payload.strip() == b"online":
                log.info("homeassistant: Home Assistant is online; sending the discovery configs again")
                self._send_all()
        elif topic == self.registry_topic:
            self._read_registry(payload)

    def _read_registry(self, payload: bytes) -> None:
        """The retained list from before this run (read once: later messages are this run's own echoes, or a
        second process on the same prefix, which must not start a tug of war): remove what is gone."""
        if self._announced is not None:
            return
        try:
            listed = json.loads(payload or b"[]")
        except ValueError:
            listed = []
        listed = [s for s in listed if isinstance(s, str) and _listed(s)] if isinstance(listed, list) else []
        for entry in listed:
            sid, _, zone = entry.partition("/")
            if not zone and sid not in self.streams:
                log.info("homeassistant: stream '%s' is no longer configured; removing its entities", sid)
                self._remove_configs(sid)
            elif zone and zone not in self._zones(sid):
                log.info("homeassistant: zone '%s' of stream '%s' is no longer configured; removing its entity",
                         zone, sid)  # fmt: skip
                self._remove_zone(sid, zone)
        self._announced = listed
        self._send_registry()

    # -- the analyzer's side -------------------------------------------------------------------------------

    def stream_added(self, stream: StreamConfig) -> None:
        self.streams[stream.stream_id] = stream
        self._levels[stream.stream_id] = _Levels()
        self._queue(self.topics.stream(stream.stream_id, "activity"), b"OFF", "status")
        for zone in stream.zones:
            self._queue(self.topics.zone(stream.stream_id, zone.name, "activity"), b"OFF", "status")
        self._send_configs(stream)
        self._send_registry()

    def stream_removed(self, stream_id: str) -> None:
        """Removed while running: its entities go too, but not on a cluster's worker (``registry`` off): there
        a stream also leaves a worker when it moves, and the next worker's configs could arrive first."""
        if stream_id not in self.streams:
            return
        if self.registry_topic is not None:
            self._remove_configs(stream_id)
        self.streams.pop(stream_id)
        self._levels.pop(stream_id, None)
        self._send_registry()

    def scored(self, stream_id: str, scores: Scores, stamps: Stamps) -> None:
        levels = self._levels.get(stream_id)
        if levels is not None:
            levels.add(scores)

    def event(self, event: Event) -> None:
        """The stream's activity follows its events, a zone's activity its zone's."""
        state = b"ON" if event.type == "start" else b"OFF"
        if event.zone is None:
            self._queue(self.topics.stream(event.stream, "activity"), state, "status")
        else:
            self._queue(self.topics.zone(event.stream, event.zone, "activity"), state, "status")

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.config.interval)
            self.publish_levels()
            waited = None if self._connected_at is None else time.monotonic() - self._connected_at
            if self._announced is None and waited is not None and waited > REGISTRY_WAIT:
                self._read_registry(b"[]")  # nothing retained: no earlier run announced anything

    def publish_levels(self) -> None:
        for sid, levels in self._levels.items():
            if levels.score == -math.inf:
                continue
            payload = {"score": round(levels.score, 4), "s_v": rounded(levels.s_v), "s_a": rounded(levels.s_a)}
            self._queue(self.topics.stream(sid, "levels"), json.dumps(payload).encode(), "score", qos=0, retain=False)
            self._levels[sid] = _Levels()

    # -- messages -----------------------------------------------------------------------------------------

    def _send_all(self) -> None:
        for stream in self.streams.values():
            self._send_configs(stream)

    def _send_configs(self, stream: StreamConfig) -> None:
        configs = discovery_configs(stream, self.topics, self.config.prefix, control=self.control, tags=self.tags)
        for topic, payload in configs.items():
            if not self.snapshots and topic.endswith("/snapshot/config"):
                continue
            self._queue(topic, json.dumps(payload, separators=(",", ":")).encode(), "state")

    def _remove_configs(self, stream_id: str) -> None:
        node = node_id(self.topics.prefix, stream_id)
        for obj, component in COMPONENTS.items():
            self._queue(config_topic(self.config.prefix, component, node, obj), b"", "state")
        for label in self.tags:
            self._queue(config_topic(self.config.prefix, "binary_sensor", node, tag_object(label)), b"", "state")
        self._queue(self.topics.stream(stream_id, "activity"), b"", "status")  # its retained state goes too
        for zone in self._zones(stream_id):
            self._remove_zone(stream_id, zone)

    def _remove_zone(self, stream_id: str, zone: str) -> None:
        node = node_id(self.topics.prefix, stream_id)
        self._queue(config_topic(self.config.prefix, "binary_sensor", node, zone_object(zone)), b"", "state")
        self._queue(config_topic(self.config.prefix, "number", node, zone_threshold_object(zone)), b"", "state")
        self._queue(self.topics.zone(stream_id, zone, "activity"), b"", "status")

    def _zones(self, stream_id: str) -> list[str]:
        """The names of a configured stream's zones (none for a stream not configured)."""
        stream = self.streams.get(stream_id)
        return [] if stream is None else [z.name for z in stream.zones]

    def _send_registry(self) -> None:
        if self.registry_topic is not None and self._announced is not None:
            current = sorted([*self.streams, *(f"{sid}/{zone}" for sid in self.streams for zone in self._zones(sid))])
            if current != self._announced:
                self._announced = current
                self._queue(self.registry_topic, json.dumps(current).encode(), "state")

    def _queue(self, topic: str, payload: bytes, kind: Kind, *, qos: int = 1, retain: bool = True) -> None:
        self.outbox.put(Message(topic, payload, qos, retain, kind, time.time()))
