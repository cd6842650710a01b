"""The dynamic batcher shared by every stream: ready timesteps in, batches across streams out.

Each stream has a *lane*, a bounded FIFO of its ready timesteps. :meth:`Batcher.next_batch` waits for the first
timestep of any lane, then up to ``max_wait`` seconds for more (like Triton's ``max_queue_delay`` or
nvstreammux's batched-push-timeout) unless ``max_batch`` are ready or every open lane has one, and takes them
round-robin across lanes, oldest first, so one busy stream cannot starve the others and each stream's timesteps
stay in order.

Files are analyzed for throughput, not latency: when no *paced* lane is open, the batcher waits up to
``file_wait`` (50 ms) until each file lane holds ``file_batch`` (16) timesteps, so the model scores many
timesteps of a stream in one call (measured all at once, see ``forward_rounds`` in :mod:`models.video`).
A paced lane is one whose timesteps arrive in real time, one a hop: a live source, or a file read with
``--realtime``. Waiting for 16 of those would hold each timestep ``file_wait`` for nothing (a realtime file's
batch stage measured 50 ms a timestep, against 0.05 ms for a live source), so a paced lane counts as ready with
one timestep, and a batch waits at most ``max_wait`` for it, whatever its drop policy.

A full lane is the explicit drop policy: a live stream's lane drops its oldest timestep (counted in
``Lane.dropped``): latency stays bounded when the model is slower than real time; a file's lane makes the
stream wait (backpressure, nothing lost). Memory is bounded either way.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

T = TypeVar("T")


@dataclass(eq=False)
class Lane(Generic[T]):
    name: str
    capacity: int
    drop_oldest: bool  # live: drop the oldest when full; file: wait for room
    paced: bool = False  # its timesteps arrive in real time (live, or a file read with --realtime)
    pending: deque[T] = field(default_factory=deque)
    dropped: int = 0
    counted: Callable[[T], bool] = lambda _: True  # whether a dropped item counts in ``dropped``
    closed: bool = False
    _room: asyncio.Event = field(default_factory=asyncio.Event)


class Batcher(Generic[T]):
    def __init__(self, max_batch: int, max_wait: float, *, file_batch: int = 16, file_wait: float = 0.05) -> None:
        if max_batch < 1 or max_wait < 0 or file_batch < 1 or file_wait < 0:
            raise ValueError("max_batch and file_batch must be >= 1, max_wait and file_wait >= 0")
        self.max_batch = max_batch
        self.max_wait = max_wait
        self.file_batch = file_batch
        self.file_wait = file_wait
        self._lanes: list[Lane[T]] = []
        self._arrived = asyncio.Event()
        self._pending = 0
        self._rr = 0  # the lane the next batch starts from
        self.held = False  # a serving batcher is not finished while it has no lane: streams may join

    def release(self) -> None:
        """Stop holding: :meth:`next_batch` ends once the lanes there are have closed and drained."""
        self.held = False
        self._arrived.set()

    def add_lane(self, name: str, capacity: int, *, drop_oldest: bool, paced: bool | None = None) -> Lane[T]:
        """``paced`` (default: ``drop_oldest``): its timesteps arrive in real time."""
        lane: Lane[T] = Lane(name, max(1, capacity), drop_oldest, drop_oldest if paced is None else paced)
        self._lanes.append(lane)
        return lane

    def close_lane(self, lane: Lane[T]) -> None:
        """The stream is done; its pending timesteps are still batched. The lane goes once drained."""
        lane.closed = True
        self._arrived.set()

    @property
    def pending(self) -> int:
        return self._pending

    @property
    def finished(self) -> bool:
        """Every lane is closed and drained."""
        return not self.held and self._pending == 0 and all(lane.closed for lane in self._lanes)

    async def put(self, lane: Lane[T], item: T) -> None:
        while len(lane.pending) >= lane.capacity:
            if lane.drop_oldest:
                if lane.counted(lane.pending.popleft()):
                    lane.dropped += 1
                self._pending -= 1
                break
            lane._room.clear()
            await lane._room.wait()
        lane.pending.append(item)
        self._pending += 1
        self._arrived.set()

    async def next_batch(self) -> list[tuple[Lane[T], T]]:
        """The next batch; empty once :attr:`finished`."""
        while self._pending == 0:
            if self.finished:
                return []
            self._arrived.clear()
            await self._arrived.wait()
        paced = any(lane.paced and not lane.closed for lane in self._lanes)
        wait = self.max_wait if paced else max(self.max_wait, self.file_wait)
        if self._pending < self.max_batch and wait > 0:
            loop = asyncio.get_running_loop()
            deadline = loop.time() + wait
            while self._pending < self.max_batch and not self._every_lane_ready():
                left = deadline - loop.time()
                if left <= 0:
                    break
                self._arrived.clear()
                try:
                    async with asyncio.timeout(left):
                        await self._arrived.wait()
                except TimeoutError:
                    break
        return self._take()

    def _every_lane_ready(self) -> bool:
        """Every open lane has what it should bring: a paced one a timestep (streams in phase are all in, waiting
        longer is pure delay), a file one ``file_batch`` or as many as it holds."""
        return all(
            lane.closed or len(lane.pending) >= (1 if lane.paced else min(self.file_batch, lane.capacity))
            for lane in self._lanes
        )

    def _take(self) -> list[tuple[Lane[T], T]]:
        batch: list[tuple[Lane[T], T]] = []
        lanes = self._lanes[self._rr :] + self._lanes[: self._rr]
        self._rr = (self._rr + 1) % max(1, len(self._lanes))
        while len(batch) < self.max_batch and self._pending > 0:
            for lane in lanes:
                if lane.pending and len(batch) < self.max_batch:
                    batch.append((lane, lane.pending.popleft()))
                    self._pending -= 1
                    lane._room.set()
        self._lanes = [lane for lane in self._lanes if not (lane.closed and not lane.pending)]
        return batch
