"""Which worker analyzes which stream: balanced by decode cost, sticky.

A stream's cost is its decoded pixels per second against 640x360 at 30 fps (so a 1080p30 camera costs 9, a
320x240 one 0.33), measured from the stream once a worker has opened it, 1 until then. A worker's capacity is a
weight (its CPUs, or more for a GPU worker). A stream stays where it is while its worker lives (its model state
and its decoder are there; no frame crosses the network); a new stream, or one whose worker is gone, goes to the
worker whose load over capacity would be lowest with it, the costliest streams first.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

REFERENCE_PIXELS_PER_S = 640 * 360 * 30
MIN_COST = 0.1


@dataclass(frozen=True)
class WorkerSlot:
    id: str
    capacity: float = 1.0


def stream_cost(video: Mapping[str, Any] | None) -> float:
    """From a worker's status of the stream (``{"width", "height", "fps"}``); 1 when not known yet."""
    if not video or not video.get("width") or not video.get("height"):
        return 1.0
    fps = video.get("fps") or 30.0
    return max(MIN_COST, float(video["width"] * video["height"] * fps) / REFERENCE_PIXELS_PER_S)


def place(
    streams: Sequence[str],
    workers: Sequence[WorkerSlot],
    current: Mapping[str, str],
    costs: Mapping[str, float] | None = None,
) -> dict[str, str]:
    """stream -> worker for every stream of ``streams``; ``current`` (stream -> worker) is kept where its worker
    is among ``workers``. No worker: an empty placement."""
    if not workers:
        return {}
    costs = costs or {}
    alive = {w.id: w for w in workers}
    wanted = set(streams)
    out = {s: w for s, w in current.items() if s in wanted and w in alive}
    load = dict.fromkeys(alive, 0.0)
    for s, w in out.items():
        load[w] += costs.get(s, 1.0)
    for s in sorted((s for s in wanted if s not in out), key=lambda s: (-costs.get(s, 1.0), s)):
        cost = costs.get(s, 1.0)
        best = min(alive.values(), key=lambda w: ((load[w.id] + cost) / w.capacity, load[w.id], w.id))
        out[s] = best.id
        load[best.id] += cost
    return out
