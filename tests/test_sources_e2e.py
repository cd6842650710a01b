"""End to end, one row of docs/sources.md's network source table at a time, each against a real server on 127.0.0.1.

Every row's server plays the same clip (tests/burst_clip.py: the synthetic scene with a moving square *and* a tone
every 5 s, ``av@2,av@7,av@12,av@17`` of 20 s, so S is near 1: one modality alone would sit exactly at the default
threshold 0.5; the RTSP server a 40 s version), live and in real time. The bursts last 0.15 s, and each stream is
joined where no burst falls in its first 0.5 s of measurements, its baselines' warm-up (see ``HLS_START`` and
``_launch``): a burst there blinds a stream for seconds, which
``test_a_burst_as_a_live_stream_is_joined_does_not_blind_it`` shows on its own. The servers:

* PyAV as the muxer (tests/media_servers.py, a subprocess, looping the clip): live HLS, MPEG-TS over HTTP, MJPEG
  over HTTP (10 fps, video only), RTMP (FLV, H.264 + AAC), MPEG-TS over UDP;
* GStreamer's RTSP server (tests/rtsp_server.py) read over RTP/UDP (``rtsp_transport = "udp"``; TCP is covered by
  test_rtsp.py and test_faults.py);
* recorded media over HTTP (``python -m http.server``): an mp4 and an HLS VOD playlist, analyzed like files.

For each live row: ``streamer probe`` describes it; one ``streamer run --duration 12`` of all the live rows at
once (MQTT to a real mosquitto) finds the bursts 5 s apart on a media clock that keeps pace with the wall
clock; a second run has every server killed and restarted: each stream goes ``reconnecting`` (and not
``online`` while its server is down), comes back ``online``, finds bursts again, and its timeline stays
monotonic. The live rows share their servers and the two runs (module scope) to keep the file short.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import json
import os
import signal
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import aiomqtt
import av
import pytest

from models.video import LEARNING_S
from pipelines.bench.mosquitto import MOSQUITTO, MqttBroker, free_port
from streamer.settings import default_of
from streamer.spec import redact
from streamer.sync import SyncOptions

from .analyzer_run import STREAMER, start_streamer
from .burst_clip import make_burst_clip
from .conftest import RtspServer, _gst_rtsp_problem
from .helpers import until
from .media_servers import MediaServer, frames_of, free_udp_port, serve_files, udp_bound

pytestmark = [pytest.mark.timeout(300), pytest.mark.live_heavy]

BURSTS = "av@2,av@7,av@12,av@17"  # seen and heard (S near 1)
BURST_STARTS = (2.0, 7.0, 12.0, 17.0)
SHORT = {"length": "0.15"}  # shorter than two timesteps: never the median of the 5 a joined stream learns from
PERIOD = 5.0  # the clip loops after 20 s: the bursts keep coming every 5 s
CLIP_SECONDS = 20.0
WIDTH, HEIGHT = 320, 180
RTSP_SECONDS = 40.0  # the RTSP server plays the file once per client (and a stream with a duration ends): longer
RTSP_BURSTS = ",".join(f"av@{t}" for t in range(2, int(RTSP_SECONDS), int(PERIOD)))
# Live HLS: the client starts at a segment boundary (three before the live edge), its video 0.5 s later, and its
# baselines learn from the 0.5 s after that. With the playlist's segments starting 0.2 s before each burst (the
# bursts lie on whole seconds of the clip), that never holds a burst, whichever segment the client starts at.
HLS_START = 1.8
# Streams whose first 0.5 s of measurements (their baselines' warm-up) hold a burst, by what a client gets from the
# start: 1 s bursts from 0 s (it joins in one), or the 0.15 s bursts starting 0.8 s in, 0.3 s into the warm-up.
WARMUP_CASES = {"joined_in_burst": ("av@0,av@5,av@10,av@15", {}), "burst_in_warmup": ("av@0.8,av@5.8,av@10.8", SHORT)}
HOP = default_of(SyncOptions, "hop")  # the analyzer's timestep (s)
RUN_SECONDS = 12.0  # --duration of the live run: at least two whole bursts wherever a stream was joined
MJPEG_FPS = 10.0


@dataclass(frozen=True)
class Row:
    name: str  # the stream id in the runs
    server: str  # a tests/media_servers.py mode, or "rtsp"
    video: str
    audio: str | None
    fps: float


LIVE_ROWS = {
    row.name: row
    for row in (
        Row("hls", "hls", "h264", "aac", 30.0),
        Row("mpegts_http", "http-ts", "h264", "aac", 30.0),
        Row("mjpeg_http", "mjpeg", "mjpeg", None, MJPEG_FPS),
        Row("rtmp", "rtmp", "h264", "aac", 30.0),
        Row("udp", "udp", "h264", "aac", 30.0),
        Row("rtsp_udp", "rtsp", "h264", "opus", 30.0),
    )
}


class LiveServer(Protocol):
    url: str

    def start(self) -> None: ...

    def kill(self) -> None: ...

    def stop(self) -> None: ...


def _missing(what: str) -> None:
    """Skip, unless CI must run it (as tests/conftest.py does)."""
    if os.environ.get("CI"):
        pytest.fail(f"CI must run the end-to-end source tests, but {what}")
    pytest.skip(what)


# -- servers and clips (module scope: shared by the rows) ------------------------------------------------------


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("sources_e2e")


@pytest.fixture(scope="module")
def aac_clip(workdir: Path) -> Path:
    """H.264 + AAC, what the PyAV servers remux (FLV and MPEG-TS carry AAC)."""
    return make_burst_clip(workdir / "bursts.mp4", events=BURSTS, duration=CLIP_SECONDS, audio_codec="aac", scene=SHORT)


@pytest.fixture(scope="module")
def live_servers(workdir: Path, aac_clip: Path) -> Iterator[dict[str, LiveServer]]:
    """Every live row's server, started; the RTSP one only where GStreamer's RTSP server runs."""
    servers: dict[str, LiveServer] = {}
    try:
        for row in LIVE_ROWS.values():
            if row.server == "rtsp":
                if _gst_rtsp_problem() is not None:
                    continue
                clip = make_burst_clip(workdir / "bursts.mkv", events=RTSP_BURSTS, duration=RTSP_SECONDS, scene=SHORT)
                port = free_port()
                server: LiveServer = RtspServer(port, ["--file", str(clip)], workdir / f"rtsp_{port}.log")
            else:
                port = free_udp_port() if row.server == "udp" else free_port()
                hls = row.server == "hls"
                log, hls_dir = workdir / f"{row.name}.log", workdir / "hls_live" if hls else None
                server = MediaServer(row.server, aac_clip, port, log, hls_dir, start=HLS_START if hls else 0.0)
            server.start()
            servers[row.name] = server
        yield servers
    finally:
        for server in servers.values():
            server.stop()


def _server(servers: dict[str, LiveServer], name: str) -> LiveServer:
    if name not in servers:
        _missing(f"{name}: {_gst_rtsp_problem()}")
    server = servers[name]
    if isinstance(server, MediaServer):
        server.wait_ready()  # a listen=1 server takes one client at a time: the last one may just have left
    return server


@pytest.fixture(scope="module")
def broker(workdir: Path) -> Iterator[MqttBroker]:
    if not os.access(MOSQUITTO, os.X_OK):
        _missing(f"{MOSQUITTO} is missing (Debian package mosquitto)")
    mqtt = MqttBroker(workdir / "mosquitto")
    mqtt.start()
    try:
        yield mqtt
    finally:
        mqtt.stop()


# -- what the analyzer publishes, with arrival times ----------------------------------------------------------


@dataclass
class Record:
    """Everything published under ``{prefix}/#`` while recording: (monotonic arrival, topic, payload)."""

    prefix: str
    messages: list[tuple[float, str, bytes]] = field(default_factory=list)

    def statuses(self, stream: str) -> list[tuple[float, str]]:
        return [(w, p.decode()) for w, topic, p in self.messages if topic == f"{self.prefix}/{stream}/status"]

    def events(self, stream: str) -> list[tuple[float, dict[str, Any]]]:
        """Events in arrival order, de-duplicated by (id, type): delivery is at least once."""
        seen: set[tuple[str, str]] = set()
        events = []
        for wall, topic, payload in self.messages:
            if topic == f"{self.prefix}/{stream}/events":
                event = json.loads(payload)
                if (event["id"], event["type"]) not in seen:
                    seen.add((event["id"], event["type"]))
                    events.append((wall, event))
        return events

    def ends(self, stream: str, since: float = 0.0) -> list[dict[str, Any]]:
        """The events that started (their start arrived) at ``since`` or later, and have ended."""
        events = self.events(stream)
        started = {e["id"] for w, e in events if e["type"] == "start" and w >= since}
        return [e for _, e in events if e["type"] == "end" and e["id"] in started]

    def _scores(self, stream: str, since: float = 0.0) -> Iterator[tuple[float, dict[str, Any]]]:
        topic = f"{self.prefix}/{stream}/scores"
        return ((w, json.loads(p)) for w, t, p in self.messages if t == topic and w >= since)

    def scores(self, stream: str) -> list[tuple[float, float]]:
        """(arrival, media time) of each timestep's score."""
        return [(w, float(score["t"])) for w, score in self._scores(stream)]

    def learned(self, stream: str, since: float = 0.0) -> float:
        """When the stream's video can fire (media time), scores since ``since`` (wall): LEARNING_S after its first
        timestep with a picture (its first timesteps may have sound only: HLS joins, a reconnect), plus two hops
        (that timestep has no previous frame to measure against; margin for one without a new frame)."""
        first = next(float(score["t"]) for _, score in self._scores(stream, since) if score["s_v"] is not None)
        return first + LEARNING_S + 2 * HOP

    def dump(self, path: Path) -> None:
        """Write what was recorded, for a failure's post-mortem: one JSON line per message."""
        with path.open("w") as out:
            for wall, topic, payload in self.messages:
                out.write(json.dumps({"wall": round(wall, 3), "topic": topic, "payload": payload.decode()}) + "\n")

    def status_since(self, stream: str, status: str, since: float) -> bool:
        return any(s == status and w >= since for w, s in self.statuses(stream))


@contextlib.asynccontextmanager
async def recording(mqtt: MqttBroker, prefix: str) -> AsyncIterator[Record]:
    record = Record(prefix)
    async with aiomqtt.Client(mqtt.host, mqtt.port) as client:
        await client.subscribe(f"{prefix}/#", qos=1)

        async def listen() -> None:
            async for message in client.messages:
                if message.retain or str(message.topic).endswith("/snapshot"):
                    continue  # a previous run's state; JPEGs
                payload = message.payload if isinstance(message.payload, bytes) else str(message.payload).encode()
                record.messages.append((time.monotonic(), str(message.topic), payload))

        task = asyncio.create_task(listen())
        try:
            yield record
            await asyncio.sleep(0.5)  # the last messages the analyzer flushed before exiting
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


def _config(path: Path, servers: dict[str, LiveServer], *, stall_timeout: float | None = None) -> Path:
    for server in servers.values():
        if isinstance(server, MediaServer) and server.mode == "udp":
            _free_the_udp_port(server)
    lines = ["[mqtt]", "scores = true", ""]
    if stall_timeout is not None:
        lines += ["[defaults]", f"stall_timeout = {stall_timeout}", ""]
    for name, server in servers.items():
        lines += ["[[streams]]", f'name = "{name}"', f'source = "{server.url}"']
        if isinstance(server, RtspServer):
            lines.append('rtsp_transport = "udp"')
        lines.append("")
    path.write_text("\n".join(lines))
    return path


def _free_the_udp_port(server: MediaServer) -> None:
    """The ``udp`` server sends to its port, which the analyzer binds: the port was free when the servers started,
    minutes before, and any socket on the machine bound to an ephemeral port may have taken it since (the analyzer
    then says "Address already in use" and retries). A taken port is given up for a free one."""
    if udp_bound(server.port):  # not by the server itself: it sends from a port of its own
        server.kill()
        server.move_to(free_udp_port())


@dataclass
class Run:
    record: Record
    code: int | None = None
    stderr: str = ""
    kill_at: float = 0.0  # monotonic: when the servers were killed (outage run)
    restart_at: float = 0.0  # ... and started again

    def why(self) -> str:
        return f"exit {self.code}; the analyzer's stderr ends with:\n{self.stderr[-3000:]}"


async def _finish(proc: asyncio.subprocess.Process, run: Run, within: float) -> None:
    try:
        async with asyncio.timeout(within):
            _, err = await proc.communicate()
    except TimeoutError:
        proc.kill()
        _, err = await proc.communicate()
    run.code, run.stderr = proc.returncode, err.decode(errors="replace")


@pytest.fixture(scope="module")
def warmup_servers(workdir: Path) -> Iterator[dict[str, MediaServer]]:
    """MPEG-TS over HTTP (the clip from its start for each client) of the WARMUP_CASES' clips."""
    servers: dict[str, MediaServer] = {}
    try:
        for name, (bursts, scene) in WARMUP_CASES.items():
            clip = make_burst_clip(workdir / f"{name}.mp4", events=bursts, duration=CLIP_SECONDS, audio_codec="aac",
                                   scene=scene)  # fmt: skip
            servers[name] = MediaServer("http-ts", clip, free_port(), workdir / f"{name}.log")
            servers[name].start()
        yield servers
    finally:
        for server in servers.values():
            server.stop()


async def _launch(servers: dict[str, LiveServer], *args: str) -> asyncio.subprocess.Process:
    """``streamer run ARGS``. The UDP server is started once the analyzer listens: it plays the clip from its
    start, so the stream's warm-up (0.5 to 1 s) lies before the first burst (2 s), as for the listen servers."""
    udp = servers.get("udp")
    if isinstance(udp, MediaServer):
        udp.kill()
    proc = await start_streamer(*args)
    if isinstance(udp, MediaServer):
        await until(lambda: udp_bound(udp.port), 60)
        await asyncio.to_thread(udp.start)
    return proc


@pytest.fixture(scope="module")
def duration_run(
    live_servers: dict[str, LiveServer], warmup_servers: dict[str, MediaServer], broker: MqttBroker, workdir: Path
) -> Run:
    """``streamer run --duration 12`` of every live row at once, and of the WARMUP_CASES."""
    servers = {**live_servers, **warmup_servers}
    for server in servers.values():
        _ready(server)
    config = _config(workdir / "duration.toml", servers)

    async def run() -> Run:
        async with recording(broker, "dur") as record:
            proc = await _launch(servers, "run", "--config", str(config), "--mqtt", broker.url, "--prefix", "dur",
                                 "--duration", str(RUN_SECONDS), "-q")  # fmt: skip
            result = Run(record)
            await _finish(proc, result, 90)
        record.dump(workdir / "duration_run.jsonl")
        return result

    return asyncio.run(run())


@pytest.fixture(scope="module")
def outage_run(live_servers: dict[str, LiveServer], broker: MqttBroker, workdir: Path, duration_run: Run) -> Run:
    """Every live row at once; after an event on each, all servers are killed, kept down a while, restarted."""
    for server in live_servers.values():
        _ready(server)
    names = list(live_servers)
    config = _config(workdir / "outage.toml", live_servers, stall_timeout=3.0)

    async def run() -> Run:
        async with recording(broker, "out") as record:
            result = Run(record)
            proc = await _launch(live_servers, "run", "--config", str(config), "--mqtt", broker.url, "--prefix",
                                 "out", "-q")  # fmt: skip
            try:
                await until(lambda: all(record.ends(n) for n in names), 45)
                result.kill_at = time.monotonic()
                for server in live_servers.values():
                    server.kill()
                await until(lambda: all(record.status_since(n, "reconnecting", result.kill_at) for n in names), 20)
                await asyncio.sleep(2.5)  # down a while longer: a stream must not come back without its server
                result.restart_at = time.monotonic()
                for name, server in live_servers.items():
                    if name == "udp" and isinstance(server, MediaServer):  # as _launch does: once it listens
                        await until(functools.partial(udp_bound, server.port), 20)
                    await asyncio.to_thread(server.start)
                back = result.restart_at

                def resumed(n: str) -> bool:
                    return record.status_since(n, "online", back) and bool(record.ends(n, since=back))

                await until(lambda: all(resumed(n) for n in names), 45)
            finally:
                proc.send_signal(signal.SIGTERM)
                await _finish(proc, result, 30)
        record.dump(workdir / "outage_run.jsonl")
        (workdir / "outage_run.times").write_text(f"kill {result.kill_at} restart {result.restart_at}\n")
        return result

    return asyncio.run(run())


def _ready(server: LiveServer) -> None:
    if isinstance(server, MediaServer):
        server.wait_ready()


# -- the harness: each PyAV server, read by plain PyAV ----------------------------------------------------------


@pytest.mark.parametrize("name", [name for name, row in LIVE_ROWS.items() if row.server != "rtsp"])
def test_the_server_works_with_a_plain_pyav_reader(name: str, live_servers: dict[str, LiveServer]) -> None:
    """What the tests below rely on (a failure here is the test server's, not the analyzer's)."""
    row, server = LIVE_ROWS[name], _server(live_servers, name)
    got: dict[str, list[float | None]] = {"video": [], "audio": []}
    for kind, t in frames_of(server.url, 1.0):
        got[kind].append(t)
    assert len(got["video"]) >= 5 and bool(got["audio"]) == (row.audio is not None), got
    for times in got.values():
        stamped = [t for t in times if t is not None]
        assert len(stamped) == len(times) and stamped == sorted(stamped), times


# -- probe -----------------------------------------------------------------------------------------------------


def _probe(url: str, *args: str) -> dict[str, Any]:
    done = subprocess.run([*STREAMER, "probe", url, *args], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    info: dict[str, Any] = json.loads(done.stdout)
    return info


@pytest.mark.parametrize("name", list(LIVE_ROWS))
def test_probe_describes_the_live_source(name: str, live_servers: dict[str, LiveServer]) -> None:
    row, server = LIVE_ROWS[name], _server(live_servers, name)
    args = ["--rtsp-transport", "udp"] if row.server == "rtsp" else []
    info = _probe(server.url, *args)
    assert info["kind"] == "network" and info["live"] is True
    assert info["uri"] == redact(server.url)
    if name == "rtmp":  # its stream key ("stream") is a credential: shown as ***, not in the derived stream id
        assert info["uri"].endswith("/live/***") and "stream" not in info["stream"]
    video = info["video"]
    assert (video["codec"], video["width"], video["height"]) == (row.video, WIDTH, HEIGHT), info
    assert video["fps"] == pytest.approx(row.fps, rel=0.1), info
    if row.audio is None:
        assert info["audio"] is None, info
    else:
        audio = info["audio"]
        assert (audio["codec"], audio["sample_rate"]) == (row.audio, 48000), info


# -- events on a media clock that keeps pace with the wall clock ------------------------------------------------


def _check_bursts(starts: list[float], what: str) -> None:
    """Event starts come one per burst, 5 s apart (a whole number of periods when one went missing)."""
    for a, b in itertools.pairwise(starts):
        periods = round((b - a) / PERIOD)
        assert periods >= 1 and b - a == pytest.approx(periods * PERIOD, abs=0.35), f"{what}: event starts {starts}"


@pytest.mark.parametrize("name", list(LIVE_ROWS))
def test_run_finds_the_bursts_on_the_right_clock(name: str, live_servers: dict[str, LiveServer],
                                                 duration_run: Run) -> None:  # fmt: skip
    _server(live_servers, name)
    record, row = duration_run.record, LIVE_ROWS[name]
    assert duration_run.code == 0, duration_run.why()
    statuses = [s for _, s in record.statuses(name)]
    assert statuses[:1] == ["online"] and "reconnecting" not in statuses, statuses
    ends = record.ends(name)
    assert len(ends) >= 2, f"{name}: {len(ends)} event(s) in {RUN_SECONDS} s: {ends}\n{duration_run.why()}"
    starts = [e["start_t"] for e in ends]
    _check_bursts(starts, name)
    learned = record.learned(name)  # before, the stream learns its scene: bursts are heard only
    for end in ends:
        assert 0.05 <= end["duration"] <= 0.6, end  # a 0.15 s burst
        assert end["peak"]["s_v"] >= 0.5 or end["start_t"] < learned, end
        if row.audio is not None:
            assert end["peak"]["s_a"] >= 0.5, end
    # --duration counts media seconds; live, they take as many wall seconds: media time keeps pace with the wall
    # clock (MJPEG has no timestamps: FFmpeg's 25 fps guess would make a 10 fps camera's clock run at 0.4x)
    scores = record.scores(name)
    times = [t for _, t in scores]
    assert times == sorted(set(times)) and times[-1] >= RUN_SECONDS - 0.15, times[-5:]
    steady = [(w, t) for w, t in scores if t >= 4.0]  # past a live start's catch-up (HLS: 3 segments at once)
    rate = (steady[-1][1] - steady[0][1]) / (steady[-1][0] - steady[0][0])
    assert 0.8 <= rate <= 1.25, f"{name}: media time ran at {rate:.2f}x the wall clock"


@pytest.mark.parametrize("name", list(WARMUP_CASES))
def test_a_burst_as_a_live_stream_is_joined_does_not_blind_it(name: str, duration_run: Run) -> None:
    """docs/models.md: "neither audio that starts mid-timestep nor a sound, flash or motion as a live stream is
    joined can set a baseline that blinds the stream for seconds". Here a burst of motion and sound falls in the
    stream's first 0.5 s of measurements (its baselines' warm-up); the bursts 5 and 10 s later must be seen and
    heard."""
    record = duration_run.record
    assert duration_run.code == 0, duration_run.why()
    later = [e for e in record.ends(name) if e["start_t"] >= 4.0]
    found = [(e["start_t"], e["peak"]) for e in later]
    assert len(later) >= 2, f"{name}: events after the first burst: {found}"
    assert all(e["peak"]["s_v"] >= 0.5 and e["peak"]["s_a"] >= 0.5 for e in later), f"{name}: {found}"
    _check_bursts([e["start_t"] for e in later], name)


# -- the server killed and restarted ----------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(LIVE_ROWS))
def test_killed_server_reconnects_and_events_resume(name: str, live_servers: dict[str, LiveServer],
                                                    outage_run: Run) -> None:  # fmt: skip
    _server(live_servers, name)
    run, record = outage_run, outage_run.record
    assert run.code == 0, run.why()
    statuses = record.statuses(name)
    before = [s for w, s in statuses if w < run.kill_at]
    down = [s for w, s in statuses if run.kill_at <= w < run.restart_at]
    after = [s for w, s in statuses if w >= run.restart_at]
    assert before[:1] == ["online"] and "reconnecting" not in before, statuses
    assert "reconnecting" in down, f"{name}: no reconnecting after its server was killed: {statuses}"
    assert "online" not in down, f"{name}: online while its server was down: {statuses}\n{run.why()}"
    assert "online" in after, f"{name}: not online again after the restart: {statuses}\n{run.why()}"
    events_before = [e for w, e in record.events(name) if w < run.kill_at]
    resumed = record.ends(name, since=run.restart_at)
    assert events_before and resumed, f"{name}: events before {events_before}, after the restart {resumed}"
    # the reconnected stream learns its scene afresh: its first seconds' bursts are heard only
    learned = record.learned(name, since=run.restart_at)
    for event in resumed:  # every one a burst: seen and heard (an audio-only S of 1 sits at the threshold 0.5)
        if event["reason"] == "stream ended":
            continue  # cut short by the SIGTERM that ends the run: its timestep's audio may not have come yet
        peak = event["peak"]
        heard = LIVE_ROWS[name].audio is None or peak["s_a"] >= 0.5
        assert (peak["s_v"] >= 0.5 or event["start_t"] < learned) and heard, (
            f"{name}: the event at {event['start_t']} after the restart is no burst (peak {peak}); events after "
            f"the restart (start, end reason): {[(e['start_t'], e['reason']) for e in resumed]}"
        )
    _check_bursts([e["start_t"] for e in resumed], f"{name} after the restart")
    # one timeline: events and timesteps only go forward, across the outage
    starts = [e["t"] for _, e in record.events(name) if e["type"] == "start"]
    assert starts == sorted(set(starts)), starts
    assert resumed[0]["start_t"] > events_before[-1]["t"], (events_before, resumed)
    times = [t for _, t in record.scores(name)]
    assert times == sorted(set(times)), "media time went backwards or repeated"


# -- recorded media over HTTP: analyzed like files ---------------------------------------------------------------


@pytest.fixture(scope="module")
def recorded(workdir: Path, aac_clip: Path) -> Iterator[dict[str, str]]:
    """``python -m http.server`` serving the clip as an mp4 (moov first, as recordings meant for the web are)
    and as an HLS VOD playlist; their URLs by row name."""
    root = workdir / "www"
    (root / "vod").mkdir(parents=True)
    faststart = {"movflags": "+faststart"}
    with av.open(str(aac_clip)) as source, av.open(str(root / "bursts.mp4"), "w", container_options=faststart) as mp4:
        _copy(source, mp4)
    vod = {"hls_time": "2", "hls_playlist_type": "vod", "hls_segment_filename": str(root / "vod/s%03d.ts")}
    with (
        av.open(str(aac_clip)) as source,
        av.open(str(root / "vod/index.m3u8"), "w", format="hls", container_options=vod) as playlist,
    ):
        _copy(source, playlist)
    port = free_port()
    proc = serve_files(root, port, workdir / "http_server.log")
    try:
        yield {"mp4_http": f"http://127.0.0.1:{port}/bursts.mp4", "hls_vod": f"http://127.0.0.1:{port}/vod/index.m3u8"}
    finally:
        proc.terminate()
        proc.wait(10)


def _copy(source: Any, out: Any) -> None:
    streams = {s.index: out.add_stream_from_template(s) for s in source.streams}
    for packet in source.demux():
        if packet.dts is not None:
            packet.stream = streams[packet.stream.index]
            out.mux(packet)


@dataclass
class RecordedRun:
    code: int | None
    stderr: str
    wall: float  # seconds the run took, to its end or to RECORDED_WITHIN
    ended: bool  # by itself, at the end of the recordings
    events: list[dict[str, Any]]


RECORDED_WITHIN = 45.0  # far longer than decoding 20 s of 320x180 takes; a stream taken for a live one never ends


@pytest.fixture(scope="module")
def recorded_run(recorded: dict[str, str], workdir: Path) -> RecordedRun:
    """Both recordings in one ``streamer run`` without ``--duration``: like files, it ends with them."""
    out = workdir / "recorded.jsonl"
    sources = [f"{name}={url}" for name, url in recorded.items()]
    begun = time.monotonic()
    proc = subprocess.Popen([*STREAMER, "run", *sources, "--mqtt", "none", "--events-out", str(out), "-q"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)  # fmt: skip
    ended = True
    try:
        _, err = proc.communicate(timeout=RECORDED_WITHIN)
    except subprocess.TimeoutExpired:  # a recording taken for a live stream never ends: it reconnects
        ended = False
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    events = [json.loads(line) for line in out.read_text().splitlines()] if out.exists() else []
    return RecordedRun(proc.returncode, err, time.monotonic() - begun, ended, events)


@pytest.mark.parametrize("name", ["mp4_http", "hls_vod"])
def test_recorded_media_over_http_is_analyzed_like_a_file(name: str, recorded: dict[str, str],
                                                          recorded_run: RecordedRun) -> None:  # fmt: skip
    info = _probe(recorded[name])
    assert info["live"] is False and info["duration"] == pytest.approx(CLIP_SECONDS, abs=0.2), info
    assert (info["video"]["codec"], info["video"]["width"], info["video"]["height"]) == ("h264", WIDTH, HEIGHT)
    assert info["video"]["fps"] == pytest.approx(30.0, rel=0.01) and info["audio"]["codec"] == "aac", info

    run = recorded_run
    assert run.ended, f"still running after {RECORDED_WITHIN} s (taken for a live stream?):\n{run.stderr[-3000:]}"
    assert run.code == 0, f"exit {run.code}:\n{run.stderr[-3000:]}"
    assert run.wall < 20, f"{run.wall:.0f} s for 20 s of media: not analyzed as fast as decoding allows"
    ends = [e for e in run.events if e["type"] == "end" and e["stream"] == name]
    # every burst, at its time in the recording: no timestep dropped, nothing shifted
    assert [e["start_t"] for e in ends] == pytest.approx(BURST_STARTS, abs=0.15), ends
    assert all(0.05 <= e["duration"] <= 0.6 for e in ends), ends
