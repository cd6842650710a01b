"""Shared fixtures: a live RTSP A/V server (tests/rtsp_server.py) run under Debian's python3, and a real
MQTT broker (pipelines/bench/mosquitto.py, Debian's mosquitto).

``rtsp_server`` is a factory: ``server = rtsp_server()`` starts a server on a free loopback port and returns
an :class:`RtspServer` (``.url``, ``.port``, ``.start()``, ``.stop()``, ``.kill()``, ``.restart()``);
``rtsp_server(audio=False)`` and friends pick what it serves, ``rtsp_server(file=clip)`` serves a Matroska
file (H.264 + Opus) in real time, from its start for every client. Every server is stopped at teardown.

``mqtt_broker`` is a factory too: ``broker = mqtt_broker()`` starts mosquitto on a free loopback port and
returns a :class:`~pipelines.bench.mosquitto.MqttBroker` (``.url``, ``.host``, ``.port``, ``.start()``, ``.stop()``,
``.kill()``, ``.restart()``, ``.running``); ``extra_config=[...]`` adds mosquitto.conf lines. Every broker is
stopped at teardown.

Tests that use them are skipped when ``/usr/bin/python3`` cannot import GstRtspServer, or when
``/usr/sbin/mosquitto`` is missing, unless the ``CI`` environment variable is set: then they fail, since CI
must run them.
"""

from __future__ import annotations

import contextlib
import functools
import os
import selectors
import signal
import subprocess
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
from hypothesis import settings

from pipelines.bench.mosquitto import MOSQUITTO, MqttBroker, end_process, free_port

# CI runs the property tests with a fixed seed (a red CI must mean a regression, not a new random draw);
# locally each run draws new examples.
settings.register_profile("ci", derandomize=True, max_examples=200)
if os.environ.get("CI"):
    settings.load_profile("ci")

SYSTEM_PYTHON = "/usr/bin/python3"
SERVER_SCRIPT = Path(__file__).with_name("rtsp_server.py")
READY_TIMEOUT = 15.0
STOP_TIMEOUT = 10.0


class RtspServer:
    """One tests/rtsp_server.py subprocess; it keeps its port across stop/start, so clients can reconnect."""

    def __init__(self, port: int, args: list[str], log: Path, path: str = "/test") -> None:
        self.port = port
        self.url = f"rtsp://127.0.0.1:{port}{path}"
        self._args = [SYSTEM_PYTHON, str(SERVER_SCRIPT), "--port", str(port), "--path", path, *args]
        self._proc: subprocess.Popen[str] | None = None
        self.log = log  # the server's stderr, appended to across restarts

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self) -> None:
        """Start the server and wait (at most READY_TIMEOUT s) until it listens."""
        if self.running:
            raise RuntimeError(f"RTSP server on port {self.port} is already running")
        with self.log.open("a") as log:
            self._proc = proc = subprocess.Popen(self._args, stdout=subprocess.PIPE, stderr=log, text=True)
        assert proc.stdout is not None
        deadline = time.monotonic() + READY_TIMEOUT
        with selectors.DefaultSelector() as selector:
            selector.register(proc.stdout, selectors.EVENT_READ)
            while (left := deadline - time.monotonic()) > 0 and selector.select(left):
                line = proc.stdout.readline()
                if line.startswith("READY "):
                    return
                if not line:  # EOF: the server exited
                    break
        self.kill()
        raise RuntimeError(f"RTSP server on port {self.port} did not get ready:\n{self.log.read_text()[-2000:]}")

    def stop(self) -> None:
        """SIGTERM (a clean shutdown) and wait; SIGKILL if it does not exit in STOP_TIMEOUT s."""
        self._end(signal.SIGTERM)

    def kill(self) -> None:
        """SIGKILL (a crash: no RTSP teardown) and wait."""
        self._end(signal.SIGKILL)

    def pause(self) -> None:
        """SIGSTOP: the server stays connected but sends nothing (a stalled camera)."""
        assert self._proc is not None
        self._proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        """SIGCONT after :meth:`pause`."""
        assert self._proc is not None
        self._proc.send_signal(signal.SIGCONT)

    def restart(self) -> None:
        """Stop the server if it runs, then start it again on the same port."""
        self.stop()
        self.start()

    def _end(self, signum: signal.Signals) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        end_process(proc, signum, STOP_TIMEOUT)
        if proc.stdout is not None:
            proc.stdout.close()


class RtspServers:
    """The ``rtsp_server`` fixture's value: call it to start a server; all of them stop at teardown."""

    def __init__(self, log_dir: Path) -> None:
        self._log_dir = log_dir
        self._servers: list[RtspServer] = []

    def __call__(
        self,
        *,
        path: str = "/test",
        width: int = 320,
        height: int = 240,
        fps: int = 30,
        audio: bool = True,
        video: bool = True,
        file: Path | None = None,
        start: bool = True,
    ) -> RtspServer:
        """Serve live test sources, or with ``file`` that Matroska file (``audio``/``video``: its tracks)."""
        if file is not None:
            args = ["--file", str(Path(file).resolve())]
        else:
            args = ["--width", str(width), "--height", str(height), "--fps", str(fps)]
        args += [] if audio else ["--no-audio"]
        args += [] if video else ["--no-video"]
        port = free_port()
        server = RtspServer(port, args, self._log_dir / f"rtsp_server_{port}.log", path)
        self._servers.append(server)
        if start:
            server.start()
        return server

    def close(self) -> None:
        for server in self._servers:
            server.stop()


class MqttBrokers:
    """The ``mqtt_broker`` fixture's value: call it to start a broker; all of them stop at teardown."""

    def __init__(self, tmp_dir: Path) -> None:
        self._tmp_dir = tmp_dir
        self._brokers: list[MqttBroker] = []

    def __call__(self, *, extra_config: Sequence[str] = (), start: bool = True) -> MqttBroker:
        broker = MqttBroker(self._tmp_dir / f"mosquitto_{len(self._brokers)}", extra_config=extra_config)
        self._brokers.append(broker)
        if start:
            broker.start()
        return broker

    def close(self) -> None:
        for broker in self._brokers:
            broker.stop()


@functools.cache
def _gst_rtsp_problem() -> str | None:
    """Why /usr/bin/python3 cannot run the server, or None when it can."""
    probe = "import gi; gi.require_version('GstRtspServer', '1.0'); from gi.repository import GstRtspServer"
    try:
        result = subprocess.run([SYSTEM_PYTHON, "-c", probe], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"{SYSTEM_PYTHON}: {exc}"
    if result.returncode != 0:
        return f"{SYSTEM_PYTHON} cannot import GstRtspServer: {result.stderr.strip().splitlines()[-1:]}"
    return None


@pytest.fixture(autouse=True)
def _no_streamer_left_running() -> Iterator[None]:
    """A test that fails before it stops its ``streamer`` leaves none behind: a live run left going would eat the
    cores of every later test on this machine (seen in CI: three of them, for minutes)."""
    from .analyzer_run import STARTED

    yield
    for proc in STARTED:
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGKILL)
    STARTED.clear()


@pytest.fixture
def rtsp_server(tmp_path: Path) -> Iterator[RtspServers]:
    problem = _gst_rtsp_problem()
    if problem is not None:
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the RTSP tests, but {problem}")
        pytest.skip(problem)
    servers = RtspServers(tmp_path)
    try:
        yield servers
    finally:
        servers.close()


@pytest.fixture
def mqtt_broker(tmp_path: Path) -> Iterator[MqttBrokers]:
    if not os.access(MOSQUITTO, os.X_OK):
        problem = f"{MOSQUITTO} is missing (Debian package mosquitto)"
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the MQTT broker tests, but {problem}")
        pytest.skip(problem)
    brokers = MqttBrokers(tmp_path)
    try:
        yield brokers
    finally:
        brokers.close()
