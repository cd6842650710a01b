"""What FFmpeg says while a call runs: its error lines, from this thread's log, to name a failure's cause."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator


@contextlib.contextmanager
def errors_said() -> Iterator[list[tuple[int, str, str]]]:
    """FFmpeg's log lines of this thread at ``ERROR`` and worse, as ``(level, name, message)``, while the block
    runs (PyAV's ``Capture``; FFmpeg's logging is off again afterwards). The list stays readable after it."""
    import av.logging

    av.logging.set_level(av.logging.ERROR)
    try:
        with av.logging.Capture(local=True) as logs:
            yield logs
    finally:
        av.logging.set_level(None)
