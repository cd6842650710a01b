"""A live RTSP A/V server that emits impulses (a white frame, a loud tone) at logged wall-clock times.

Run with Debian's ``/usr/bin/python3`` (python3-gi, gir1.2-gst-rtsp-server-1.0), not the project venv: it
imports nothing but the standard library and gi::

    /usr/bin/python3 pipelines/bench/impulse_server.py --port 8554 [--path /impulse]
        [--width 640 --height 360 --fps 30] [--interval 2.0] [--jitter 0.5] [--seed 0]
        [--tone-ms 100] [--flash-frames 1] [--box] [--audio-frame-ms 10]

It serves one shared live media on 127.0.0.1 (every client sees the same stream, as from a camera): H.264 video
(pt 96, x264 zerolatency) of a black frame and Opus audio (pt 97, 10 ms frames, 48 kHz mono) of faint pink
noise (-50 dBFS, a quiet room's microphone: digital silence is no audio to the analyzer, and a faint pure tone
is not what a microphone hears either: Opus switched the noise in its empty bands on and off for seconds at a
time, which the analyzer then heard as a sound). Impulse ``k`` (0, 1, 2...)
is due ``2 + k * interval + u_k`` seconds after the media's first buffer,
``u_k = jitter * frac(u_0 + k * 0.618...)`` (a golden-ratio sequence from a start ``u_0`` drawn with
``--seed``): impulses fall evenly anywhere relative to any analysis grid, even over a few dozen of them. Random
draws would not: video impulses come on frame times, a 100 ms timestep holds 3 of them, and a median over 30
random impulses swung by 40 ms from run to run as the frame classes came out uneven.
At an impulse exactly ``--flash-frames`` video frames are white and ``--tone-ms`` (rounded to 10 ms buffers) of
a 1 kHz sine at -6 dBFS peak sounds. Impulses go on as long as the server runs; if the media is restarted (the
last client left and a new one came) the schedule restarts with it and the numbering goes on.

Stdout: first exactly one line ``READY rtsp://127.0.0.1:PORT/path`` once the socket listens, then one JSON line
per impulse once both modalities have emitted it::

    {"impulse": 0, "video_wall": 1795401134.2171, "audio_wall": 1795401134.2093}

``video_wall`` / ``audio_wall`` are the glass times: ``time.time()`` taken in a buffer probe on the source's
src pad when the impulse's first white frame / first tone buffer is pushed. The sources are live, so each buffer
is pushed when the pipeline clock reaches its timestamp: the moment it leaves the source is the moment it
"happens". The RTP sinks are made not to sync (see :func:`_send_at_once`), so what follows is only encoding and
sending, well under a millisecond here, as from a camera. Each source is switched from its own probe (a
property set while buffer N is pushed applies to buffer N+1, produced next in the same streaming thread), and
the probe reads every buffer's samples, so the logged time and the flash length are those of the data actually
sent, not of a request to switch.

Serves until SIGTERM or SIGINT, then exits 0.
"""

from __future__ import annotations

import argparse
import json
import random
import signal
import sys
import threading
import time
from array import array
from collections.abc import Callable
from typing import Any

import gi  # type: ignore[import-not-found,unused-ignore]

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # type: ignore[import-not-found,unused-ignore]  # noqa: E402

START_DELAY = 2.0  # seconds from the media's first buffer to the first impulse's earliest due time
_GOLDEN = (5**0.5 - 1) / 2  # the golden ratio's fraction: the most evenly spread sequence k * g mod 1
AUDIO_RATE = 48000
AUDIO_FRAME_MS = 10  # default: one audiotestsrc buffer = one Opus frame (--audio-frame-ms: 10, 20, 40, 60)
TONE_HZ = 1000.0
TONE = {"wave": "sine", "volume": "0.5"}  # sine peak: -6 dBFS
# Between impulses pink noise at -50 dBFS (max |S16| about 400), as a quiet room's microphone: never digital
# silence, which the analyzer rightly treats as "no audio" (a muted track), not as a background.
QUIET = {"wave": "pink-noise", "volume": "0.02"}
BLACK, WHITE = {"pattern": "black"}, {"pattern": "white"}
WHITE_LUMA = 128  # I420 Y: black is 16, white 235
LOUD_SAMPLE = 1000  # |S16| above this: the buffer holds tone (peak at volume 0.5 is 16383)


def launch_line(width: int, height: int, fps: int, box: bool = False, frame_ms: int = AUDIO_FRAME_MS) -> str:
    """The factory's pipeline: the sources are named for the probes, the payloaders pay0/pay1 for the server.

    ``box``: the video source draws only the middle quarter of the picture (half the width and height), which
    ``videobox`` frames with black, in the same streaming thread: an impulse is then a white box over a quarter
    of the picture, a local change (a movement to a motion detector), not a whole-picture flash (lighting).
    """
    samples = AUDIO_RATE * frame_ms // 1000
    source = f"videotestsrc name=vsrc is-live=true pattern=black ! video/x-raw,format=I420,width={width},"
    if box:
        inner_w, inner_h = width // 4 * 2, height // 4 * 2
        left, top = (width - inner_w) // 4 * 2, (height - inner_h) // 4 * 2
        right, bottom = width - inner_w - left, height - inner_h - top
        source = (
            f"videotestsrc name=vsrc is-live=true pattern=black ! video/x-raw,format=I420,width={inner_w},"
            f"height={inner_h},framerate={fps}/1 ! videobox left=-{left} right=-{right} top=-{top} "
            f"bottom=-{bottom} fill=black ! video/x-raw,width={width},"
        )
    return (
        f"( {source}"
        f"height={height},framerate={fps}/1 ! x264enc tune=zerolatency speed-preset=ultrafast key-int-max={fps} "
        "threads=1 ! rtph264pay name=pay0 pt=96 config-interval=-1  "
        f"audiotestsrc name=asrc is-live=true wave={QUIET['wave']} freq={TONE_HZ} volume={QUIET['volume']} "
        f"samplesperbuffer={samples} "
        f"! audio/x-raw,format=S16LE,rate={AUDIO_RATE},channels=1 ! opusenc frame-size={frame_ms} "
        "! rtpopuspay name=pay1 pt=97 )"
    )


def not_seekable(media: Any) -> None:
    """media-configure handler: make the media answer "not seekable", as a real live camera does.

    Live test sources say they are seekable, so on every PLAY (FFmpeg always sends ``Range: npt=0.000-``) the
    server would flush-seek the *shared* media back to 0, and the RTP timestamps of every client already
    watching would jump back. Answering the seeking query at each payloader makes the server skip the seek.
    """

    def answer(_pad: Any, info: Any) -> Any:
        # A new seeking query already reads "not seekable": answering it untouched is enough (PyGObject's
        # reference makes the query read-only here anyway).
        if info.get_query().type == Gst.QueryType.SEEKING:
            return Gst.PadProbeReturn.HANDLED
        return Gst.PadProbeReturn.OK

    bin_ = media.get_element()
    for i in range(media.n_streams()):
        bin_.get_by_name(f"pay{i}").get_static_pad("src").add_probe(Gst.PadProbeType.QUERY_UPSTREAM, answer)


def _send_at_once(media: Any) -> None:
    """Make the media's sinks send each RTP packet as soon as it is made, as a camera does.

    gst-rtsp-server's RTP sinks sync on the clock: each packet waits in its sink until its timestamp plus the
    pipeline latency (53 ms here), and as nothing queues in between, that wait blocks the source's streaming
    thread: every buffer would then leave the server one buffer (33 ms of video, 10 ms of audio) after its probe
    saw it leave the source. The live sources pace the stream themselves, so the sinks need not sync. The
    server sets ``sync`` after adding a sink (and adds UDP sinks only when a UDP client comes), hence the
    ``notify::sync`` watch on every sink added to the media's pipeline.
    """

    def unsync(element: Any, _pspec: Any = None) -> None:
        if element.get_property("sync"):
            element.set_property("sync", False)

    def added(_bin: Any, _sub_bin: Any, element: Any) -> None:
        if element.find_property("sync") is not None and element.get_static_pad("sink") is not None:
            unsync(element)
            element.connect("notify::sync", unsync)

    media.get_element().get_parent().connect("deep-element-added", added)


class Schedule:
    """The impulses' timing and numbering over the server's life, and their glass times until printed.

    Used from both sources' streaming threads.
    """

    def __init__(self, interval: float, jitter: float, seed: int) -> None:
        self._interval = interval
        self._jitter = jitter
        self._start = random.Random(seed).random()
        self._lock = threading.Lock()
        self._next_number = 0  # the next impulse's number, over every media this server has run
        self._glass: dict[int, dict[str, float]] = {}

    def offset(self, i: int) -> float:
        """When a media's ``i``-th impulse is due, in seconds after the media's first buffer."""
        with self._lock:
            return START_DELAY + i * self._interval + self._jitter * ((self._start + i * _GOLDEN) % 1.0)

    def next_number(self) -> int:
        with self._lock:
            number = self._next_number
            self._next_number += 1
            return number

    def glass(self, number: int, modality: str, wall: float) -> None:
        """Record one modality's glass time; once both are in, print the impulse's line (from the main loop)."""
        with self._lock:
            walls = self._glass.setdefault(number, {})
            walls[modality] = wall
            if len(walls) < 2:
                return
            del self._glass[number]
        line = json.dumps({"impulse": number, "video_wall": walls["video"], "audio_wall": walls["audio"]})
        GLib.idle_add(_print_line, line)


def _print_line(line: str) -> bool:
    print(line, flush=True)
    return False  # GLib: run once


class MediaImpulses:
    """One media's impulses, due from its first buffer on; both tracks walk them in order."""

    def __init__(self, schedule: Schedule) -> None:
        self._schedule = schedule
        self._lock = threading.Lock()
        self._anchor: float | None = None
        self._due: list[float] = []
        self._numbers: dict[int, int] = {}

    def due(self, i: int, now: float) -> float:
        """The wall-clock time this media's ``i``-th impulse is due; ``now`` anchors the media on first use."""
        with self._lock:
            if self._anchor is None:
                self._anchor = now
            while len(self._due) <= i:
                self._due.append(self._anchor + self._schedule.offset(len(self._due)))
            return self._due[i]

    def number(self, i: int) -> int:
        """The ``i``-th impulse's number, given when the first track starts it (numbers run on across media)."""
        with self._lock:
            if i not in self._numbers:
                self._numbers[i] = self._schedule.next_number()
            return self._numbers[i]

    def glass(self, number: int, modality: str, wall: float) -> None:
        self._schedule.glass(number, modality, wall)


class Track:
    """One source's impulse state machine, driven from a buffer probe on the source's src pad.

    Per buffer: if it is loud (read from its data) it belongs to the current impulse, whose glass time is that
    of its first loud buffer; after ``length`` loud buffers the source is switched back to quiet. If it is
    quiet and the next impulse is due, the source is switched to loud: the next buffer is the impulse's first.
    ``quiet`` and ``loud`` are the source's properties in each state, as gst-launch writes them.
    """

    def __init__(
        self, modality: str, source: Any, quiet: dict[str, str], loud: dict[str, str], length: int,
        media: MediaImpulses,
    ) -> None:  # fmt: skip
        self.modality = modality
        self._source = source
        self._quiet = quiet
        self._loud = loud
        self._length = length
        self._media = media
        self._index = 0  # this media's next impulse to start
        self._number: int | None = None  # the impulse switched on, waiting for (or in) its loud buffers
        self._loud_count = 0

    def on_buffer(self, loud: bool, now: float) -> None:
        if loud:
            if self._loud_count == 0 and self._number is not None:
                self._media.glass(self._number, self.modality, now)
            self._loud_count += 1
            if self._loud_count == self._length:
                self._switch(self._quiet)
            return
        if self._loud_count:  # the impulse is over
            self._loud_count = 0
            self._number = None
        if self._number is None and now >= self._media.due(self._index, now):
            self._number = self._media.number(self._index)
            self._index += 1
            self._switch(self._loud)

    def _switch(self, properties: dict[str, str]) -> None:
        for name, value in properties.items():
            Gst.util_set_object_arg(self._source, name, value)


def _is_white(buffer: Any) -> bool:
    """The frame is white: its first luma byte (I420: the Y plane comes first) is bright."""
    return bool(buffer.extract_dup(0, 1)[0] >= WHITE_LUMA)


def _is_tone(buffer: Any) -> bool:
    """The S16 buffer holds tone: some sample is loud."""
    samples = array("h", buffer.extract_dup(0, buffer.get_size()))
    return max(samples, default=0) > LOUD_SAMPLE or -min(samples, default=0) > LOUD_SAMPLE


def attach(media: Any, schedule: Schedule, tone_buffers: int, flash_frames: int) -> None:
    """media-configure handler: impulse probes on both sources of a new media; not seekable, sent at once."""
    not_seekable(media)
    _send_at_once(media)
    impulses = MediaImpulses(schedule)
    bin_ = media.get_element()
    video, audio = bin_.get_by_name("vsrc"), bin_.get_by_name("asrc")
    _watch(video, Track("video", video, BLACK, WHITE, flash_frames, impulses), _is_white)
    _watch(audio, Track("audio", audio, QUIET, TONE, tone_buffers, impulses), _is_tone)


def _watch(source: Any, track: Track, is_loud: Callable[[Any], bool]) -> None:
    """Feed every buffer the source pushes to its track, with the time it leaves the source."""

    def probe(_pad: Any, info: Any) -> Any:
        now = time.time()
        track.on_buffer(is_loud(info.get_buffer()), now)
        return Gst.PadProbeReturn.OK

    source.get_static_pad("src").add_probe(Gst.PadProbeType.BUFFER, probe)


def serve(factory: Any, port: int, path: str) -> int:
    """Serve ``factory`` at rtsp://127.0.0.1:PORT/path: print ``READY <url>`` once listening, run until SIGTERM
    or SIGINT, return the exit code (1 when the port cannot be bound)."""
    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(str(port))
    server.get_mount_points().add_factory(path, factory)
    # attach() creates, binds (with SO_REUSEADDR) and listens on the socket; 0 means it failed.
    if server.attach(None) == 0:
        print(f"cannot listen on 127.0.0.1:{port}", file=sys.stderr)
        return 1

    loop = GLib.MainLoop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, signum, loop.quit)
    print(f"READY rtsp://127.0.0.1:{port}{path}", flush=True)
    loop.run()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--path", default="/impulse")
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--height", type=int, default=360)
    parser.add_argument("--fps", type=int, default=30)
    parser.add_argument("--interval", type=float, default=2.0, help="seconds between impulses (before jitter)")
    parser.add_argument("--jitter", type=float, default=0.5, help="extra delay in [0, jitter) s, spread evenly")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--tone-ms", type=int, default=100, help="tone length, rounded to whole audio frames")
    parser.add_argument("--flash-frames", type=int, default=1, help="white frames per impulse")
    parser.add_argument("--box", action="store_true", help="the impulse is a white box over the middle quarter")
    parser.add_argument("--audio-frame-ms", type=int, default=AUDIO_FRAME_MS, choices=(10, 20, 40, 60),
                        help="Opus frame length (one packet each)")  # fmt: skip
    args = parser.parse_args(argv)
    if args.fps < 1 or args.width < 16 or args.height < 16:
        parser.error("--fps must be >= 1 and --width, --height >= 16")
    tone_buffers = max(1, round(args.tone_ms / args.audio_frame_ms))
    if args.flash_frames < 1 or args.tone_ms < 1:
        parser.error("--flash-frames and --tone-ms must be >= 1")
    if args.jitter < 0 or args.interval <= 0:
        parser.error("--interval must be > 0 and --jitter >= 0")
    longest = max(args.flash_frames / args.fps, tone_buffers * args.audio_frame_ms / 1000)
    if args.interval - args.jitter <= longest + 0.1:
        parser.error("--interval must exceed --jitter by more than the flash/tone length + 0.1 s")
    path = args.path if args.path.startswith("/") else "/" + args.path

    Gst.init(None)
    schedule = Schedule(args.interval, args.jitter, args.seed)
    factory = GstRtspServer.RTSPMediaFactory()
    factory.set_launch(launch_line(args.width, args.height, args.fps, args.box, args.audio_frame_ms))
    factory.set_shared(True)
    factory.connect("media-configure", lambda _, media: attach(media, schedule, tone_buffers, args.flash_frames))
    return serve(factory, args.port, path)


if __name__ == "__main__":
    sys.exit(main())
