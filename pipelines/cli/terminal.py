"""What ``streamer run`` shows: a line per event on stdout, a progress line for files on stderr, a summary."""

from __future__ import annotations

import sys
import time
from typing import TYPE_CHECKING, TextIO

from pipelines.cli.display import format_event
from pipelines.config import AnalyzerConfig
from pipelines.stages.events import Event

if TYPE_CHECKING:
    from pipelines.analyzer import Analyzer, RunSummary

PROGRESS_PERIOD = 0.2  # seconds between redraws


class Terminal:
    def __init__(
        self, config: AnalyzerConfig, *, quiet: bool = False, out: TextIO = sys.stdout, err: TextIO = sys.stderr
    ) -> None:
        self.config = config
        self.quiet = quiet
        self.out, self.err = out, err
        self._analyzer: Analyzer | None = None
        self._drawn = False
        self._last_draw = 0.0
        self._tty = err.isatty()
        self._width = max([12, *(len(s.stream_id) for s in config.streams)])

    def start(self, analyzer: Analyzer) -> None:
        self._analyzer = analyzer
        if self.quiet:
            return
        c = self.config
        target = f"{c.mqtt.display_url} (prefix {c.mqtt.prefix})" if c.mqtt.url else "no broker"
        extra = f", events also to {c.events_out}" if c.events_out else ""
        device = analyzer.device_name
        self._line(f"streamer: analyzing {len(c.streams)} stream(s) on {device}; events to {target}{extra}")

    def event(self, event: Event) -> None:
        if self.quiet:
            return
        self._clear()
        self.out.write(format_event(event.as_dict(), self._width) + "\n")
        self.out.flush()

    def progress(self, reached: dict[str, float]) -> None:
        if self.quiet or not self._tty or self._analyzer is None:
            return
        now = time.monotonic()
        if now - self._last_draw < PROGRESS_PERIOD:
            return
        self._last_draw = now
        parts = []
        done = total = 0.0
        for stream_id, t in reached.items():
            info = self._analyzer.streams[stream_id].info
            duration = self.config.duration or (info.duration if info is not None else None)
            if info is None or info.live or not duration:
                continue
            done += min(t, duration)
            total += duration
            parts.append(f"{stream_id} {min(t, duration):.1f}/{duration:.1f} s")
        if not total:
            return
        filled = int(30 * done / total)
        bar = "#" * filled + "." * (30 - filled)
        self.err.write(f"\r[{bar}] {100 * done / total:3.0f}%  " + "  ".join(parts)[:120] + "\x1b[K")
        self.err.flush()
        self._drawn = True

    def finish(self, summary: RunSummary) -> None:
        self._clear()
        problems = outcome(summary)
        if self.quiet and not problems:  # quiet is no events and no progress: what went wrong is still said
            return
        self._line(f"streamer: done: {summary.events} event(s), {summary.timesteps} timesteps{problems}")

    def _clear(self) -> None:
        if self._drawn:
            self.err.write("\r\x1b[K")
            self.err.flush()
            self._drawn = False

    def _line(self, text: str) -> None:
        self._clear()
        self.err.write(text + "\n")
        self.err.flush()


def outcome(summary: RunSummary) -> str:
    """What went wrong, after the counts: streams that failed, streams that never opened (each with its last
    error: a run stopped while a URL kept answering 404 must not read as a quiet success), events not delivered."""
    parts = []
    if summary.failed:
        parts.append(f"{len(summary.failed)} stream(s) failed")
    if summary.never_opened:
        causes = "; ".join(str(e) for e in summary.never_opened)
        parts.append(f"{len(summary.never_opened)} stream(s) never opened ({causes})")
    if summary.undelivered_events:
        parts.append(f"{summary.undelivered_events} event(s) not delivered")
    return "".join(f", {part}" for part in parts)
