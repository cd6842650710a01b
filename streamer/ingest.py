"""Capture in ingest processes: demux, decode, resampling and timestep assembly out of the analyzer's process.

Why: in one process, every capture thread's per-packet Python work (a 10 ms Opus packet is decoded, resampled
and handed over on its own) and the model's many small torch calls all queue for one interpreter lock. Past
about a dozen live streams on 2 cores the threads spent more time passing the lock than holding it, and the model
starved (benchmarks/README.md, "Why capture left the analyzer's process"). Here each live stream runs in a
process of its own up to :data:`LIVE_PROCESSES_PER_CORE` processes a core, then live streams share them (files
share a few, one per core, since they wait for the model anyway), and the analyzer's process only scores,
detects and publishes.

* :class:`IngestHub` (in the analyzer) listens on a Unix socket in a private temporary directory, starts
  ``python -m streamer.ingest`` children (job on stdin: no credential on a command line), and gives each stream
  a :class:`RemoteStream`: ``async for ts in remote`` like :class:`~streamer.stream.Stream`, with the same
  ``on_state`` / ``on_info`` / ``on_gap`` callbacks and :class:`~streamer.errors.SourceError` at the end.
* A child runs each of its streams' :class:`~streamer.stream.Stream` (one capture thread each, as in-process)
  and sends every timestep over its stream's own connection (a length-prefixed pickle; one connection per stream
  so a waiting file never holds up another). Luma frames and audio travel; the full-resolution picture of a
  timestep's middle frame (the one a snapshot would show) stays in the child as :class:`KeptFrame` until the
  analyzer says that timestep is scored (``scored``), or *pins* it as an open event's peak (``pin``): then it
  is kept until the next pin and encoded as JPEG on request (``snapshot``, with the event's box drawn there).
  Memory per stream is flat: the frames of timesteps in flight plus one. An MP4/MOV or Matroska file's frames hold
  no picture (:class:`~streamer.av_input.FileFrame`: it is decoded again from the file when asked for), so such a
  file runs up to :data:`FILE_INBOX` timesteps ahead; other files up to :data:`RESIDENT_LIMIT`.
* Flow: a file's timesteps wait when the analyzer's lane is full (the connection stops being read, the child's
  ``drain`` waits, its decode thread waits: nothing is lost); a live stream's lane drops its oldest instead, so its
  connection is always read. Children run at the lowest priority (``nice`` 19, :data:`NICE`): when the cores
  are short, capture falls behind and drops (counted), the model does not starve. The scheduler weighs each
  *thread* by its nice value, and a child runs a capture thread per stream: at nice 10 (weight 110 against the
  analyzer's 1024 a thread) 40 capture threads outweighed the model's thread four to one, which then waited on
  the run queue almost as long as it ran (schedstat: 35% running, 26% waiting); at 19 (weight 15) they weigh
  less than it up to about 64 streams (48 live 360p streams: the model stage's p99 19-55 ms against 92-103).
* A child ends when the analyzer closes the connections or goes away (end of file on the socket); the
  terminal's Ctrl-C does not reach it (its own process group): the analyzer stops it.
* A live stream's child that dies (a crash in a decoder, the OOM killer) is started again after a backoff
  (1 s doubling to 30 s), like a reconnect: the stream goes ``reconnecting``, an open event ends (a gap), and
  its timesteps go on from the wall-clock time elapsed, on the same timeline (the new child's own count starts
  at 0: :class:`RemoteStream` shifts it). The new child runs those of the dead one's streams still going on. A
  file's or a finite source's dead child ends its streams with a one-line
  :class:`~streamer.errors.SourceError` instead. The other children's streams go on either way.
* Children stay in the analyzer's session: with the kernel's autogroup scheduling each session shares the CPU
  equally whatever its nice value, so children in sessions of their own starved the analyzer (16 streams: its
  threads waited on the run queue about 90% of the time).
"""

from __future__ import annotations

import asyncio
import contextlib
import copyreg
import logging
import os
import pickle
import shutil
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, ClassVar

from . import errors
from .clips import ClipInfo, wait_for_writers
from .errors import SourceError
from .media import Box, Discontinuity, FullFrame, SourceState, StateChange, StreamInfo, Timestep, VideoFrame
from .options import SourceOptions
from .snapshot import encode_jpeg
from .spec import SourceSpec
from .sync import SyncOptions

log = logging.getLogger(__name__)

_HEADER = 4  # bytes of big-endian length before each pickled message
INBOX = 4  # messages a RemoteStream holds before it stops reading its connection (backpressure)
# A file's timesteps run ahead further (about 50 KB each at the default sizes): its ingest process goes on
# decoding while the analyzer starts (importing torch: 2-3 s) or scores a batch. An MP4/MOV or Matroska file
# keeps no decoded picture per timestep (its snapshots are decoded again); other files (MPEG-TS, AVI, ...) and
# frames without a timestamp keep theirs, and such a stream waits once RESIDENT_LIMIT of them are held.
FILE_INBOX = 256
RESIDENT_LIMIT = 48
SNAPSHOT_TIMEOUT = 10.0
CLIP_WRITE_GRACE = 5.0  # seconds an exiting ingest process waits for the clips being written
# Live streams beyond this many processes a core share them. A process's fixed costs (its interpreter, event
# loop, wake-ups, scheduling) then serve several streams: 16 live 320x240 streams on 2 cores cost 4.8% of a core
# each, 4 to a process, against 6.6% alone; at 32 streams 2 a core (8 to a process) gave the lowest added p99 of
# 1, 2 and 4 (benchmarks/README.md, "Live capacity"). The price: a crash in one stream's decoder restarts the
# streams it shares a process with.
LIVE_PROCESSES_PER_CORE = 2
NICE = 19  # the children's priority: the lowest (see the module's docstring)
RESTART_BACKOFF = (1.0, 30.0)  # a live stream's dead ingest process: first and longest wait before a new one


@dataclass(frozen=True)
class IngestStream:
    """What a child needs to run one stream."""

    spec: SourceSpec
    options: SourceOptions
    sync: SyncOptions
    clip_keep: float | None = None  # event clips: seconds of packets the stream keeps (None: no clips)


@dataclass(frozen=True)
class IngestJob:
    address: str  # the analyzer's Unix socket
    streams: tuple[IngestStream, ...]
    log_level: int = logging.WARNING
    nice: int = NICE


@dataclass(frozen=True, slots=True)
class KeptFrame:
    """Stands in a timestep's frame for its full-resolution picture, kept in the ingest process: timestep ``k``'s."""

    resident: ClassVar[bool] = False
    k: int

    def to_bgr(self) -> Any:
        raise RuntimeError("the full frame is kept in the ingest process: ask its RemoteStream for a snapshot")


def plan_processes(streams: Sequence[IngestStream], cores: int | None = None) -> list[list[IngestStream]]:
    """Group streams into ingest processes: each live stream alone, up to :data:`LIVE_PROCESSES_PER_CORE` processes
    a core, then dealt round-robin over that many; the others (files, synthetic) dealt round-robin over at most
    one process per core."""
    n_cores = max(1, cores or os.cpu_count() or 1)
    live = [s for s in streams if s.spec.is_live]
    rest = [s for s in streams if not s.spec.is_live]
    n_live = min(len(live), LIVE_PROCESSES_PER_CORE * n_cores)
    n = min(len(rest), n_cores)
    return [live[i::n_live] for i in range(n_live)] + [rest[i::n] for i in range(n)]


# -- wire --------------------------------------------------------------------------------------------------------


# Specs and options hold read-only mappings (MappingProxyType), which pickle cannot take as they are.
def _mapping_proxy(items: dict[str, Any]) -> MappingProxyType[str, Any]:
    return MappingProxyType(items)


copyreg.pickle(MappingProxyType, lambda m: (_mapping_proxy, (dict(m),)))


def _write(writer: asyncio.StreamWriter, message: tuple[Any, ...]) -> None:
    data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    writer.write(len(data).to_bytes(_HEADER, "big") + data)


async def _read(reader: asyncio.StreamReader) -> tuple[Any, ...]:
    size = int.from_bytes(await reader.readexactly(_HEADER), "big")
    message: tuple[Any, ...] = pickle.loads(await reader.readexactly(size))
    return message


def _error_message(exc: SourceError) -> tuple[Any, ...]:
    # SourceError's constructor takes (stream_id, cause): sent as fields, rebuilt as the same class
    return ("error", type(exc).__name__, exc.stream_id, exc.cause)


def _rebuild_error(name: str, stream_id: str, cause: str) -> SourceError:
    cls = getattr(errors, name, SourceError)
    if not (isinstance(cls, type) and issubclass(cls, SourceError)):
        cls = SourceError
    return cls(stream_id, cause)


# -- the analyzer's side ---------------------------------------------------------------------------------------


class RemoteStream:
    """One stream captured in an ingest process: ``async for ts in remote`` yields its timesteps in order."""

    def __init__(self, stream_id: str, *, restartable: bool = False, inbox: int = INBOX) -> None:
        self.stream_id = stream_id
        self.restartable = restartable  # a dead child is replaced (live streams) instead of ending the stream
        self._on_state: Callable[[StateChange], None] | None = None
        self._unheard: StateChange | None = None  # the latest state that came before anyone listened
        self.on_info: Callable[[StreamInfo], None] | None = None
        self.on_gap: Callable[[Discontinuity], None] | None = None
        self.dropped_video = 0  # video frames its capture dropped, over every child it had
        self._dropped_before = 0  # by the children before this one (each counts from 0)
        self._inbox: asyncio.Queue[tuple[Any, ...]] = asyncio.Queue(inbox)
        self._writer: asyncio.StreamWriter | None = None
        self._reader_task: asyncio.Task[None] | None = None
        self._replies: dict[int, asyncio.Future[bytes | None]] = {}
        self._clips: dict[int, asyncio.Future[ClipInfo | str]] = {}
        self._next_request = 0
        self._finished = False  # the stream's end (or failure) has been delivered
        self._exit: asyncio.Future[str] | None = None  # the child's exit, once its connection is up
        self._consumer_gone = False  # iteration stopped: what still arrives but snapshots is dropped
        # a replaced child counts its timesteps from 0 again: shift them past what came before
        self._k_offset = 0
        self._last: tuple[int, float, float] | None = None  # the last timestep yielded: k, end t, hop
        self._restarted_at: float | None = None  # wall time of the last child's death, until the next timestep

    @property
    def on_state(self) -> Callable[[StateChange], None] | None:
        return self._on_state

    @on_state.setter
    def on_state(self, callback: Callable[[StateChange], None] | None) -> None:
        """Set when its consumer starts; a state that came earlier (the source opened during start-up) is
        told at once."""
        self._on_state = callback
        if callback is not None and self._unheard is not None:
            change, self._unheard = self._unheard, None
            callback(change)

    @property
    def finished(self) -> bool:
        """The stream's end (or failure) has been delivered, or its consumer stopped."""
        return self._finished or self._consumer_gone

    def attach(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writer = writer
        self._exit = asyncio.get_running_loop().create_future()
        self._reader_task = asyncio.get_running_loop().create_task(self._pump(reader), name=f"ingest-{self.stream_id}")

    def fail(self, cause: str) -> None:
        """The child is gone: end the stream with ``cause`` unless it already ended."""
        if self._exit is not None:  # connected: the reader reports it when the connection ends
            if not self._exit.done():
                self._exit.set_result(cause)
        elif not self._finished:  # it died before connecting
            with contextlib.suppress(asyncio.QueueFull):
                self._inbox.put_nowait(("restart" if self.restartable else "lost", cause))

    async def _pump(self, reader: asyncio.StreamReader) -> None:
        try:
            while True:
                message = await _read(reader)
                kind = message[0]
                if kind == "jpeg":
                    future = self._replies.pop(message[1], None)
                    if future is not None and not future.done():
                        future.set_result(message[2])
                elif kind == "clipped":
                    clip = self._clips.pop(message[1], None)
                    if clip is not None and not clip.done():
                        clip.set_result(message[2])
                elif kind == "state":
                    if self._on_state is not None:
                        self._on_state(message[1])
                    else:
                        self._unheard = message[1]
                elif not self._consumer_gone:
                    await self._inbox.put(message)
        except (asyncio.IncompleteReadError, ConnectionError):
            cause = "the ingest process closed the connection"
            if self._exit is not None:  # name the child's exit code: it follows the closed connection closely
                with contextlib.suppress(TimeoutError):
                    cause = await asyncio.wait_for(asyncio.shield(self._exit), 3.0)
            if not self._consumer_gone:
                await self._inbox.put(("restart" if self.restartable else "lost", cause))
        except Exception as exc:  # a message this side cannot read: a bug, but only this stream's
            log.exception("stream '%s': bad message from the ingest process", self.stream_id)
            await self._inbox.put(("lost", f"bad message from the ingest process: {type(exc).__name__}: {exc}"))
        finally:
            for future in self._replies.values():
                if not future.done():
                    future.set_result(None)
            for clip in self._clips.values():
                if not clip.done():
                    clip.set_result("the ingest process ended before the clip was written")

    async def __aiter__(self) -> AsyncIterator[Timestep]:
        try:
            while True:
                message = await self._inbox.get()
                kind = message[0]
                if kind == "ts":
                    self.dropped_video = self._dropped_before + message[2]
                    yield self._on_timeline(message[1])
                elif kind == "restart":
                    self._dropped_before = self.dropped_video
                    self._restarted_at = time.time()
                    log.warning("stream '%s': %s; starting it again", self.stream_id, message[1])
                    if self.on_state is not None:
                        self.on_state(StateChange(self.stream_id, SourceState.RECONNECTING, message[1], None,
                                                  self._restarted_at))  # fmt: skip
                    if self.on_gap is not None and self._last is not None:
                        self.on_gap(Discontinuity(self._last[1], f"ingest process restarted: {message[1]}"))
                elif kind == "info":
                    if self.on_info is not None:
                        self.on_info(message[1])
                elif kind == "gap":
                    if self.on_gap is not None:
                        self.on_gap(message[1])
                elif kind == "end":
                    self._finished = True
                    return
                elif kind == "error":
                    self._finished = True
                    raise _rebuild_error(*message[1:])
                else:  # "lost"
                    self._finished = True
                    raise SourceError(self.stream_id, message[1])
        finally:
            self._consumer_gone = True
            while not self._inbox.empty():  # unblock the reader: snapshot answers may be queued behind
                self._inbox.get_nowait()
            if not self._finished:
                self._send(("stop",))  # the consumer stopped first (--duration, shutdown)

    def _on_timeline(self, packed: PackedTimestep) -> Timestep:
        """The timestep on the stream's one timeline: after a replaced child, from the wall time elapsed, marked
        reset. Kept-frame keys follow the analyzer's count; the child is asked with its own (:meth:`_child_k`)."""
        if packed[12]:  # provisional: the timeline moves on with the timesteps themselves
            return unpack(packed, self._k_offset)
        reset = self._restarted_at is not None
        if self._restarted_at is not None and self._last is not None:
            last_k, _, hop = self._last
            skipped = max(0, round((time.time() - self._restarted_at) / hop))
            self._k_offset = last_k + 1 + skipped - packed[1]
        self._restarted_at = None
        ts = unpack(packed, self._k_offset, reset)
        self._last = (ts.k, ts.end, ts.hop)
        return ts

    def _child_k(self, k: int) -> int:
        return k - self._k_offset  # negative (never found) for a timestep of a child that died

    def _send(self, message: tuple[Any, ...]) -> None:
        if self._writer is not None and not self._writer.is_closing():
            _write(self._writer, message)

    def scored(self, k: int) -> None:
        """Timesteps up to ``k`` are scored: their full frames may go (but a pinned one)."""
        self._send(("scored", self._child_k(k)))

    def pin(self, frame: VideoFrame) -> None:
        """Keep ``frame``'s full picture (an open event's new peak) until the next pin."""
        if isinstance(frame.full, KeptFrame):
            self._send(("pin", self._child_k(frame.full.k)))

    def snapshot(self, frame: VideoFrame, box: Box | None = None) -> Awaitable[bytes | None]:
        """``frame``'s full picture as JPEG with ``box`` drawn on it (its child encodes it), if its child still has
        it. The request goes to the child now, the answer is awaited: a pin that follows (the next event's peak,
        scored in the same batch) must not replace the picture before the child is asked for it."""
        if not isinstance(frame.full, KeptFrame):
            return asyncio.to_thread(encode_jpeg, frame, box=box)
        k = frame.full.k
        if self._writer is None or self._writer.is_closing():
            return _nothing()
        self._next_request += 1
        request = self._next_request  # several snapshots may be asked for at once
        future: asyncio.Future[bytes | None] = asyncio.get_running_loop().create_future()
        self._replies[request] = future
        self._send(("snapshot", request, self._child_k(k), None if box is None else tuple(map(float, box))))
        return self._answer(request, future)

    def clip(self, key: str, start: float, path: str) -> Awaitable[ClipInfo | str]:
        """As :meth:`streamer.stream.Stream.clip`: the stream's ingest process records it."""
        future: asyncio.Future[ClipInfo | str] = asyncio.get_running_loop().create_future()
        if self._writer is None or self._writer.is_closing():
            future.set_result("the stream's ingest process is gone")
            return future
        self._next_request += 1
        self._clips[self._next_request] = future
        self._send(("clip", self._next_request, key, self._child_t(start), path))
        return future

    def clip_end(self, key: str, until: float) -> None:
        self._send(("clip_end", key, self._child_t(until)))

    def _child_t(self, t: float) -> float:
        return t - self._k_offset * (self._last[2] if self._last is not None else 0.0)

    async def _answer(self, request: int, future: asyncio.Future[bytes | None]) -> bytes | None:
        try:
            async with asyncio.timeout(SNAPSHOT_TIMEOUT):
                return await future
        except TimeoutError:
            return None
        finally:
            self._replies.pop(request, None)

    async def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            with contextlib.suppress(ConnectionError):
                await self._writer.wait_closed()
        if self._reader_task is not None:
            self._reader_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader_task


class IngestHub:
    """The analyzer's end: starts the ingest processes for ``streams`` and holds their :class:`RemoteStream`."""

    def __init__(self, streams: Sequence[IngestStream], *, nice: int = NICE, cores: int | None = None) -> None:
        self._streams = list(streams)
        self._nice = nice
        self._cores = cores
        self.remotes = {s.spec.stream_id: _remote(s) for s in streams}
        self._dir: str | None = None
        self._server: asyncio.Server | None = None
        self._procs: list[asyncio.subprocess.Process] = []
        self._address = ""
        self._watchers: list[asyncio.Task[None]] = []
        self._closing = False
        self._spawned: set[str] = set()  # streams whose ingest process was started

    async def start(self, *, live: bool = True) -> None:
        """Start the ingest processes not started yet; ``live=False``: only those of files, which wait for
        their consumer without losing anything (a live source would drop what comes before it is read)."""
        if self._server is None:
            self._dir = tempfile.mkdtemp(prefix="streamer-ingest-")  # mode 0700: only this user connects
            address = os.path.join(self._dir, "ingest.sock")
            self._server = await asyncio.start_unix_server(self._connected, address)
            self._address = address
        for group in plan_processes(self._streams, self._cores):
            ids = {s.spec.stream_id for s in group}
            if ids & self._spawned or (not live and any(s.spec.is_live for s in group)):
                continue
            self._spawned |= ids
            proc = await self._spawn(group)
            self._watchers.append(asyncio.get_running_loop().create_task(self._watch(group, proc), name="ingest-watch"))

    async def _spawn(self, group: list[IngestStream]) -> asyncio.subprocess.Process:
        level = logging.getLogger("streamer").getEffectiveLevel()
        job = IngestJob(self._address, tuple(group), level, self._nice)
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "streamer.ingest", stdin=asyncio.subprocess.PIPE, process_group=0
        )
        assert proc.stdin is not None
        proc.stdin.write(pickle.dumps(job))
        with contextlib.suppress(ConnectionError):
            await proc.stdin.drain()
        proc.stdin.close()
        self._procs.append(proc)
        return proc

    async def add(self, stream: IngestStream) -> RemoteStream:
        """A stream joining a running hub (or one not started yet): on a running hub, in a process of its own."""
        stream_id = stream.spec.stream_id
        if stream_id in self.remotes:
            raise ValueError(f"stream '{stream_id}' is already captured")
        remote = self.remotes[stream_id] = _remote(stream)
        self._streams.append(stream)
        if self._server is not None:
            self._spawned.add(stream_id)
            proc = await self._spawn([stream])
            watch = asyncio.get_running_loop().create_task(self._watch([stream], proc), name="ingest-watch")
            self._watchers.append(watch)
        return remote

    async def remove(self, stream_id: str) -> None:
        """Forget a stream whose consumer has stopped (its child then ends it; a child left with no stream exits)."""
        remote = self.remotes.pop(stream_id, None)
        self._streams = [s for s in self._streams if s.spec.stream_id != stream_id]
        if remote is not None:
            await remote.close()

    @property
    def closing(self) -> bool:
        return self._closing

    async def _connected(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            hello = await _read(reader)
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()
            return
        remote = self.remotes.get(hello[1]) if hello[0] == "hello" else None
        if remote is None:
            writer.close()
            return
        remote.attach(reader, writer)

    async def _watch(self, group: list[IngestStream], proc: asyncio.subprocess.Process) -> None:
        """Wait for the group's child to exit; replace it while some of its streams are live and going on (a new
        child runs those only)."""
        backoff = RESTART_BACKOFF[0]
        while True:
            remotes = {s.spec.stream_id: self.remotes.get(s.spec.stream_id) for s in group}
            started = time.monotonic()
            code = await proc.wait()
            if self._closing:
                return
            for remote in remotes.values():
                if remote is not None:
                    remote.fail(f"the ingest process exited with code {code}")
            group = [s for s in group if (r := remotes[s.spec.stream_id]) is not None and r.restartable
                     and not r.finished and self.remotes.get(s.spec.stream_id) is r]  # fmt: skip
            if not group:
                return
            if time.monotonic() - started > 60:  # it had been running a while: a new row of failures
                backoff = RESTART_BACKOFF[0]
            await asyncio.sleep(backoff)
            backoff = min(2 * backoff, RESTART_BACKOFF[1])
            if self.closing:  # close() came during the wait
                return
            self._procs = [p for p in self._procs if p.returncode is None]
            proc = await self._spawn(group)

    async def close(self) -> None:
        """Close every connection (the children end their streams and exit), then reap the children."""
        if self._closing:
            return
        self._closing = True
        for remote in self.remotes.values():
            await remote.close()
        if self._server is not None:
            self._server.close()
        await asyncio.gather(*(_reap(proc) for proc in self._procs))
        for task in self._watchers:
            task.cancel()
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)


async def _nothing() -> None:
    return None


def _remote(stream: IngestStream) -> RemoteStream:
    spec = stream.spec
    return RemoteStream(spec.stream_id, restartable=spec.is_live, inbox=INBOX if spec.is_live else FILE_INBOX)


async def _reap(proc: asyncio.subprocess.Process, grace: float = 5.0) -> None:
    """Wait for a child told to stop (its connections closed); kill it after ``grace`` seconds (a capture thread
    stuck in a network read)."""
    if proc.returncode is None:
        try:
            async with asyncio.timeout(grace):
                await proc.wait()
        except TimeoutError:
            proc.kill()
            await proc.wait()


# -- the child's side ------------------------------------------------------------------------------------------


class Kept:
    """A child's full frames by timestep, until the analyzer has scored them."""

    def __init__(self) -> None:
        self.frames: dict[int, FullFrame] = {}
        self._resident = 0  # how many of them hold their decoded picture
        self._released = asyncio.Event()

    def add(self, k: int, full: FullFrame) -> None:
        """Keep ``full`` under ``k``; a timestep's own frame replaces the one its provisional timestep kept."""
        replaced = self.frames.get(k)
        if replaced is not None:
            self._resident -= replaced.resident
        self.frames[k] = full
        self._resident += full.resident

    def release(self, k: int) -> None:
        """Timesteps up to ``k`` are scored."""
        for key in [key for key in self.frames if key <= k]:
            self._resident -= self.frames.pop(key).resident
        self._released.set()

    async def room(self) -> None:
        """Wait while RESIDENT_LIMIT decoded pictures are held (a file's frames are decoded again instead)."""
        while self._resident >= RESIDENT_LIMIT:
            self._released.clear()
            await self._released.wait()


# A timestep on the wire: plain tuples, numbers and arrays. Pickling the frozen dataclasses themselves (and
# ``dataclasses.replace`` to drop the full frames) took 0.23 ms per timestep and unpickling 0.10 ms; this takes
# 0.07 and 0.04 (720p clip, 300 timesteps).
PackedFrame = tuple[float, Any, float | None, float, int | None]  # t, luma, duration, wall_time, kept k
PackedTimestep = tuple[str, int, float, float, tuple[PackedFrame, ...], Any, int, bool, bool, bool, float, bool, bool]


def pack(ts: Timestep, kept: Kept) -> PackedTimestep:
    """The timestep for the wire; its middle frame's full picture (the snapshot's) stays in ``kept`` under
    ``ts.k`` and travels as that key (a provisional timestep's until its timestep's replaces it: an event it starts
    has a picture even if the stream stops before the timestep closes)."""
    middle = len(ts.frames) // 2
    frames = []
    for i, f in enumerate(ts.frames):
        key = None
        if i == middle and f.full is not None:
            kept.add(ts.k, f.full)
            key = ts.k
        frames.append((f.t, f.luma, f.duration, f.wall_time, key))
    return (ts.stream_id, ts.k, ts.t, ts.hop, tuple(frames), ts.audio_window, ts.context, ts.video_repeated,
            ts.video_missing, ts.audio_missing, ts.wall_time, ts.reset, ts.provisional)  # fmt: skip


def unpack(p: PackedTimestep, k_offset: int = 0, reset: bool = False) -> Timestep:
    """The timestep back, ``k_offset`` timesteps later (a replaced child counts from 0 again), ``reset`` or not."""
    dt = k_offset * p[3]
    frames = tuple(
        VideoFrame(t + dt, luma, None if key is None else KeptFrame(key + k_offset), duration, wall)
        for t, luma, duration, wall, key in p[4]
    )
    return Timestep(p[0], p[1] + k_offset, p[2] + dt, p[3], frames, p[5], p[6], p[7], p[8], p[9], p[10],
                    p[11] or reset, p[12])  # fmt: skip


async def _serve(address: str, item: IngestStream) -> None:
    from .snapshot import encode_full
    from .stream import Stream, decides_early

    stream_id = item.spec.stream_id
    try:
        reader, writer = await asyncio.open_unix_connection(address)
    except OSError as exc:  # the analyzer stopped (and closed its socket) before this stream connected
        log.debug("ingest of stream '%s': the analyzer is gone (%s)", stream_id, exc)
        return
    _write(writer, ("hello", stream_id))
    kept = Kept()
    pinned: tuple[int, FullFrame] | None = None

    def send(message: tuple[Any, ...]) -> None:
        if not writer.is_closing():
            _write(writer, message)

    stream = Stream(
        item.spec, item.options, item.sync, on_state=lambda c: send(("state", c)),
        on_info=lambda i: send(("info", i)), on_gap=lambda g: send(("gap", g)),
        early=decides_early(item.spec, item.options, item.sync), clip_keep=item.clip_keep,
    )  # fmt: skip

    async def produce() -> None:
        try:
            async with contextlib.aclosing(stream.__aiter__()) as timesteps:  # type: ignore[type-var]
                async for ts in timesteps:
                    send(("ts", pack(ts, kept), stream.dropped_video))
                    await writer.drain()
                    if not item.spec.is_live:
                        await kept.room()
        except SourceError as exc:
            send(_error_message(exc))
        except ConnectionError:
            return
        else:
            send(("end",))
        with contextlib.suppress(ConnectionError):
            await writer.drain()

    async def snapshot(request: int, full: FullFrame | None, box: Box | None) -> None:
        jpeg = None
        if full is not None:
            try:
                jpeg = await asyncio.to_thread(encode_full, full, box=box)
            except Exception as exc:  # a snapshot is a nicety: never let it take the stream down
                log.warning("stream '%s': snapshot failed: %s", stream_id, exc)
        send(("jpeg", request, jpeg))

    async def clip(request: int, made: Awaitable[ClipInfo | str]) -> None:
        send(("clipped", request, await made))

    answers: set[asyncio.Task[None]] = set()
    producer = asyncio.get_running_loop().create_task(produce(), name=f"stream-{stream_id}")
    try:
        while True:
            try:
                message = await _read(reader)
            except (asyncio.IncompleteReadError, ConnectionError):
                break  # the analyzer closed the connection, or is gone
            kind = message[0]
            if kind == "scored":
                kept.release(message[1])
                stream.scored(message[1])
            elif kind == "pin":
                frame = kept.frames.get(message[1])
                if frame is not None:
                    pinned = (message[1], frame)
            elif kind == "snapshot":
                _, request, k, box = message
                full = pinned[1] if pinned is not None and pinned[0] == k else kept.frames.get(k)
                # in a task of its own: a file's frame is decoded again (up to a GOP), and meanwhile this loop
                # must go on reading "scored" and "stop"
                answer = asyncio.get_running_loop().create_task(snapshot(request, full, box), name=f"snapshot-{k}")
                answers.add(answer)
                answer.add_done_callback(answers.discard)
            elif kind == "clip":
                _, request, key, start, path = message
                answer = asyncio.get_running_loop().create_task(clip(request, stream.clip(key, start, path)),
                                                                name=f"clip-{key}")  # fmt: skip
                answers.add(answer)
                answer.add_done_callback(answers.discard)
            elif kind == "clip_end":
                stream.clip_end(message[1], message[2])
            elif kind == "stop":
                producer.cancel()
    finally:
        if stream.ring is not None:
            stream.ring.shutdown()
        producer.cancel()
        for answer in list(answers):
            answer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await producer
        writer.close()


async def _run(job: IngestJob) -> None:
    async with asyncio.TaskGroup() as tg:
        for item in job.streams:
            tg.create_task(_serve(job.address, item), name=f"ingest-{item.spec.stream_id}")


def main() -> int:
    job: IngestJob = pickle.loads(sys.stdin.buffer.read())
    logging.basicConfig(level=job.log_level, format="streamer: %(message)s", stream=sys.stderr)
    if job.nice:
        with contextlib.suppress(OSError):
            os.nice(job.nice)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_run(job))
    wait_for_writers(CLIP_WRITE_GRACE)  # clips the stopping streams finished are written whole, not left as .part
    return 0


if __name__ == "__main__":
    # run the module's own copy (streamer.ingest, not __main__) so what it pickles names streamer.ingest's classes
    from streamer.ingest import main as ingest_main

    sys.exit(ingest_main())
