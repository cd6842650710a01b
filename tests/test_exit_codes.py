"""Exit codes say what happened (streamer/errors.py): a run that analyzed nothing, or whose events never reached
the broker, does not end with 0. Real ``streamer run`` subprocesses, a real HTTP server answering 404, a broker
port where nothing listens."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from pipelines.analyzer import RunSummary
from pipelines.bench.mosquitto import free_port
from streamer.errors import EXIT_NOT_OPENED, EXIT_OK, EXIT_SOURCE, EXIT_UNDELIVERED, SourceError

from .analyzer_run import run_streamer, start_streamer
from .helpers import serving


@pytest.fixture
def http_404(tmp_path: Path) -> Iterator[str]:
    """An HTTP server on a loopback port serving an empty folder: every path answers 404."""
    with serving(tmp_path) as port:
        yield f"http://127.0.0.1:{port}/missing.mp4"


async def test_a_stream_that_never_opened_is_named_and_the_exit_code_says_so(http_404: str) -> None:
    """A URL answering 404 is retried like an outage; Ctrl-C then printed ``done: 0 event(s)`` and exit 0."""
    proc = await start_streamer("run", f"cam={http_404}", "--mqtt", "none")
    assert proc.stderr is not None
    lines: list[str] = []
    async with asyncio.timeout(60):
        # answered 404 twice: the first answer's state reached the analyzer (a retry waits 0.5 s at least)
        while sum("retrying in" in line for line in lines) < 2:
            line = (await proc.stderr.readline()).decode()
            assert line, "".join(lines)
            lines.append(line)
        proc.send_signal(signal.SIGINT)
        _, err = await proc.communicate()
    text = "".join(lines) + err.decode()
    assert proc.returncode == EXIT_NOT_OPENED, text
    done = [line for line in text.splitlines() if line.startswith("streamer: done:")]
    assert len(done) == 1, text
    assert "1 stream(s) never opened (stream 'cam': cannot open" in done[0] and "404" in done[0], text


async def test_events_not_delivered_make_a_non_zero_exit() -> None:
    """No broker listens: the events wait in the outbox and are lost at exit. That ran to exit 0."""
    code, _, err = await run_streamer("synthetic:?realtime=0&duration=3&events=av@1", "--mqtt",
                                      f"mqtt://127.0.0.1:{free_port()}", "-q")  # fmt: skip
    assert code == EXIT_UNDELIVERED, err
    assert "2 of them events, not delivered" in err, err
    assert "streamer: done: 1 event(s), 30 timesteps, 2 event(s) not delivered" in err, err


def test_the_lowest_code_wins_when_several_apply() -> None:
    failed, never = (SourceError("a", "no such file"),), (SourceError("b", "Server returned 404 Not Found"),)
    summary = RunSummary(events=0, timesteps=0, failed=(), undelivered=0)
    assert summary.exit_code == EXIT_OK
    assert RunSummary(1, 10, (), 3, undelivered_events=2).exit_code == EXIT_UNDELIVERED
    assert RunSummary(1, 10, (), 3, undelivered_events=2, never_opened=never).exit_code == EXIT_NOT_OPENED
    assert RunSummary(1, 10, failed, 3, undelivered_events=2, never_opened=never).exit_code == EXIT_SOURCE
    assert (EXIT_SOURCE, EXIT_NOT_OPENED, EXIT_UNDELIVERED) == (3, 4, 5)  # the documented numbers
