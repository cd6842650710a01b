"""What FFmpeg says while a call runs: its error lines, from this thread's log, to name a failure's cause.

FFmpeg's log level and PyAV's handling of it are process-wide, while the calls that want their lines run on
several threads at once (an ingest process opens each of its sources on a thread of its own). So the level is
raised by the first capture and put back by the last one (a reference count under a lock), and each capture
keeps only its own thread's lines (PyAV's ``Capture(local=True)`` routes a line by the thread that logged it).
PyAV also drops a line identical to the previous one it saw, from any thread and however long ago: the second
source to fail the same way (or the same source, again, at its reconnect) would get no line at all, so that is
turned off while any capture runs.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator

_lock = threading.Lock()
_captures = 0  # captures running, on any thread
_before: tuple[int | None, bool] = (None, True)  # PyAV's level and skip-repeated setting before the first


@contextlib.contextmanager
def errors_said() -> Iterator[list[tuple[int, str, str]]]:
    """FFmpeg's log lines of this thread at ``ERROR`` and worse, as ``(level, name, message)``, while the block
    runs (PyAV's ``Capture``; FFmpeg's logging is as it was again once the last capture ends). The list stays
    readable after it."""
    import av.logging

    global _captures, _before
    with _lock:
        if _captures == 0:
            level, skips = av.logging.get_level(), av.logging.get_skip_repeated()
            _before = (level, skips)
            av.logging.set_level(av.logging.ERROR if level is None else max(level, av.logging.ERROR))
            av.logging.set_skip_repeated(False)
        _captures += 1
    try:
        with av.logging.Capture(local=True) as logs:
            yield logs
    finally:
        with _lock:
            _captures -= 1
            if _captures == 0:
                av.logging.set_level(_before[0])
                av.logging.set_skip_repeated(_before[1])
