"""CPU time and memory of a benchmark's processes (psutil): a process, and the processes below it, apart.

What sizes a machine is how much CPU a stream costs for each second of its media, next to what decoding alone
costs. ``streamer run`` decodes in ingest processes (one per live stream) below the analyzer's process, which
scores, detects and publishes; so the benchmarks report the two apart: :func:`cpu_times` before and after a
measured stretch, :func:`busy` between them.

A process below the roots that ends between two samples counts until its parent reaps it (then in the parent's
``children`` times); one that ends unreaped in between is not counted (the benchmarks' processes run until the
end).
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import psutil


@dataclass(frozen=True, slots=True)
class CpuTimes:
    """CPU seconds (user + system) of the roots themselves (``own``) and of every process below them (``below``:
    the live ones and those they reaped), at ``at`` (``time.monotonic()``)."""

    own: float
    below: float
    at: float


@dataclass(frozen=True, slots=True)
class Busy:
    """Cores kept busy between two samples (CPU seconds per wall second): the roots', and their processes'."""

    own: float
    below: float
    seconds: float  # the wall time between the samples

    def per_stream_ms(self, streams: int) -> dict[str, float]:
        """CPU milliseconds per stream and second of live media (real time: a media second is a wall second)."""
        n = max(1, streams)
        return {"own": round(1000 * self.own / n, 2), "below": round(1000 * self.below / n, 2)}


def _total(times: Any, *, reaped: bool) -> float:
    total = float(times.user + times.system)
    return total + (float(times.children_user + times.children_system) if reaped else 0.0)


def cpu_times(roots: Iterable[int]) -> CpuTimes:
    """The roots' CPU times now, and their descendants' (a root that is gone counts nothing)."""
    own = below = 0.0
    for pid in roots:
        try:
            root = psutil.Process(pid)
            with root.oneshot():
                times = root.cpu_times()
                children = root.children(recursive=True)
        except psutil.Error:
            continue
        own += _total(times, reaped=False)
        below += times.children_user + times.children_system  # the root's reaped processes
        for child in children:
            try:
                below += _total(child.cpu_times(), reaped=True)
            except psutil.Error:
                continue
    return CpuTimes(own, below, time.monotonic())


def busy(before: CpuTimes, after: CpuTimes) -> Busy:
    seconds = max(after.at - before.at, 1e-9)
    return Busy((after.own - before.own) / seconds, max(0.0, after.below - before.below) / seconds, seconds)


def tree_rss_mb(root: int) -> float:
    """Resident memory of ``root`` and every process below it, MB (0 when it is gone)."""
    try:
        process = psutil.Process(root)
        processes = [process, *process.children(recursive=True)]
    except psutil.Error:
        return 0.0
    total = 0
    for p in processes:
        try:
            total += p.memory_info().rss
        except psutil.Error:
            continue
    return total / (1024 * 1024)
