"""What waits to be published: a bounded, ordered outbox that survives broker outages.

* Events (QoS 1) wait in order, at most ``capacity`` of them; past that the *oldest* is dropped and counted in
  :attr:`Outbox.overflow` (reported in stats and logged), so a long outage costs the oldest events, never the
  newest, and never unbounded memory.
* Retained state (statuses, snapshots, stats) keeps only the latest message per topic: after an outage the
  broker gets the current state, not its history.
* Scores (QoS 0, with ``--scores``) are transient: while the broker is away they are dropped (counted), and
  at most ``capacity`` wait while it is there.

A message leaves the outbox only once the broker acknowledged it (:meth:`Outbox.done`), so a connection lost
mid-publish resends it after reconnecting: delivery is at least once, in order; subscribers de-duplicate
events by ``id``.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict, deque
from dataclasses import dataclass
from typing import Literal

Kind = Literal["event", "state", "score"]


@dataclass(frozen=True, slots=True)
class Message:
    topic: str
    payload: bytes
    qos: int
    retain: bool
    kind: Kind
    created: float = 0.0  # wall time it was queued


class Outbox:
    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError("outbox capacity must be >= 1")
        self.capacity = capacity
        self._events: deque[Message] = deque()
        self._state: OrderedDict[str, Message] = OrderedDict()
        self._scores: deque[Message] = deque()
        self._ready = asyncio.Event()
        self._emptied = asyncio.Event()
        self.connected = False
        self.overflow = 0  # events dropped because the outbox was full
        self.scores_dropped = 0
        self.sent = 0
        self.event_delivery_ms: deque[float] = deque(maxlen=4096)  # queued -> acknowledged, per event message

    def put(self, message: Message) -> None:
        if message.kind == "event":
            if len(self._events) >= self.capacity:
                self._events.popleft()
                self.overflow += 1
            self._events.append(message)
        elif message.kind == "state":
            self._state.pop(message.topic, None)
            self._state[message.topic] = message
        else:
            if not self.connected or len(self._scores) >= self.capacity:
                self.scores_dropped += 1
                return
            self._scores.append(message)
        self._ready.set()

    def __len__(self) -> int:
        return len(self._events) + len(self._state) + len(self._scores)

    @property
    def pending_events(self) -> int:
        return len(self._events)

    def peek(self) -> Message | None:
        """The next message to send: retained state first, then events in order, then scores."""
        if self._state:
            return next(iter(self._state.values()))
        if self._events:
            return self._events[0]
        if self._scores:
            return self._scores[0]
        return None

    def done(self, message: Message) -> None:
        """``message`` (the one :meth:`peek` gave) reached the broker."""
        self.sent += 1
        if message.kind == "state":
            if self._state.get(message.topic) is message:
                del self._state[message.topic]
        elif message.kind == "event":
            if self._events and self._events[0] is message:
                self._events.popleft()
                self.event_delivery_ms.append(1000 * (time.time() - message.created))
        elif self._scores and self._scores[0] is message:
            self._scores.popleft()
        if not len(self):
            self._emptied.set()

    async def empty(self) -> None:
        """Wait until everything queued has been sent."""
        while len(self):
            self._emptied.clear()
            await self._emptied.wait()

    def drop_scores(self) -> None:
        self.scores_dropped += len(self._scores)
        self._scores.clear()
        if not len(self):
            self._emptied.set()

    async def wait(self) -> Message:
        while (message := self.peek()) is None:
            self._ready.clear()
            await self._ready.wait()
        return message

    def counters(self) -> dict[str, int]:
        return {
            "pending": len(self),
            "pending_events": len(self._events),
            "overflow": self.overflow,
            "scores_dropped": self.scores_dropped,
            "sent": self.sent,
            "capacity": self.capacity,
        }
