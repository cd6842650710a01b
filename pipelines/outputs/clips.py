"""Event clips on the analyzer's side (``[clips] dir``, ``--clips DIR``): which clip each event gets, where it
goes, what is said when it is written, and the folder kept within its size and age.

A stream's own event (not a zone's: a zone's event lies inside the stream's picture, and the stream's clip shows
it) asks its stream for a clip when it starts (:meth:`streamer.stream.Stream.clip`: the ingest process records
the stream's packets from the key frame before ``start - pre_roll``); once the analysis has passed ``end +
post_roll``, the clip is told where it ends. An event that starts before then joins that clip instead of starting
its own (events in a row, a busy scene: one clip, each event's messages naming it), so a stream records one clip
at a time. Files go to ``DIR/{stream}/{YYYYmmdd-HHMMSS}-{event id}.mp4`` (UTC, the event's start; ``.mkv``
where MP4 cannot hold the stream's codecs). The end event carries ``clip``: its path relative to the folder and
the media span it was asked for; once written, a ``clip`` message on ``{prefix}/{stream}/clip`` carries the
same path, the span it holds (from its first key frame) and its size. A clip that cannot be written (the folder
cannot be made or written, the disk is full) is one warning line per stream and cause; events go on without.

Retention, after each clip and at the start: clips older than ``max_age`` days go, then the oldest until the
folder's clips together are at most ``max_size`` MB (only ``*.mp4`` and ``*.mkv`` files under the folder count and
are deleted; a clip being written is a ``.part`` file, deleted only when a day old: its writer was killed).
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipelines.config import ClipsConfig
from streamer.clips import CLIP_EXTENSIONS, PART_EXTENSIONS, ClipInfo, container_suffix
from streamer.media import StreamInfo

if TYPE_CHECKING:
    from pipelines.stages.events import Event
    from pipelines.stages.lifecycle import StreamRuntime

log = logging.getLogger("streamer")

RECENT_CLIPS = 1000  # clips whose paths the analyzer remembers by event id (the web view's links)
STALE_PART = 86400.0  # seconds after which a clip still being written (``.part``) was left by a killed process

Spawn = Callable[[Coroutine[Any, Any, None], str], asyncio.Task[None]]
Told = Callable[[str, dict[str, Any]], None]  # (stream id, the clip message)


@dataclass(eq=False)
class _Clip:
    """A clip being recorded for a stream and the events it holds: the first started it (``key``, its id, names
    the recording); an event that starts before the clip's end has come joins it."""

    key: str
    planned: str  # its path in the folder, without the container's suffix
    start: float  # the media time it was asked from
    ends: dict[str, float | None]  # event id -> its end + post_roll (None: still open)

    @property
    def until(self) -> float | None:
        """Where the clip ends, once every event in it has ended (None: one is open)."""
        ends = list(self.ends.values())
        return None if any(e is None for e in ends) else max(e for e in ends if e is not None)


@dataclass(eq=False)
class ClipKeeper:
    """``told``: each written clip's message (the publisher, the observers, the metrics)."""

    config: ClipsConfig
    spawn: Spawn
    told: Told
    failed: Callable[[str], None] = lambda stream_id: None
    paths: dict[str, Path] = field(default_factory=dict)  # event id -> its written clip
    _open: dict[str, _Clip] = field(default_factory=dict)  # stream id -> its clip that events may still join
    _of: dict[str, _Clip] = field(default_factory=dict)  # event id -> its clip, until the event ends
    _warned: set[tuple[str, str]] = field(default_factory=set)
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)

    @property
    def folder(self) -> Path:
        assert self.config.folder is not None
        return self.config.folder

    def started(self, rt: StreamRuntime, event: Event) -> None:
        """A stream's event started: it joins the stream's clip being recorded, or starts one."""
        if rt.stream is None:
            return
        clip = self._open.get(rt.stream_id)
        if clip is None:
            stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime(event.wall_time))
            start = max(0.0, event.t - self.config.pre_roll)
            clip = self._open[rt.stream_id] = _Clip(event.id, f"{rt.stream_id}/{stamp}-{event.id}", start, {})
            made = rt.stream.clip(event.id, start, str(self.folder / clip.planned))
            task = self.spawn(self._written(rt.stream_id, clip, made), "clip")
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        clip.ends[event.id] = None
        self._of[event.id] = clip

    def ended(self, rt: StreamRuntime, event: Event) -> dict[str, Any] | None:
        """A stream's event ended: its clip ends ``post_roll`` later, unless another event joins it before. Returns
        what the end message says of it."""
        clip = self._of.pop(event.id, None)
        if rt.stream is None or event.start_t is None or clip is None:
            return None
        clip.ends[event.id] = event.t + self.config.post_roll
        if event.reason != "quiet":  # the stream stopped, was lost or switched off: no later event joins
            self._close(rt, clip)
        return {"path": clip.planned + _suffix(rt.info), "start": round(clip.start, 3),
                "end": round(event.t + self.config.post_roll, 3)}  # fmt: skip

    def progress(self, rt: StreamRuntime, t: float) -> None:
        """The stream's analysis reached media time ``t``: a clip whose end has come is closed to new events and
        told where it ends (its ingest writes it up to there)."""
        clip = self._open.get(rt.stream_id)
        if clip is not None and (until := clip.until) is not None and t >= until:
            self._close(rt, clip)

    def stopped(self, rt: StreamRuntime) -> None:
        """The stream's source ended or was lost (its open events ended): its clip is told where it ends now."""
        clip = self._open.get(rt.stream_id)
        if clip is not None:
            self._close(rt, clip)

    def _close(self, rt: StreamRuntime, clip: _Clip) -> None:
        if self._open.get(rt.stream_id) is clip:
            del self._open[rt.stream_id]
        until = clip.until
        if rt.stream is not None:
            rt.stream.clip_end(clip.key, until if until is not None else max(e or 0.0 for e in clip.ends.values()))

    async def _written(self, stream_id: str, clip: _Clip, made: Awaitable[ClipInfo | str]) -> None:
        result = await made
        if self._open.get(stream_id) is clip:
            del self._open[stream_id]  # it ended without being told (its stream stopped): no event joins it now
        if isinstance(result, str):
            self.failed(stream_id)
            # "clip PATH: why": one line per stream and cause, not per clip (the cause may name the path too)
            head, _, cause = result.partition(": ")
            cause = cause.replace(head.removeprefix("clip "), "PATH")
            if (stream_id, cause) not in self._warned:
                self._warned.add((stream_id, cause))
                log.warning("stream '%s': no clip: %s (said once per stream and cause)", stream_id, result)
            return
        path = Path(result.path)
        for event_id in clip.ends:
            self.paths[event_id] = path
            self.told(stream_id, {
                "id": event_id, "stream": stream_id, "path": _relative(path, self.folder),
                "start": round(result.start, 3), "end": round(result.end, 3), "bytes": result.size,
            })  # fmt: skip
        while len(self.paths) > RECENT_CLIPS:
            del self.paths[next(iter(self.paths))]
        await asyncio.to_thread(self.retain)

    def retain(self) -> int:
        """Delete clips past the age limit, then the oldest past the size limit; returns how many went."""
        folder = self.config.folder
        if folder is None or not folder.is_dir():
            return 0
        clips: list[tuple[float, int, str]] = []
        stale = time.time() - STALE_PART
        for root, _, names in os.walk(folder):
            for name in names:
                if name.endswith(PART_EXTENSIONS):
                    _remove_if_older(os.path.join(root, name), stale)  # a clip whose writer was killed
                elif name.endswith(CLIP_EXTENSIONS):
                    path = os.path.join(root, name)
                    try:
                        st = os.stat(path)
                    except OSError:
                        continue
                    clips.append((st.st_mtime, st.st_size, path))
        clips.sort()
        oldest = time.time() - self.config.max_age * 86400
        budget = self.config.max_size * 1e6
        total = sum(size for _, size, _ in clips)
        gone = 0
        for mtime, size, path in clips:
            if mtime >= oldest and total <= budget:
                break
            try:
                os.remove(path)
            except OSError as exc:
                log.debug("clips: could not delete %s: %s", path, exc)
                continue
            total -= size
            gone += 1
        return gone

    async def close(self) -> None:
        """Wait for the clips being written (each stream's capture has ended: they finish with what came)."""
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=30.0)


def _suffix(info: StreamInfo | None) -> str:
    if info is None:
        return ".mp4"
    return container_suffix(*(part.codec for part in (info.video, info.audio) if part is not None))


def _relative(path: Path, folder: Path) -> str:
    try:
        return path.relative_to(folder).as_posix()
    except ValueError:
        return path.as_posix()


def _remove_if_older(path: str, than: float) -> None:
    try:
        if os.stat(path).st_mtime < than:
            os.remove(path)
    except OSError:
        pass
