"""``streamer bench latency`` that fails on the way leaves nothing open: its log files are closed, its MQTT
subscriber has left the broker, its processes and broker are ended. Real processes fail for real: an impulse
server refusing its arguments, an analyzer refusing its device."""

from __future__ import annotations

import contextlib
import gc
import os
import warnings
from pathlib import Path
from typing import Any

import pytest

from pipelines.bench.latency import LatencyOptions, run_latency
from streamer.errors import ConfigError

FAILURES = {
    # before the subscriber connects: the server exits on an Opus frame length it does not take
    "server": (LatencyOptions(impulses=1, audio_frame_ms=15), "the impulse server did not start"),
    # after: the analyzer exits at start-up
    "analyzer": (LatencyOptions(impulses=1, device="nonsense"), "the analyzer exited"),
}


def open_files() -> dict[str, str]:
    """This process's open file descriptors and what each is (a path, a socket, a pipe)."""
    out = {}
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):  # the descriptor listdir itself used
            out[fd] = os.readlink(f"/proc/self/fd/{fd}")
    return out


@pytest.mark.timeout(120)
@pytest.mark.parametrize("failure", list(FAILURES))
async def test_a_failed_run_leaves_nothing_open(tmp_path: Path, failure: str, rtsp_server: Any,
                                                mqtt_broker: Any) -> None:  # fmt: skip
    """The fixtures only make sure the Debian packages are there. Before, each log file stayed open (a
    ResourceWarning when collected) and the subscriber's connection was never left."""
    options, expected = FAILURES[failure]
    gc.collect()
    before = open_files()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(ConfigError, match=expected):
            await run_latency(options, tmp_path / "work")
        left = {fd: what for fd, what in open_files().items() if before.get(fd) != what}
        gc.collect()
    assert left == {}
    assert [str(w.message) for w in caught if issubclass(w.category, ResourceWarning)] == []
    if failure == "analyzer":  # the subscriber had connected: it said goodbye
        broker_log = (tmp_path / "work" / "mosquitto" / "mosquitto.log").read_text()
        assert "New client connected" in broker_log and "disconnected" in broker_log, broker_log
