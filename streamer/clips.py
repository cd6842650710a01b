"""Event clips: a stream's own compressed video and audio around an event, remuxed into a file without re-encoding.

A stream that makes clips keeps its recent packets in a :class:`PacketRing` (in its ingest process, fed by the
capture thread before decoding): whole groups of pictures, from the key frame before the last ``keep`` seconds,
at most :data:`RING_BYTES`. When an event starts, :meth:`PacketRing.begin` starts a :class:`Recording` with the
ring's packets from the key frame before ``start - pre_roll``, and every packet after it goes to the recording
too, until :meth:`PacketRing.end` has said where it ends (the event's end + post-roll) and a packet past that has
come, or the stream stops (the clip then ends with its last packet). Each recording is written by a thread of its
own (PyAV's muxer: MP4, or Matroska where MP4 cannot hold a codec), to ``name.part`` first, renamed when complete;
``on_done`` then gets a :class:`ClipInfo`, or a one-line reason when it could not be written.

Timestamps: a packet's media time is its own timestamp on the stream's timeline (the offset each track's decoded
frames and chunks had, :meth:`PacketRing.learn`), so a clip starts where the analysis's media time says. In the
file each track is shifted by a whole number of its own ticks, so the tracks keep the relation they had in the
stream: a picture and its sound stay together.

Only sources read by PyAV (files, RTSP, HTTP, ...) make clips; a camera read by OpenCV and the synthetic source
have no packets.
"""

from __future__ import annotations

import collections
import contextlib
import io
import math
import os
import queue
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

import av

RING_BYTES = 64 * 1024 * 1024  # a stream's kept packets at most (about 2 min at 4 Mbit/s)
LONGEST_CLIP = 3600.0  # seconds: a recording ends here even if its event goes on
AUDIO_CHUNK = 1.0  # seconds: an audio-only stream's packets are kept and dropped in pieces this long
HAND_OVER = 0.5  # seconds of analysis between hand-overs of a recording's packets to its writer thread
CLIP_EXTENSIONS = (".mp4", ".mkv")
PART = ".part"  # a clip being written is its file's name + this, renamed when complete
PART_EXTENSIONS = tuple(e + PART for e in CLIP_EXTENSIONS)
_TICK = object()  # a recording's queue: the analysis came further, or its end is known
_writers: set[threading.Thread] = set()  # the clips being written (a process waits for them before it exits)


def wait_for_writers(timeout: float) -> int:
    """Wait up to ``timeout`` s in all for the clips being written (their recordings finished); returns how many
    are still being written."""
    deadline = time.monotonic() + timeout
    for thread in list(_writers):
        thread.join(max(0.0, deadline - time.monotonic()))
    return sum(thread.is_alive() for thread in list(_writers))


# codecs FFmpeg's MP4 muxer takes (and browsers mostly play); anything else goes into Matroska
_MP4_CODECS = frozenset({"h264", "hevc", "av1", "vp9", "mpeg4", "aac", "mp3", "opus", "flac", "alac", "ac3", "eac3"})


def container_suffix(*codecs: str) -> str:
    """Where clips of tracks with these codecs go: MP4, or Matroska when MP4 cannot hold one of them."""
    return ".mp4" if all(name in _MP4_CODECS for name in codecs) else ".mkv"


@dataclass(frozen=True, slots=True)
class ClipInfo:
    """A written clip: ``path`` (the file), media ``start`` and ``end`` (seconds on the stream's timeline, of its
    first and last packet), ``size`` in bytes."""

    path: str
    start: float
    end: float
    size: int


Done = Callable[[ClipInfo | str], None]  # a clip, or why there is none


@dataclass(slots=True)
class _Entry:
    """One packet: ``video`` or audio, its bytes and timestamps (in ``time_base``), its media time ``t`` (of its
    decoding timestamp, or presentation when it has none)."""

    video: bool
    data: bytes
    pts: int | None
    dts: int | None
    duration: int
    key: bool
    t: float


@dataclass(slots=True)
class _Chunk:
    """A group of pictures (or AUDIO_CHUNK of an audio-only stream): its packets, first a key frame."""

    t: float
    entries: list[_Entry] = field(default_factory=list)
    size: int = 0


@dataclass(slots=True)
class _Session:
    """One connection's tracks: parameter copies (a never-written container's streams) that outlive the input."""

    holder: Any
    video: Any | None
    audio: Any | None
    video_base: Fraction | None
    audio_base: Fraction | None
    suffix: str  # the container the tracks' codecs go into: .mp4 or .mkv
    offsets: dict[bool, float] = field(default_factory=dict)  # video? -> media time - raw time


class PacketRing:
    """A stream's recent packets and its recordings. The capture thread calls :meth:`open_session`, :meth:`add`,
    :meth:`learn` and :meth:`close_session`; any thread :meth:`begin` and :meth:`end`."""

    def __init__(self, stream_id: str, keep: float, limit: int = RING_BYTES) -> None:
        self.stream_id = stream_id
        self.keep = keep
        self.limit = limit
        self._lock = threading.Lock()
        self._chunks: collections.deque[_Chunk] = collections.deque()
        self._size = 0
        self._session: _Session | None = None
        self._open = False  # a connection is delivering packets
        self._recordings: dict[str, Recording] = {}
        self._progress = -math.inf  # how far the analysis has come, media time (its timesteps scored)
        self._handed = -math.inf  # the progress at the recordings' last hand-over
        # clips asked for after the stream stopped, waiting for their end: key -> (start, path, on_done)
        self._pending: dict[str, tuple[float, str, Done]] = {}

    @property
    def size(self) -> int:
        """Bytes of packets kept."""
        return self._size

    @property
    def span(self) -> float:
        """Seconds of packets kept (from the first kept key frame to the newest packet)."""
        with self._lock:
            return self._chunks[-1].entries[-1].t - self._chunks[0].t if self._chunks else 0.0

    # -- the capture thread ------------------------------------------------------------------------------------

    def open_session(self, video: Any | None, audio: Any | None) -> None:
        """A new connection (or file) with these PyAV input streams; what was kept of the one before goes."""
        holder = av.open(io.BytesIO(), "w", format="matroska")
        session = _Session(
            holder,
            holder.add_stream_from_template(video) if video is not None else None,
            holder.add_stream_from_template(audio) if audio is not None else None,
            video.time_base if video is not None else None,
            audio.time_base if audio is not None else None,
            container_suffix(*(s.codec_context.name for s in (video, audio) if s is not None)),
        )
        with self._lock:
            self._finish_all()
            self._flush_pending()
            self._chunks.clear()
            self._size = 0
            self._session = session
            self._open = True

    def close_session(self) -> None:
        """The connection ended (end of file, an error, a reconnect to come): no more packets for its recordings.
        Those whose end is known finish now; the others when :meth:`end` says it (the analysis, behind the
        capture, still has their events open), with what came."""
        with self._lock:
            self._open = False
            for key, recording in list(self._recordings.items()):
                recording.closed = True
                if recording.until < math.inf:
                    del self._recordings[key]
                    recording.finish()

    def learn(self, video: bool, t: float, raw: float) -> None:
        """A decoded frame (``video``) or audio chunk at media time ``t`` had raw time ``raw``."""
        session = self._session
        if session is not None:
            session.offsets[video] = t - raw

    def add(self, packet: Any, video: bool) -> None:
        """A demuxed packet of the session's video or audio track, before it is decoded."""
        session = self._session
        if session is None or packet.size == 0:
            return
        base = session.video_base if video else session.audio_base
        stamp = packet.dts if packet.dts is not None else packet.pts
        offset = session.offsets.get(video, session.offsets.get(not video))
        # nothing to place it by yet: older than anything a clip asks for
        t = -math.inf if stamp is None or base is None or offset is None else float(stamp * base) + offset
        entry = _Entry(video, bytes(packet), packet.pts, packet.dts, packet.duration or 0, packet.is_keyframe, t)
        with self._lock:
            self._keep(entry, session)
            if not self._recordings:
                return  # the usual case, on every packet: nothing being recorded
            for key, recording in list(self._recordings.items()):
                if recording.past(entry):
                    del self._recordings[key]
                    recording.finish()
                else:
                    recording.put(entry)

    def _keep(self, entry: _Entry, session: _Session) -> None:
        chunks = self._chunks
        if entry.video:
            if entry.key:
                chunks.append(_Chunk(entry.t))
            elif not chunks:
                return  # joined after a key frame: nothing to start a clip from until the next
        elif session.video is None and (not chunks or entry.t - chunks[-1].t >= AUDIO_CHUNK):
            chunks.append(_Chunk(entry.t))
        elif not chunks:
            return
        chunk = chunks[-1]
        chunk.entries.append(entry)
        chunk.size += len(entry.data)
        self._size += len(entry.data)
        cutoff = entry.t - self.keep
        while len(chunks) > 1 and (chunks[1].t <= cutoff or self._size > self.limit):
            self._size -= chunks.popleft().size

    # -- any thread ----------------------------------------------------------------------------------------------

    def begin(self, key: str, start: float, path: str, on_done: Done) -> None:
        """Start recording ``key`` (an event) from the key frame before media time ``start``, into ``path`` +
        the container's extension (its folder is made). After the stream stopped (a file read to its end ahead of
        the analysis) the clip is cut from what was kept, once :meth:`end` says where it ends."""
        with self._lock:
            if self._session is None or not self._chunks:
                on_done("no packets of the stream kept yet")
                return
            if not self._open:
                self._pending[key] = (start, path, on_done)
                return
            recording = self._record(start, path, on_done, math.inf)
            if recording is not None:
                old = self._recordings.pop(key, None)
                if old is not None:
                    old.finish()
                self._recordings[key] = recording

    def progress(self, t: float) -> None:
        """The analysis has scored the stream's timesteps up to media time ``t``: a recording writes its packets
        up to there (an event still open there ends later)."""
        with self._lock:
            if t <= self._progress:
                return
            self._progress = t
            if t - self._handed < HAND_OVER:
                return
            self._handed = t
            for recording in self._recordings.values():
                recording.tick()

    def _reached(self) -> float:
        return self._progress

    def end(self, key: str, until: float) -> None:
        """Recording ``key`` ends at media time ``until`` (it finishes when a packet past it comes)."""
        with self._lock:
            pending = self._pending.pop(key, None)
            if pending is not None:
                recording = self._record(*pending, until)
                if recording is not None:
                    recording.finish()
                return
            recording = self._recordings.get(key)
            if recording is not None:
                recording.until = until
                recording.tick()
                if recording.closed:  # no packet will come past its end: it ends now
                    del self._recordings[key]
                    recording.finish()

    def _record(self, start: float, path: str, on_done: Done, until: float) -> Recording | None:
        """A recording of the kept packets from the key frame before ``start`` up to ``until``."""
        session = self._session
        assert session is not None
        first = 0
        for i, chunk in enumerate(self._chunks):
            if chunk.t <= start:
                first = i
        entries = [e for chunk in list(self._chunks)[first:] for e in chunk.entries if e.t <= until]
        try:
            return Recording(self.stream_id, path + session.suffix, session, entries, on_done, self._reached)
        except OSError as exc:
            on_done(f"cannot write into {os.path.dirname(path) or '.'}: {exc.strerror or exc}")
            return None

    def shutdown(self) -> None:
        """The stream is done: finish every recording, those still waiting for their end with what was kept."""
        self.close_session()
        with self._lock:
            self._finish_all()
            self._flush_pending()

    def _flush_pending(self) -> None:
        pending, self._pending = self._pending, {}
        for start, path, on_done in pending.values():
            recording = self._record(start, path, on_done, math.inf)
            if recording is not None:
                recording.finish()

    def _finish_all(self) -> None:
        recordings, self._recordings = self._recordings, {}
        for recording in recordings.values():
            recording.finish()


class Recording:
    """One clip being written by a thread of its own: the packets given, then each one :meth:`put`, until
    :meth:`finish`."""

    def __init__(
        self, stream_id: str, path: str, session: _Session, entries: list[_Entry], on_done: Done,
        horizon: Callable[[], float],
    ) -> None:  # fmt: skip
        self.stream_id = stream_id
        self.path = path
        self.until = math.inf
        self.closed = False  # its connection ended: no more packets come
        self._session = session
        # the writer's queue takes packets in batches (each wake-up of its thread costs more than a packet)
        self._queue: queue.SimpleQueue[list[_Entry] | object | None] = queue.SimpleQueue()
        self._batch: list[_Entry] = []  # packets since the last hand-over (the ring's lock held)
        self._horizon = horizon
        self._primary_video = session.video is not None
        self._on_done = on_done
        self._start: float | None = None
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        with open(path + PART, "wb"):  # can it be written at all: a one-line reason now, not in the thread
            pass
        self._queue.put(list(entries))
        self._first_t = entries[0].t if entries else math.inf
        thread = threading.Thread(target=self._write, name=f"clip-{stream_id}", daemon=True)
        _writers.add(thread)
        thread.start()

    def past(self, entry: _Entry) -> bool:
        """Whether ``entry`` lies past the recording's end (its primary track's packet after ``until``, or the
        longest clip reached)."""
        if entry.video != self._primary_video:
            return False
        return entry.t > self.until or entry.t - self._first_t > LONGEST_CLIP

    def put(self, entry: _Entry) -> None:
        if self._first_t == math.inf:
            self._first_t = entry.t
        self._batch.append(entry)

    def finish(self) -> None:
        self.tick()
        self._queue.put(None)

    def _write(self) -> None:
        try:
            self._write_clip()
        finally:
            _writers.discard(threading.current_thread())

    def _write_clip(self) -> None:
        part = self.path + PART
        try:
            info = self._mux(part)
        except Exception as exc:  # a clip is a nicety: one line, the stream goes on
            with contextlib.suppress(OSError):
                os.remove(part)
            why = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc) or type(exc).__name__
            self._on_done(f"clip {self.path}: {why}")
            return
        if info is None:
            with contextlib.suppress(OSError):
                os.remove(part)
            self._on_done("no packets to make a clip of")
            return
        self._on_done(info)

    def _released(self) -> Iterator[_Entry]:
        """The recording's packets in order, each once the analysis has come as far (a file's capture runs ahead
        of it, so its event's end may not be known yet) or the end is known; those past the end are dropped."""
        waiting: collections.deque[_Entry] = collections.deque()
        finished = False
        while not finished:
            item = self._queue.get()
            if item is None:
                finished = True
            elif isinstance(item, list):
                waiting.extend(item)
            horizon = math.inf if finished else self._horizon()
            while waiting and waiting[0].t <= min(horizon, self.until):
                yield waiting.popleft()
            if (
                self.until < math.inf
                and waiting
                and waiting[0].t > self.until
                and waiting[0].video == self._primary_video
            ):
                return

    def tick(self) -> None:
        """The analysis came further (or the end is known): the packets since the last hand-over go to the
        writer, and those waiting there may be written."""
        batch, self._batch = self._batch, []
        self._queue.put(batch if batch else _TICK)

    def _mux(self, part: str) -> ClipInfo | None:
        session = self._session
        fmt = "mp4" if self.path.endswith(".mp4") else "matroska"
        out: Any = None
        streams: dict[bool, Any] = {}
        shifts: dict[bool, int] = {}
        origin: float | None = None
        last_t = -math.inf
        try:
            for entry in self._released():
                if origin is None:
                    # the clip starts at the primary track's first packet (a key frame, for video)
                    if entry.video != self._primary_video or (entry.video and not entry.key) or entry.t == -math.inf:
                        continue
                    origin = entry.t
                    out = av.open(part, "w", format=fmt)
                    for video, template in ((True, session.video), (False, session.audio)):
                        if template is not None:
                            streams[video] = out.add_stream_from_template(template)
                if entry.t < origin - 1e-6 and not entry.video:
                    continue  # audio from before the clip's first picture
                stream = streams.get(entry.video)
                base = session.video_base if entry.video else session.audio_base
                if stream is None or base is None or entry.t == -math.inf:
                    continue
                if entry.video not in shifts:
                    # a whole number of the track's ticks: raw stamp + shift = media time - origin
                    stamp = entry.dts if entry.dts is not None else entry.pts
                    assert stamp is not None
                    shifts[entry.video] = round((entry.t - origin) / float(base)) - stamp
                shift = shifts[entry.video]
                packet = av.Packet(entry.data)
                packet.pts = None if entry.pts is None else entry.pts + shift
                packet.dts = None if entry.dts is None else entry.dts + shift
                if (packet.dts if packet.dts is not None else packet.pts or 0) < 0:
                    continue  # before the clip's origin on its own track
                if entry.duration:
                    packet.duration = entry.duration
                packet.is_keyframe = entry.key
                packet.time_base = base
                packet.stream = stream
                out.mux(packet)
                if self._start is None:
                    self._start = entry.t
                last_t = max(last_t, entry.t)
        finally:
            if out is not None:
                out.close()
        if out is None or self._start is None:
            return None
        os.replace(part, self.path)
        return ClipInfo(self.path, self._start, last_t, os.path.getsize(self.path))
