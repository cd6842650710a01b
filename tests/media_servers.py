"""Live network media servers on 127.0.0.1 with PyAV (FFmpeg) as the muxer, for the end-to-end source tests.

Run as a script with the project's Python (``.venv/bin/python tests/media_servers.py MODE --clip C --port P``)
it serves a clip (H.264 + audio, e.g. rendered by :func:`tests.burst_clip.make_burst_clip`) live, paced in real
time and looping, as a camera or a live encoder would: the video is remuxed as it is, the audio re-encoded as
one continuous AAC track (looping encoded audio would click at every seam). Timestamps run on the session's
clock plus ``LEAD`` seconds.

* ``hls``: the ``hls`` muxer writes a live playlist ``live.m3u8`` (1 s segments, 5 in the list,
  ``delete_segments``) into ``--dir``, which an HTTP server thread of the same process serves on ``--port``;
* ``http-ts``: MPEG-TS over HTTP, ``http://127.0.0.1:PORT/live.ts``;
* ``mjpeg``: MJPEG (``mpjpeg``, re-encoded to ``mjpeg`` at ``--fps``, video only, no timestamps: like a camera,
  ``multipart/x-mixed-replace``) over HTTP, ``http://127.0.0.1:PORT/cam.mjpg``;
* ``rtmp``: FLV (H.264 + AAC) over RTMP, ``rtmp://127.0.0.1:PORT/live/stream``;
* ``udp``: MPEG-TS over UDP to ``udp://127.0.0.1:PORT`` (the client listens there).

FFmpeg is the server in the three ``listen`` modes (its ``http`` and ``rtmp`` protocols with ``listen=1``: one
client at a time; after a client leaves the muxer is opened again for the next). PyAV opens an output's file
without the options given to :func:`av.open` (``listen=1`` there is ignored: it connects as a client), so
``listen=1`` goes through the ``tee`` muxer, which opens its outputs with their own options:
``[f=flv:listen=1]rtmp://...``.

Where the clip starts, so that a test knows what a client sees first: in the listen modes every client gets the
clip from its start (or from ``--start`` seconds into it); ``hls`` and ``udp`` play it from there when the server
starts (an HLS client joins at a segment boundary, three segments before the live edge).

It prints ``STARTED`` once the clip is loaded; a client can connect once the port listens (for ``hls``: once
the playlist exists too), which :class:`MediaServer` (the tests' handle on such a process) waits for.
"""

from __future__ import annotations

import argparse
import functools
import http.server
import selectors
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np
import numpy.typing as npt

SAMPLE_RATE = 48000
LEAD = 10.0  # seconds added to every output timestamp: no negative ones (AAC priming), like a running camera
MODES = ("hls", "http-ts", "mjpeg", "rtmp", "udp")
PATHS = {"hls": "/live.m3u8", "http-ts": "/live.ts", "mjpeg": "/cam.mjpg", "rtmp": "/live/stream", "udp": ""}
# a camera's multipart type (FFmpeg's mpjpeg boundary), escaped for the tee muxer's option syntax
MJPEG_TYPE = r"multipart/x-mixed-replace\;boundary\=ffmpeg"
READY_TIMEOUT = 20.0
STOP_TIMEOUT = 10.0


# -- the server (run as a script) ---------------------------------------------------------------------------


@dataclass(frozen=True)
class _Packet:
    data: bytes
    pts: int
    dts: int
    duration: int
    keyframe: bool
    time_base: Fraction

    @property
    def t(self) -> float:
        return float(self.pts * self.time_base)


class _Clip:
    """The clip, loaded once: its video packets (remuxed as they are), its audio as mono samples (encoded live
    into one continuous AAC track: looping encoded packets would click at every seam), its length."""

    def __init__(self, path: Path) -> None:
        self.source = av.open(str(path))  # kept open: its video stream is the outputs' template
        self.video = self.source.streams.video[0]
        self.packets = [
            _Packet(bytes(p), p.pts, p.dts, p.duration or 0, p.is_keyframe, p.time_base)
            for p in self.source.demux(self.video)
            if p.pts is not None and p.dts is not None and p.time_base is not None
        ]
        self.period = max(float((p.pts + p.duration) * p.time_base) for p in self.packets)
        self.samples: npt.NDArray[np.float32] | None = None
        with av.open(str(path)) as again:
            if again.streams.audio:
                resampler = av.AudioResampler(format="flt", layout="mono", rate=SAMPLE_RATE)
                chunks = [
                    out.to_ndarray().reshape(-1)
                    for frame in again.decode(again.streams.audio[0])
                    for out in resampler.resample(frame)
                ]
                self.samples = np.concatenate(chunks)[: round(self.period * SAMPLE_RATE)].astype(np.float32)


class _Clock:
    """A session's clock: the clip starts playing at its origin (when the client came, or the server started)."""

    def __init__(self) -> None:
        self.origin = time.monotonic()

    def wait_until(self, t: float) -> None:
        delay = self.origin + t - time.monotonic()
        if delay > 0:
            time.sleep(delay)


def _play(out: Any, clip: _Clip, start: float = 0.0) -> None:
    """Play the clip into ``out`` from ``start`` (seconds into it), looping forever, each packet at its time:
    video remuxed, audio encoded as it goes. Timestamps are the session's clock plus LEAD."""
    video = out.add_stream_from_template(clip.video)
    audio = None
    if clip.samples is not None:
        audio = out.add_stream("aac", rate=SAMPLE_RATE, layout="mono")
        audio.time_base = Fraction(1, SAMPLE_RATE)
    out.start_encoding()  # in the listen modes, this waits for the client: the clip starts when it came
    clock = _Clock()
    loop = 0
    i = next(n for n, p in enumerate(clip.packets) if p.t >= start - 1e-6)
    sample = 0  # of the continuous audio track, from the session's start
    first_sample = round(start * SAMPLE_RATE)
    chunk = 1024  # an AAC frame
    while True:
        p = clip.packets[i]
        offset = round((LEAD + loop * clip.period - start) / p.time_base)
        t_video = float((p.pts + offset) * p.time_base) - LEAD
        if audio is not None and clip.samples is not None and sample / SAMPLE_RATE <= t_video:
            clock.wait_until(sample / SAMPLE_RATE)
            index = (first_sample + sample + np.arange(chunk)) % len(clip.samples)
            frame = av.AudioFrame.from_ndarray(clip.samples[index].reshape(1, -1), format="flt", layout="mono")
            frame.sample_rate, frame.time_base = SAMPLE_RATE, Fraction(1, SAMPLE_RATE)
            frame.pts = sample + round(LEAD * SAMPLE_RATE)
            out.mux(audio.encode(frame))
            sample += chunk
            continue
        clock.wait_until(t_video)
        packet = av.Packet(p.data)
        packet.pts, packet.dts, packet.duration = p.pts + offset, p.dts + offset, p.duration
        packet.time_base = p.time_base
        packet.is_keyframe = p.keyframe
        packet.stream = video
        out.mux(packet)
        i += 1
        if i == len(clip.packets):
            i, loop = 0, loop + 1


def _mjpeg_frames(clip: Path, fps: float) -> list[Any]:
    """The clip's pictures at ``fps``, full-range yuvj420p as the mjpeg encoder wants."""
    frames: list[Any] = []
    with av.open(str(clip)) as source:
        for frame in source.decode(source.streams.video[0]):
            if frame.pts is None or frame.time_base is None:
                continue
            while len(frames) / fps <= float(frame.pts * frame.time_base) + 1e-6:
                frames.append(frame.reformat(format="yuvj420p"))
    return frames


def _play_mjpeg(out: Any, frames: list[Any], fps: float) -> None:
    rate = Fraction(fps).limit_denominator(1000)
    stream = out.add_stream("mjpeg", rate=rate)
    stream.width, stream.height, stream.pix_fmt = frames[0].width, frames[0].height, "yuvj420p"
    out.start_encoding()  # waits for the client: the clip starts when it came
    clock = _Clock()
    n = 0
    while True:
        clock.wait_until(n / fps)
        frame = frames[n % len(frames)]
        frame.pts, frame.time_base = n, 1 / rate
        out.mux(stream.encode(frame))
        n += 1


def _serve_directory(directory: Path, port: int) -> None:
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            return

    handler = functools.partial(Quiet, directory=str(directory))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), handler)
    threading.Thread(target=server.serve_forever, name="http", daemon=True).start()


def serve(mode: str, path: Path, port: int, directory: Path | None, fps: float, start: float) -> None:
    if mode == "mjpeg":
        frames = _mjpeg_frames(path, fps)
        print("STARTED", flush=True)
        url = f"[f=mpjpeg:listen=1:content_type={MJPEG_TYPE}]http://127.0.0.1:{port}{PATHS[mode]}"
        while True:  # one client at a time; after it leaves (a write fails), listen again
            try:
                with av.open(url, "w", format="tee") as out:
                    _play_mjpeg(out, frames, fps)
            except (av.FFmpegError, OSError):
                time.sleep(0.01)
    clip = _Clip(path)
    if mode == "hls":
        assert directory is not None, "--dir is required for hls"
        directory.mkdir(parents=True, exist_ok=True)
        for old in [*directory.glob("*.ts"), *directory.glob("*.m3u8*")]:
            old.unlink()  # a restarted server starts a new playlist
        _serve_directory(directory, port)
        print("STARTED", flush=True)
        options = {
            "hls_time": "1",
            "hls_list_size": "5",
            "hls_flags": "delete_segments+temp_file",
            "hls_segment_filename": str(directory / "seg%05d.ts"),
        }
        with av.open(str(directory / "live.m3u8"), "w", format="hls", container_options=options) as out:
            _play(out, clip, start)
    if mode == "udp":
        print("STARTED", flush=True)
        with av.open(f"udp://127.0.0.1:{port}?pkt_size=1316", "w", format="mpegts") as out:
            _play(out, clip, start)
    fmt, scheme = {"http-ts": ("mpegts", "http"), "rtmp": ("flv", "rtmp")}[mode]
    print("STARTED", flush=True)
    while True:
        try:
            with av.open(f"[f={fmt}:listen=1]{scheme}://127.0.0.1:{port}{PATHS[mode]}", "w", format="tee") as out:
                _play(out, clip, start)
        except (av.FFmpegError, OSError):
            time.sleep(0.01)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("mode", choices=MODES)
    parser.add_argument("--clip", type=Path, required=True, help="H.264 (+ AAC) clip to serve, looping")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--dir", type=Path, help="hls: where the playlist and segments go")
    parser.add_argument("--fps", type=float, default=10.0, help="mjpeg: pictures per second (10)")
    parser.add_argument("--start", type=float, default=0.0, help="where in the clip to start (seconds; not mjpeg)")
    args = parser.parse_args(argv)
    serve(args.mode, args.clip, args.port, args.dir, args.fps, args.start)
    return 0


# -- the tests' handle on a server process ------------------------------------------------------------------


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def listening(port: int) -> bool:
    """Whether a TCP socket listens on ``port`` (read from /proc: connecting would take the servers' one client)."""
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if fields[1].rsplit(":", 1)[1] == f"{port:04X}" and fields[3] == "0A":  # 0A: TCP_LISTEN
                return True
    return False


def udp_bound(port: int) -> bool:
    """Whether a UDP socket is bound to ``port`` (a client listening for a ``udp`` server's stream)."""
    for table in ("/proc/net/udp", "/proc/net/udp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        if any(line.split()[1].rsplit(":", 1)[1] == f"{port:04X}" for line in lines):
            return True
    return False


class MediaServer:
    """One ``media_servers.py MODE`` process; it keeps its port (and directory) across kill/start."""

    def __init__(
        self, mode: str, clip: Path, port: int, log: Path, directory: Path | None = None, *, start: float = 0.0
    ) -> None:
        self.mode, self.log, self.directory = mode, log, directory
        self._clip, self._start = clip, start
        self._proc: subprocess.Popen[str] | None = None
        self.move_to(port)

    def move_to(self, port: int) -> None:
        """Serve on ``port`` from the next start."""
        self.port = port
        scheme = {"hls": "http", "http-ts": "http", "mjpeg": "http", "rtmp": "rtmp", "udp": "udp"}[self.mode]
        self.url = f"{scheme}://127.0.0.1:{port}{PATHS[self.mode]}"
        self._args = [sys.executable, __file__, self.mode, "--clip", str(self._clip), "--port", str(port)]
        if self.directory is not None:
            self._args += ["--dir", str(self.directory)]
        if self._start:
            self._args += ["--start", str(self._start)]

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self) -> None:
        if self.running:
            raise RuntimeError(f"{self.mode} server on port {self.port} is already running")
        with self.log.open("a") as log:
            self._proc = proc = subprocess.Popen(self._args, stdout=subprocess.PIPE, stderr=log, text=True)
        assert proc.stdout is not None
        with selectors.DefaultSelector() as selector:
            selector.register(proc.stdout, selectors.EVENT_READ)
            started = bool(selector.select(READY_TIMEOUT)) and proc.stdout.readline().strip() == "STARTED"
        if not started:
            self.kill()
            raise RuntimeError(f"{self.mode} server did not start:\n{self.log.read_text()[-2000:]}")
        self.wait_ready()

    def wait_ready(self, timeout: float = READY_TIMEOUT) -> None:
        """Until a client can connect: the port listens (a previous client may just have left), the playlist
        exists (hls)."""
        deadline = time.monotonic() + timeout
        while not self._ready():
            if not self.running or time.monotonic() > deadline:
                raise RuntimeError(f"{self.mode} server is not ready:\n{self.log.read_text()[-2000:]}")
            time.sleep(0.02)

    def _ready(self) -> bool:
        if self.mode == "udp":
            return True
        if self.mode == "hls":
            assert self.directory is not None
            return listening(self.port) and (self.directory / "live.m3u8").exists()
        return listening(self.port)

    def kill(self) -> None:
        """SIGKILL (a crash) and wait."""
        self._end(signal.SIGKILL)

    def stop(self) -> None:
        self._end(signal.SIGTERM)

    def _end(self, signum: signal.Signals) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(signum)
            try:
                proc.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()


def serve_files(directory: Path, port: int, log: Path) -> subprocess.Popen[bytes]:
    """``python -m http.server`` on 127.0.0.1:``port`` for ``directory`` (recorded media over HTTP)."""
    args = [sys.executable, "-m", "http.server", "--bind", "127.0.0.1", "--directory", str(directory), str(port)]
    with log.open("ab") as out:
        proc = subprocess.Popen(args, stdout=out, stderr=out)
    deadline = time.monotonic() + READY_TIMEOUT
    while not listening(port):
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError(f"http.server did not start:\n{log.read_text()[-2000:]}")
        time.sleep(0.02)
    return proc


def frames_of(url: str, seconds: float) -> Iterator[tuple[str, float | None]]:
    """(kind, pts seconds) of what a plain PyAV reader decodes from ``url`` for ``seconds`` of wall time once
    opened."""
    with av.open(url, timeout=10) as container:
        begun = time.monotonic()
        for frame in container.decode(*container.streams.video, *container.streams.audio):
            if isinstance(frame, av.VideoFrame | av.AudioFrame):
                kind = "video" if isinstance(frame, av.VideoFrame) else "audio"
                t = None if frame.pts is None or frame.time_base is None else float(frame.pts * frame.time_base)
                yield kind, t
            if time.monotonic() - begun > seconds:
                return


if __name__ == "__main__":
    sys.exit(main())
