"""Real-world inputs: track order and choice, missing protocols, timestamp-less live sources, recorded media over
HTTP, and sources that open and die at once (each of these once crashed, hung or ran on a wrong clock)."""

from __future__ import annotations

import asyncio
import http.server
import itertools
import json
import subprocess
import time
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest

from streamer.errors import SourceError, SourceUnsupportedError
from streamer.media import AudioChunk, SourceState, StateChange, StreamInfo, VideoFrame
from streamer.options import SourceOptions
from streamer.source import Source
from streamer.spec import parse_source
from streamer.stream import Stream
from streamer.worker import WorkerContext

from .analyzer_run import STREAMER
from .helpers import brightest, collect, loudest, self_signed_certificate, serving
from .media import make_clip

MJPEG_FPS = 10.0


def _tracks_clip(path: Path, order: str, *, seconds: float = 3.0, flash_at: float = 1.0, beep_at: float = 2.0) -> Path:
    """A clip whose tracks come in ``order`` ('a' audio, 'v' video; e.g. 'av', 'aavv'). Only the first track of
    each kind has the flash (video) or beep (audio); the others are flat, so tests can tell which one was used."""
    with av.open(str(path), "w") as out:
        tracks: list[Any] = []
        for kind in order:
            if kind == "a":
                audio = out.add_stream("aac", rate=48000)
                audio.layout = "mono"
                tracks.append(audio)
            else:
                video = out.add_stream("libx264", rate=25)
                video.width, video.height, video.pix_fmt = 160, 120, "yuv420p"
                tracks.append(video)
        first = {kind: order.index(kind) for kind in "av" if kind in order}
        for i, track in enumerate(tracks):
            if track.type == "video":
                for n in range(round(seconds * 25)):
                    bright = i == first["v"] and 0 <= n / 25 - flash_at < 0.08
                    image = np.full((120, 160, 3), 230 if bright else 40, np.uint8)
                    frame = av.VideoFrame.from_ndarray(image, format="rgb24")
                    frame.pts = n
                    out.mux(track.encode(frame))
            else:
                for start in range(0, round(seconds * 48000), 1024):
                    t = np.arange(start, start + 1024) / 48000
                    loud = i == first["a"] and beep_at <= t[0] < beep_at + 0.2
                    x = (0.5 if loud else 0.001) * np.sin(2 * np.pi * 1000 * t)
                    chunk = av.AudioFrame.from_ndarray(x.astype(np.float32)[None], format="fltp", layout="mono")
                    chunk.sample_rate, chunk.pts = 48000, start
                    out.mux(track.encode(chunk))
            out.mux(track.encode(None))
    return path


def _analyze(path: Path, **options: object) -> list:  # type: ignore[type-arg]
    return asyncio.run(collect(Stream(parse_source(str(path)), SourceOptions(**options))))  # type: ignore[arg-type]


@pytest.mark.parametrize("order", ["av", "va", "aavv", "vvaa", "avav"])
def test_any_track_order_decodes_to_the_end_with_the_first_track_of_each_kind(tmp_path: Path, order: str) -> None:
    """Audio as track 0 used to crash at the end of the file (PyAV's flush packets all say stream 0)."""
    steps = _analyze(_tracks_clip(tmp_path / f"{order}.mp4", order))
    assert len(steps) >= 29
    assert brightest(steps) == 10 and loudest(steps) == 20


def test_the_track_of_each_kind_can_be_chosen_or_ignored(tmp_path: Path) -> None:
    clip = _tracks_clip(tmp_path / "two.mp4", "avav")
    second = _analyze(clip, video_track=1, audio_track=1)
    assert max(f.luma.mean() for ts in second for f in ts.frames) < 60  # the flat second video track
    assert max(float(np.abs(ts.audio).max()) for ts in second) < 0.01  # the quiet second audio track
    video_only = _analyze(clip, audio_track=-1)
    assert all(ts.audio_missing for ts in video_only) and brightest(video_only) == 10
    with pytest.raises(SourceUnsupportedError, match=r"has no video track 5 \(it has 2\)"):
        _analyze(clip, video_track=5)


def test_probe_of_an_audio_first_file_and_its_timeline(tmp_path: Path) -> None:
    clip = _tracks_clip(tmp_path / "a_first.mp4", "av")
    done = subprocess.run([*STREAMER, "probe", str(clip), "--timeline"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    assert lines[0]["video"]["width"] == 160 and lines[0]["audio"]["sample_rate"] == 48000
    assert len(lines) >= 30 and "Traceback" not in done.stderr


def test_a_protocol_ffmpeg_lacks_is_a_permanent_one_line_error(tmp_path: Path) -> None:
    """srt:// is not in PyAV's FFmpeg: probe says so in one line (exit 3); run does not retry it as an outage."""
    probe = subprocess.run([*STREAMER, "probe", "srt://127.0.0.1:9"], capture_output=True, text=True, timeout=60)
    assert probe.returncode == 3
    assert probe.stderr.strip().splitlines() == [
        "streamer: error: stream '127_0_0_1': cannot open srt://127.0.0.1:9: this build of FFmpeg (PyAV's) has no "
        "'srt' protocol"
    ]
    clip = make_clip(tmp_path / "ok.mp4", duration=2.0)
    run = subprocess.run(
        [*STREAMER, "run", "srt://127.0.0.1:9", str(clip), "--mqtt", "none", "-q"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert run.returncode == 3, run.stderr
    assert run.stderr.count("has no 'srt' protocol") == 1 and "retrying" not in run.stderr


def _fail_right_after_open(ctx: WorkerContext) -> None:
    ctx.opened(StreamInfo(ctx.spec.stream_id, ctx.spec.redacted, "network", True, None, None))
    raise SourceError(ctx.spec.stream_id, "connection reset")


def test_a_source_that_opens_and_dies_at_once_backs_off_and_goes_offline() -> None:
    """Each open used to reset the failure count: a reconnect every 0.5 s forever, never offline."""
    changes: list[StateChange] = []
    options = SourceOptions(backoff_initial=0.01, backoff_max=10.0, offline_after=4)
    source = Source(
        parse_source("rtsp://127.0.0.1:9/x"), options, on_state=changes.append, worker=_fail_right_after_open
    )

    async def run() -> None:
        async def drain() -> None:
            async for _ in source:
                pass

        task = asyncio.create_task(drain())
        while sum(c.state is SourceState.OFFLINE for c in changes) < 2:  # noqa: ASYNC110 (a callback list)
            await asyncio.sleep(0.01)
        task.cancel()

    asyncio.run(asyncio.wait_for(run(), 30))
    retries = [c.retry_in for c in changes if c.retry_in is not None]
    assert len(retries) >= 5
    # the delays double (within the +-25 % jitter) instead of restarting at backoff_initial
    assert all(later > earlier * 1.15 for earlier, later in itertools.pairwise(retries[:5]))
    states = [c.state for c in changes if c.retry_in is not None]
    assert states[:3] == [SourceState.RECONNECTING] * 3 and states[3] is SourceState.OFFLINE


class _MjpegHandler(http.server.BaseHTTPRequestHandler):
    """A 10 fps MJPEG camera: multipart JPEGs without any timestamp; a bright picture from 2 s to 2.5 s."""

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "multipart/x-mixed-replace;boundary=frame")
        self.end_headers()
        codec = av.CodecContext.create("mjpeg", "w")
        codec.width, codec.height, codec.pix_fmt = 160, 120, "yuvj420p"
        codec.time_base = Fraction(1, 10)
        begun = time.monotonic()
        n = 0
        try:
            while True:
                due = begun + n / MJPEG_FPS
                time.sleep(max(0.0, due - time.monotonic()))
                bright = 2.0 <= n / MJPEG_FPS < 2.5
                image = np.full((120, 160, 3), 230 if bright else 40, np.uint8)
                image[:, (n * 3) % 160] = 128  # a little motion, like a real camera
                frame = av.VideoFrame.from_ndarray(image, format="rgb24").reformat(format="yuvj420p")
                frame.pts = n
                jpeg = b"".join(bytes(p) for p in codec.encode(frame))
                self.wfile.write(b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n" % len(jpeg))
                self.wfile.write(jpeg + b"\r\n")
                n += 1
        except (BrokenPipeError, ConnectionResetError):
            return

    def log_message(self, format: str, *args: object) -> None:
        return


class _SlowClockTsHandler(http.server.BaseHTTPRequestHandler):
    """Live MPEG-TS whose timestamps claim 25 fps while it sends 10 frames a second (media time at 0.4x)."""

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "video/mp2t")
        self.end_headers()
        try:
            with av.open(self.wfile, "w", format="mpegts") as out:
                video = out.add_stream("mpeg2video", rate=25)
                video.width, video.height, video.pix_fmt = 160, 120, "yuv420p"
                begun = time.monotonic()
                for n in range(400):
                    time.sleep(max(0.0, begun + n / MJPEG_FPS - time.monotonic()))
                    image = np.full((120, 160, 3), 40, np.uint8)
                    image[:, (n * 3) % 160] = 200
                    frame = av.VideoFrame.from_ndarray(image, format="rgb24")
                    frame.pts = n
                    out.mux(video.encode(frame))
                    self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError, ValueError, OSError):
            return


class _Handler(http.server.SimpleHTTPRequestHandler):
    """``/cam.mjpg``: a live MJPEG camera; ``/fast.ts``: live MPEG-TS on a wrong clock; else the server's files."""

    def do_GET(self) -> None:
        if self.path.startswith("/cam.mjpg"):
            _MjpegHandler.do_GET(self)  # type: ignore[arg-type]
        elif self.path.startswith("/fast.ts"):
            _SlowClockTsHandler.do_GET(self)  # type: ignore[arg-type]
        else:
            super().do_GET()

    def log_message(self, format: str, *args: object) -> None:
        return


@pytest.fixture
def http_server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    with serving(tmp_path, handler=_Handler) as port:
        yield f"http://127.0.0.1:{port}", tmp_path


def test_mjpeg_over_http_is_stamped_on_arrival_at_its_real_rate(http_server: tuple[str, Path]) -> None:
    """MJPEG has no timestamps; FFmpeg numbers its frames at 25 fps, so a 10 fps camera's media time ran at 0.4x."""
    url, _ = http_server
    infos: list[StreamInfo] = []
    frames: list[VideoFrame] = []

    async def run() -> float:
        source = Source(parse_source(f"{url}/cam.mjpg"), SourceOptions(reconnect=False))
        begun = time.monotonic()
        async for item in source:
            if isinstance(item, StreamInfo):
                infos.append(item)
            elif isinstance(item, VideoFrame):
                frames.append(item)
                if time.monotonic() - begun > 4.0:
                    break
        return time.monotonic() - begun

    wall = asyncio.run(asyncio.wait_for(run(), 30))
    assert infos and infos[0].video is not None
    assert infos[0].video.fps == pytest.approx(10.0, rel=0.25)  # measured, not FFmpeg's guess of 25
    media = frames[-1].t - frames[0].t
    assert media == pytest.approx(wall, abs=0.6)  # media time keeps up with the wall clock
    bright = [f.t for f in frames if f.luma.mean() > 150]
    assert bright and bright[0] == pytest.approx(2.0, abs=0.5)


def test_probe_reports_the_measured_rate_of_an_mjpeg_camera(http_server: tuple[str, Path]) -> None:
    url, _ = http_server
    done = subprocess.run([*STREAMER, "probe", f"{url}/cam.mjpg"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    info = json.loads(done.stdout)
    assert info["live"] is True and info["video"]["width"] == 160
    assert info["video"]["fps"] == pytest.approx(10.0, rel=0.25)


def test_a_live_source_whose_timestamps_lag_the_wall_clock_is_restamped_on_arrival(
    http_server: tuple[str, Path],
) -> None:
    """Timestamps that do not advance with the wall clock (here 0.4x) are replaced by arrival times: afterwards
    media time keeps pace with the wall clock (the switch is measured between 2 and 6 s after the first frame)."""
    url, _ = http_server
    frames: list[tuple[float, float]] = []  # (monotonic arrival, media time)

    async def run() -> None:
        async for item in Source(parse_source(f"{url}/fast.ts"), SourceOptions(reconnect=False)):
            if isinstance(item, VideoFrame):
                frames.append((time.monotonic(), item.t))
                if len(frames) > 1 and frames[-1][0] - frames[0][0] > 9.0:
                    break

    asyncio.run(asyncio.wait_for(run(), 40))
    late = [(w, t) for w, t in frames if w - frames[0][0] > 7.0]
    media, wall = late[-1][1] - late[0][1], late[-1][0] - late[0][0]
    assert media == pytest.approx(wall, rel=0.2, abs=0.2)
    times = [t for _, t in frames]
    assert times == sorted(times)


def test_a_recorded_file_over_http_is_analyzed_like_a_file(http_server: tuple[str, Path]) -> None:
    """A recording over HTTP knows its duration: not live, so a slow consumer makes the decoder wait (no drops)."""
    url, root = http_server
    make_clip(root / "rec.mkv", duration=4.0, flashes=[1.0, 3.0], beeps=[2.0])
    options = SourceOptions(queue_size=4)

    async def run() -> tuple[Source, list[VideoFrame | AudioChunk], list[StreamInfo]]:
        source = Source(parse_source(f"{url}/rec.mkv"), options)
        items: list[VideoFrame | AudioChunk] = []
        infos: list[StreamInfo] = []
        async for item in source:
            if isinstance(item, StreamInfo):
                infos.append(item)
            elif isinstance(item, (VideoFrame, AudioChunk)):
                items.append(item)
                await asyncio.sleep(0.002)  # slower than decoding: a live source would drop frames here
        return source, items, infos

    source, items, infos = asyncio.run(asyncio.wait_for(run(), 60))
    assert infos[0].live is False and infos[0].duration == pytest.approx(4.0, abs=0.1)
    assert source.dropped_video == 0 and source.state is SourceState.ENDED
    assert sum(isinstance(i, VideoFrame) for i in items) == 120


STARTUP_ERRORS = {
    "alpha_beta_zero": (["--alpha", "0", "--beta", "0", "--mqtt", "none"], None, "alpha and beta: at least one"),
    "window_too_short": (["--hop-ms", "10", "--context-ms", "0", "--mqtt", "none"], None, "hop_ms (10) + context_ms"),
    "malformed_ca": ([], 'url = "mqtts://127.0.0.1:8883"\nca_file = "{bad}"\n', "mqtt.ca_file: not a PEM CA"),
    "malformed_cert": ([], 'url = "mqtts://127.0.0.1:8883"\ncert_file = "{bad}"\n', "mqtt.cert_file: not a PEM"),
    "unreadable_password_file": ([], 'url = "mqtt://u@127.0.0.1:1883"\npassword_file = "{binary}"\n',
                                 "mqtt.password_file: cannot read"),
}  # fmt: skip


@pytest.mark.parametrize("case", list(STARTUP_ERRORS))
def test_bad_settings_are_one_line_at_start_up_with_exit_2(tmp_path: Path, case: str) -> None:
    """Each of these used to be a traceback from inside the task group (or, for alpha = beta = 0, a silent run)."""
    flags, mqtt, expected = STARTUP_ERRORS[case]
    (tmp_path / "bad.pem").write_text("-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n")
    (tmp_path / "password").write_bytes(b"\xff\xfe\x00")
    args = [*STREAMER, "run", "synthetic:?duration=1&realtime=0", "-q", *flags]
    if mqtt is not None:
        config = tmp_path / "streamer.toml"
        config.write_text("[mqtt]\n" + mqtt.format(bad=tmp_path / "bad.pem", binary=tmp_path / "password"))
        args += ["--config", str(config)]
    done = subprocess.run(args, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("streamer: error: ") and expected in lines[0], done.stderr


@pytest.fixture
def https_server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """An HTTPS server on 127.0.0.1 with a self-signed certificate for 127.0.0.1 (``cert.pem``), serving tmp_path."""
    cert, key = self_signed_certificate(tmp_path)
    make_clip(tmp_path / "rec.mkv", duration=2.0)
    with serving(tmp_path, (cert, key), _Handler) as port:
        yield f"https://127.0.0.1:{port}/rec.mkv", cert


def test_https_sources_verify_the_servers_certificate(https_server: tuple[str, Path]) -> None:
    """FFmpeg does not verify certificates unless told to: an untrusted server used to be accepted silently."""
    url, cert = https_server
    refused = subprocess.run([*STREAMER, "probe", url], capture_output=True, text=True, timeout=60)
    assert refused.returncode == 3
    lines = refused.stderr.strip().splitlines()
    assert len(lines) == 1 and "certificate failed verification" in lines[0] and "--ca-file" in lines[0]
    trusted = subprocess.run([*STREAMER, "probe", url, "--ca-file", str(cert)], capture_output=True, text=True,
                             timeout=60)  # fmt: skip
    assert trusted.returncode == 0, trusted.stderr
    assert json.loads(trusted.stdout)["live"] is False
    insecure = subprocess.run([*STREAMER, "probe", url, "--tls-insecure"], capture_output=True, text=True, timeout=60)
    assert insecure.returncode == 0, insecure.stderr
