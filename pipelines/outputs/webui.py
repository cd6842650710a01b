"""The live web view (``--ui :8080``): per stream, S, S_v and S_a over the last minute with the threshold and the
event spans, its status and frame rates, its latest snapshot (the event's peak box drawn on it, and the box of an
event going on over it), and the recent events with where they happened (the box, a zone's name).

Served by the analyzer itself (:mod:`pipelines.outputs.web`), read-only, from one page with no build step and nothing
fetched from elsewhere (``static/index.html``):

* ``GET /``: the page;
* ``GET /api/live``: server-sent events. The first message (``type: "state"``) holds everything (the streams'
  settings, the last minute of scores, statuses, rates, the recent events); then every ``PUSH_PERIOD`` s one
  ``type: "update"`` message with what is new. A client that cannot keep up is dropped (it reloads); past
  ``MAX_CLIENTS`` open at once, a new one gets HTTP 503 with a one-line body;
* ``GET /api/state``: the same first message as JSON;
* ``GET /api/snapshot/{stream}``: the stream's latest event snapshot (JPEG; 404 before its first).
"""

from __future__ import annotations

import asyncio
import json
import math
import time
from collections import OrderedDict, deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib.resources import files
from pathlib import Path
from typing import Any

from aiohttp import web

from pipelines.config import StreamConfig
from pipelines.outputs.observers import AnalyzerView, Observer, streamer_version
from pipelines.stages.events import Event, Scores, rounded
from pipelines.stages.stats import Rates, Stamps
from streamer.media import SourceState

HISTORY_S = 60.0  # media seconds of scores kept per stream
PUSH_PERIOD = 0.25  # seconds between updates to the browsers
RECENT_EVENTS = 50
CLIENT_QUEUE = 64  # updates a browser may be behind before it is dropped
# Live views open at once. Each costs a write every PUSH_PERIOD on the analyzer's own event loop (the one that
# batches and publishes) and up to CLIENT_QUEUE updates of memory: a few people watching is what the view is for,
# while an unbounded number (a script or a reload loop opening streams) would take its time from the analysis.
MAX_CLIENTS = 16
BUSY = f"too many live views open (at most {MAX_CLIENTS}): close one and reload\n"


@dataclass
class _Stream:
    config: StreamConfig
    points: deque[tuple[float, float, float | None, float | None]]  # (t, S, S_v, S_a)
    fresh: list[tuple[float, float, float | None, float | None]] = field(default_factory=list)
    state: str = "connecting"
    snapshot: bytes | None = None
    snapshot_n: int = 0

    def describe(self) -> dict[str, Any]:
        c = self.config
        return {
            "threshold": c.events.threshold, "alpha": c.alpha, "beta": c.beta, "hop": c.sync.hop,
            "live": c.spec.is_live, "kind": c.spec.kind.value,
        }  # fmt: skip


class LiveView(Observer):
    wants_snapshots = True

    def __init__(self, analyzer: AnalyzerView) -> None:
        self.analyzer = analyzer
        self.streams: dict[str, _Stream] = {}
        self.events: deque[dict[str, Any]] = deque(maxlen=RECENT_EVENTS)
        self._fresh_events: list[dict[str, Any]] = []
        self._changed: set[str] = set()  # streams whose status or snapshot changed
        self._removed: list[str] = []
        self._clients: set[asyncio.Queue[bytes | None]] = set()
        self._rates = Rates(5.0)
        self._fps: dict[str, tuple[float, float]] = {}
        # event clips (--clips): the written ones by event id (the analyzer's ClipKeeper.paths), the recent ones told
        self.clip_paths: Mapping[str, Path] = {}
        self.clips: deque[str] = deque(maxlen=RECENT_EVENTS)
        self._fresh_clips: list[str] = []
        self.tags: OrderedDict[str, list[str]] = OrderedDict()  # event id -> its tags ("speech 0.83"), the recent
        self._fresh_tags: dict[str, list[str]] = {}

    # -- fed by the analyzer ----------------------------------------------------------------------------------

    def stream_added(self, stream: StreamConfig) -> None:
        keep = math.ceil(HISTORY_S / stream.sync.hop) + 1
        self.streams[stream.stream_id] = _Stream(stream, deque(maxlen=keep))
        self._changed.add(stream.stream_id)

    def stream_removed(self, stream_id: str) -> None:
        if self.streams.pop(stream_id, None) is not None:
            self._removed.append(stream_id)

    def scored(self, stream_id: str, scores: Scores, stamps: Stamps) -> None:
        s = self.streams.get(stream_id)
        if s is not None:
            point = (round(scores.t, 3), round(scores.score, 4), rounded(scores.shown_v), rounded(scores.shown_a))
            s.points.append(point)
            s.fresh.append(point)

    def event(self, event: Event) -> None:
        d = event.as_dict()
        self.events.append(d)
        self._fresh_events.append(d)

    def state(self, stream_id: str, state: SourceState) -> None:
        s = self.streams.get(stream_id)
        if s is not None:
            s.state = state.value
            self._changed.add(stream_id)

    def snapshot(self, stream_id: str, jpeg: bytes) -> None:
        s = self.streams.get(stream_id)
        if s is not None:
            s.snapshot, s.snapshot_n = jpeg, s.snapshot_n + 1
            self._changed.add(stream_id)

    def clip(self, stream_id: str, clip: dict[str, Any]) -> None:
        self.clips.append(clip["id"])
        self._fresh_clips.append(clip["id"])

    def tagged(self, event: Event, tags: list[dict[str, Any]]) -> None:
        shown = [f"{t['label']} {t['confidence']:.2f}" for t in tags]
        self.tags[event.id] = self._fresh_tags[event.id] = shown
        self.tags.move_to_end(event.id)
        while len(self.tags) > RECENT_EVENTS:
            self.tags.popitem(last=False)

    # -- what the browsers get ---------------------------------------------------------------------------------

    def _info(self, sid: str, s: _Stream) -> dict[str, Any]:
        fps_in, fps_out = self._fps.get(sid, (0.0, 0.0))
        return {"state": s.state, "fps_in": round(fps_in, 1), "fps_out": round(fps_out, 1),
                "snapshot": s.snapshot_n}  # fmt: skip

    def full_state(self) -> dict[str, Any]:
        return {
            "type": "state",
            "version": streamer_version(),
            "device": self.analyzer.device_name,
            "wall_time": time.time(),
            "streams": {
                sid: {**s.describe(), **self._info(sid, s), "points": list(s.points)} for sid, s in self.streams.items()
            },
            "events": list(self.events),
            "clips": list(self.clips),
            "tags": dict(self.tags),
        }

    def _update(self) -> dict[str, Any]:
        points = {sid: s.fresh for sid, s in self.streams.items() if s.fresh}
        for s in self.streams.values():
            s.fresh = []
        info = {sid: self._info(sid, s) for sid, s in self.streams.items()}
        added = [sid for sid in self._changed if sid in self.streams]
        update = {
            "type": "update", "wall_time": time.time(), "points": points, "info": info,
            "events": self._fresh_events, "clips": self._fresh_clips, "tags": self._fresh_tags,
            "removed": self._removed,
            "added": {sid: self.streams[sid].describe() for sid in added},
        }  # fmt: skip
        self._fresh_events, self._fresh_clips, self._removed, self._changed = [], [], [], set()
        self._fresh_tags = {}
        return update

    async def run(self) -> None:
        ticks = 0
        try:
            while True:
                await asyncio.sleep(PUSH_PERIOD)
                ticks += 1
                if ticks % int(1 / PUSH_PERIOD) == 0:
                    self._fps = self._rates.sample(self.analyzer.stream_counts())
                update = self._update()
                if not self._clients:
                    continue
                data = _sse(update)
                for queue in list(self._clients):
                    if queue.full():  # too slow: drop it (its page reconnects and starts over)
                        _end(queue)
                        self._clients.discard(queue)
                    else:
                        queue.put_nowait(data)
        finally:
            for queue in self._clients:  # the analyzer ends: close every stream
                _end(queue)

    async def live(self, request: web.Request) -> web.StreamResponse:
        if request.method == "HEAD":  # what it would be, without taking a live view's place for ever
            return web.Response(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
        if len(self._clients) >= MAX_CLIENTS:
            return web.Response(status=503, text=BUSY, headers={"Retry-After": "10"})
        queue: asyncio.Queue[bytes | None] = asyncio.Queue(CLIENT_QUEUE)
        self._clients.add(queue)  # counted before the first await: clients arriving together see each other
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache",
                                               "X-Accel-Buffering": "no"})  # fmt: skip
        try:
            await response.prepare(request)
            await response.write(_sse(self.full_state()))
            while (data := await queue.get()) is not None:
                await response.write(data)
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            self._clients.discard(queue)
        return response


def _end(queue: asyncio.Queue[bytes | None]) -> None:
    """Make the client's handler end (it stops at None): what it had not sent yet is dropped."""
    while not queue.empty():
        queue.get_nowait()
    queue.put_nowait(None)


def _sse(message: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(message, separators=(",", ":")).encode() + b"\n\n"


def ui_app(view: LiveView) -> web.Application:
    page = files("pipelines.outputs").joinpath("static/index.html").read_bytes()

    async def index(request: web.Request) -> web.Response:
        return web.Response(body=page, content_type="text/html", charset="utf-8")

    async def state(request: web.Request) -> web.Response:
        return web.json_response(view.full_state())

    async def snapshot(request: web.Request) -> web.Response:
        s = view.streams.get(request.match_info["stream"])
        if s is None or s.snapshot is None:
            raise web.HTTPNotFound(text="no snapshot yet\n")
        return web.Response(body=s.snapshot, content_type="image/jpeg", headers={"Cache-Control": "no-store"})

    async def clip(request: web.Request) -> web.StreamResponse:
        """An event's clip, by its id: only clips this analyzer wrote (ranges served, so a browser can seek)."""
        path = view.clip_paths.get(request.match_info["event"])
        if path is None or not path.is_file():
            raise web.HTTPNotFound(text="no clip for that event\n")
        kind = "video/mp4" if path.suffix == ".mp4" else "video/x-matroska"
        return web.FileResponse(path, headers={"Content-Type": kind, "Cache-Control": "no-store"})

    app = web.Application()
    app.router.add_get("/", index)
    app.router.add_get("/api/clip/{event}", clip)
    app.router.add_get("/api/live", view.live)
    app.router.add_get("/api/state", state)
    app.router.add_get("/api/snapshot/{stream}", snapshot)
    return app
