"""FFmpeg's error lines reach the call that caused them when several threads open sources at once (one ingest
process opens each of its sources on a thread of its own), and again at a reconnect."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import av.logging
import pytest

from streamer.av_input import open_container
from streamer.errors import SourceCertificateError
from streamer.ffmpeg_log import errors_said
from streamer.options import SourceOptions
from streamer.spec import parse_source

from .helpers import self_signed_certificate, serving


@pytest.fixture
def untrusted_https(tmp_path: Path) -> Iterator[str]:
    """An HTTPS server on 127.0.0.1 whose self-signed certificate nobody trusts: opening it is an FFmpeg error."""
    with serving(tmp_path, self_signed_certificate(tmp_path)) as port:
        yield f"https://127.0.0.1:{port}/clip.mkv"


def test_sources_opening_at_once_each_hear_why_they_failed(untrusted_https: str) -> None:
    """Four TLS sources opened at once, twice over (the second round is their reconnect): each is told its
    certificate failed verification. Before, one capture ending switched FFmpeg's log off under the others, and
    PyAV's skipping of a line identical to the last one it saw left every source after the first with a bare
    "Input/output error"."""
    errors: dict[str, BaseException | None] = {}
    start = threading.Barrier(4)

    def open_one(name: str) -> None:
        start.wait()
        try:
            open_container(parse_source(f"{name}={untrusted_https}"), SourceOptions(open_timeout=10.0))
            errors[name] = None
        except Exception as exc:  # the test reads what each got
            errors[name] = exc

    for attempt in range(2):
        threads = [threading.Thread(target=open_one, args=(f"s{attempt}{i}",)) for i in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
    assert len(errors) == 8
    for name, exc in errors.items():
        assert isinstance(exc, SourceCertificateError), f"{name}: {exc!r}"
        assert "certificate failed verification" in str(exc) and f"'{name}'" in str(exc)


def test_a_capture_ending_leaves_the_others_capturing() -> None:
    """A opens, B opens, A ends, then B's call logs: B still gets its line, and only its own; FFmpeg's logging
    is as it was once both end."""
    level_before = av.logging.get_level()
    a_in, b_in, a_out, b_logged = (threading.Event() for _ in range(4))
    said: dict[str, list[tuple[int, str, str]]] = {}

    def a() -> None:
        with errors_said() as logs:
            a_in.set()
            b_in.wait(10)
            av.logging.log(av.logging.ERROR, "tls", "A's own error")
        said["a"] = logs
        a_out.set()

    def b() -> None:
        a_in.wait(10)
        with errors_said() as logs:
            b_in.set()
            a_out.wait(10)
            av.logging.log(av.logging.ERROR, "tls", "B's own error")
            av.logging.log(av.logging.ERROR, "tls", "B's own error")  # said twice: both kept
        said["b"] = logs
        b_logged.set()

    threads = [threading.Thread(target=a), threading.Thread(target=b)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(20)
    assert b_logged.is_set()
    assert [m for _, _, m in said["a"]] == ["A's own error"]
    assert [m for _, _, m in said["b"]] == ["B's own error", "B's own error"]
    assert av.logging.get_level() == level_before
