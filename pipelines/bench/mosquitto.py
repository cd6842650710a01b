"""A real MQTT broker for the tests and benchmarks: Debian's mosquitto (2.0.x) on a free 127.0.0.1 port.

``MqttBroker(tmp_dir)`` writes ``mosquitto.conf`` (anonymous access, no persistence, TCP_NODELAY, full logging
to ``mosquitto.log``) into ``tmp_dir``; ``extra_config`` lines are appended as they are (TLS listeners,
password files...). :meth:`MqttBroker.start` returns once the port accepts TCP connections. The port stays the
same across :meth:`~MqttBroker.stop` / :meth:`~MqttBroker.kill` and :meth:`~MqttBroker.start`, so clients can
reconnect to the same URL.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

MOSQUITTO = "/usr/sbin/mosquitto"
READY_TIMEOUT = 10.0
STOP_TIMEOUT = 10.0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def end_process(proc: subprocess.Popen[Any], signum: signal.Signals, timeout: float = STOP_TIMEOUT) -> None:
    """Send ``signum`` (after SIGCONT: a stopped process could not act on it) and wait; SIGKILL after
    ``timeout`` seconds."""
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGCONT)
    proc.send_signal(signum)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


class MqttBroker:
    """One mosquitto subprocess listening on ``127.0.0.1:port``; ``.url`` is ``mqtt://127.0.0.1:PORT``."""

    def __init__(
        self,
        tmp_dir: Path,
        *,
        port: int | None = None,
        extra_config: Sequence[str] = (),
        executable: str = MOSQUITTO,
    ) -> None:
        self.host = "127.0.0.1"
        self.port = port if port is not None else free_port()
        self.url = f"mqtt://{self.host}:{self.port}"
        tmp_dir.mkdir(parents=True, exist_ok=True)
        self.config = tmp_dir / "mosquitto.conf"
        self.log = tmp_dir / "mosquitto.log"  # mosquitto's own log, appended to across restarts
        self._stderr = tmp_dir / "mosquitto.stderr"
        self._executable = executable
        self._proc: subprocess.Popen[bytes] | None = None
        lines = [
            f"listener {self.port} {self.host}",
            "allow_anonymous true",
            "set_tcp_nodelay true",
            "persistence false",
            f"log_dest file {self.log}",
            "log_type all",
            "log_timestamp_format %H:%M:%S",
        ]
        if os.geteuid() == 0:
            lines.append("user root")  # as root, mosquitto would otherwise drop to the "mosquitto" user
        self.config.write_text("\n".join([*lines, *extra_config]) + "\n")

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self) -> None:
        """Start mosquitto and wait (at most READY_TIMEOUT s) until its port accepts a TCP connection."""
        if self.running:
            raise RuntimeError(f"MQTT broker on port {self.port} is already running")
        with self._stderr.open("ab") as err:
            self._proc = proc = subprocess.Popen(
                [self._executable, "-c", str(self.config)], stdin=subprocess.DEVNULL, stdout=err, stderr=err
            )
        deadline = time.monotonic() + READY_TIMEOUT
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                with socket.create_connection((self.host, self.port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.02)
        why = f"exited with {proc.returncode}" if proc.poll() is not None else f"not listening after {READY_TIMEOUT} s"
        self.kill()
        raise RuntimeError(f"MQTT broker on port {self.port} {why}:\n{self.log_tail()}")

    def stop(self) -> None:
        """SIGTERM (a clean shutdown) and wait; SIGKILL if it does not exit in STOP_TIMEOUT s."""
        self._end(signal.SIGTERM)

    def kill(self) -> None:
        """SIGKILL (a crash: connections drop without a DISCONNECT, wills fire) and wait."""
        self._end(signal.SIGKILL)

    def restart(self) -> None:
        """Stop the broker if it runs, then start it again on the same port (retained messages are gone)."""
        self.stop()
        self.start()

    def log_tail(self, chars: int = 2000) -> str:
        """The end of mosquitto's log file and of its stderr (config errors land there)."""
        parts = [p.read_text(errors="replace")[-chars:] for p in (self.log, self._stderr) if p.exists()]
        return "\n".join(part for part in parts if part)

    def _end(self, signum: signal.Signals) -> None:
        proc, self._proc = self._proc, None
        if proc is not None:
            end_process(proc, signum)

    def __repr__(self) -> str:
        return f"MqttBroker(url={self.url!r}, running={self.running})"
