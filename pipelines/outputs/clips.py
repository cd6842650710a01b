"""Event clips on the analyzer's side (``[clips] dir``, ``--clips DIR``): which clip each event gets, where it
goes, what is said when it is written, and the folder kept within its size and age.

A stream's own event (not a zone's: a zone's event lies inside the stream's picture, and the stream's clip shows
it) asks its stream for a clip when it starts (:meth:`streamer.stream.Stream.clip`: the ingest process records
the stream's packets from the key frame before ``start - pre_roll``) and says where it ends when it ends (``end +
post_roll``). Files go to ``DIR/{stream}/{YYYYmmdd-HHMMSS}-{event id}.mp4`` (UTC, the event's start; ``.mkv``
where MP4 cannot hold the stream's codecs). The end event carries ``clip``: its path relative to the folder and
the media span it was asked for; once written, a ``clip`` message on ``{prefix}/{stream}/clip`` carries the
same path, the span it holds (from its first key frame) and its size. A clip that cannot be written (the folder
cannot be made or written, the disk is full) is one warning line per stream and cause; events go on without.

Retention, after each clip and at the start: clips older than ``max_age`` days go, then the oldest until the
folder's clips together are at most ``max_size`` MB (only ``*.mp4`` and ``*.mkv`` files under the folder count and
are deleted; a clip being written is a ``.part`` file).
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
from streamer.clips import CLIP_EXTENSIONS, ClipInfo, container_suffix
from streamer.media import StreamInfo

if TYPE_CHECKING:
    from pipelines.stages.events import Event
    from pipelines.stages.lifecycle import StreamRuntime

log = logging.getLogger("streamer")

RECENT_CLIPS = 1000  # clips whose paths the analyzer remembers by event id (the web view's links)

Spawn = Callable[[Coroutine[Any, Any, None], str], asyncio.Task[None]]
Told = Callable[[str, dict[str, Any]], None]  # (stream id, the clip message)


@dataclass(eq=False)
class ClipKeeper:
    """``told``: each written clip's message (the publisher, the observers, the metrics)."""

    config: ClipsConfig
    spawn: Spawn
    told: Told
    failed: Callable[[str], None] = lambda stream_id: None
    paths: dict[str, Path] = field(default_factory=dict)  # event id -> its written clip
    _planned: dict[str, str] = field(default_factory=dict)  # event id -> its clip's path in the folder, no suffix
    _warned: set[tuple[str, str]] = field(default_factory=set)
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)

    @property
    def folder(self) -> Path:
        assert self.config.folder is not None
        return self.config.folder

    def started(self, rt: StreamRuntime, event: Event) -> None:
        """A stream's event started: its clip starts recording."""
        if rt.stream is None:
            return
        stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime(event.wall_time))
        planned = self._planned[event.id] = f"{rt.stream_id}/{stamp}-{event.id}"
        made = rt.stream.clip(event.id, max(0.0, event.t - self.config.pre_roll), str(self.folder / planned))
        task = self.spawn(self._written(rt.stream_id, event.id, made), "clip")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def ended(self, rt: StreamRuntime, event: Event) -> dict[str, Any] | None:
        """A stream's event ended: its clip ends ``post_roll`` later. Returns what the end message says of it."""
        planned = self._planned.pop(event.id, None)
        if rt.stream is None or event.start_t is None or planned is None:
            return None
        until = event.t + self.config.post_roll
        rt.stream.clip_end(event.id, until)
        return {
            "path": planned + _suffix(rt.info),
            "start": round(max(0.0, event.start_t - self.config.pre_roll), 3),
            "end": round(until, 3),
        }

    async def _written(self, stream_id: str, event_id: str, made: Awaitable[ClipInfo | str]) -> None:
        result = await made
        if isinstance(result, str):
            self.failed(stream_id)
            if (stream_id, result) not in self._warned:
                self._warned.add((stream_id, result))
                log.warning("stream '%s': no clip: %s", stream_id, result)
            return
        path = Path(result.path)
        self.paths[event_id] = path
        while len(self.paths) > RECENT_CLIPS:
            del self.paths[next(iter(self.paths))]
        message = {
            "id": event_id, "stream": stream_id, "path": _relative(path, self.folder),
            "start": round(result.start, 3), "end": round(result.end, 3), "bytes": result.size,
        }  # fmt: skip
        self.told(stream_id, message)
        await asyncio.to_thread(self.retain)

    def retain(self) -> int:
        """Delete clips past the age limit, then the oldest past the size limit; returns how many went."""
        folder = self.config.folder
        if folder is None or not folder.is_dir():
            return 0
        clips: list[tuple[float, int, str]] = []
        for root, _, names in os.walk(folder):
            for name in names:
                if name.endswith(CLIP_EXTENSIONS):
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
