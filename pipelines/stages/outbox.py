"""What waits to be published: a bounded, prioritized outbox that survives broker outages and bad messages.

* Events (QoS 1) wait in order, at most ``capacity`` of them; past that the *oldest* is dropped and counted in
  :attr:`Outbox.overflow` (reported in stats and logged), so a long outage costs the oldest events, never the
  newest, and never unbounded memory.
* Retained state keeps only the latest message per topic: after an outage the broker gets the current state, not
  its history. Statuses (kind ``status``) and other state (snapshots, stats: kind ``state``) wait apart.
* Scores (QoS 0, with ``--scores``) are transient: while the broker is away they are dropped (counted), and
  at most ``capacity`` wait while it is there.

What goes next is chosen by priority: events, then statuses, then other state, then scores, so after an outage
an event's end does not wait behind a JPEG. :meth:`Outbox.take` hands out messages to send, several at a time
(the publisher's window); a message leaves the outbox only once the broker acknowledged it
(:meth:`Outbox.done`). When the connection is lost, :meth:`Outbox.lost` puts what was in flight back first in
its class: it is sent again (at least once, in order; subscribers de-duplicate events by ``id``), one message
at a time until each was acknowledged, so that a message the broker will not take (one it disconnects on) is
found. A message in flight alone when the connection was lost ``max_attempts`` times is given up: dropped and
counted in :attr:`Outbox.rejected`, so it cannot hold back everything behind it.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict, deque
from dataclasses import dataclass
from typing import Literal

Kind = Literal["event", "status", "state", "score"]


@dataclass(frozen=True, slots=True)
class Message:
    topic: str
    payload: bytes
    qos: int
    retain: bool
    kind: Kind
    created: float = 0.0  # wall time it was queued


@dataclass(frozen=True, slots=True)
class OutboxCounts:
    """The outbox's counters at one moment, as the outputs read them (a copy: an output cannot take, drop or
    requeue a message)."""

    messages: int  # waiting or in flight
    pending_events: int  # events not acknowledged yet
    overflow: int  # events dropped: the outbox was full
    scores_dropped: int  # score messages dropped: no broker
    rejected: int  # messages given up after repeated failures


class Outbox:
    def __init__(self, capacity: int, max_attempts: int = 3) -> None:
        if capacity < 1:
            raise ValueError("outbox capacity must be >= 1")
        if max_attempts < 1:
            raise ValueError("max_attempts must be >= 1")
        self.capacity = capacity
        self.max_attempts = max_attempts
        # what waits to be sent, by priority
        self._events: deque[Message] = deque()
        self._statuses: OrderedDict[str, Message] = OrderedDict()
        self._state: OrderedDict[str, Message] = OrderedDict()
        self._scores: deque[Message] = deque()
        # sent, not acknowledged yet, in send order; keyed by id() (the dicts hold the message, so ids stay unique)
        self._in_flight: dict[int, Message] = {}
        self._suspects: dict[int, Message] = {}  # in flight when a connection was lost: sent alone next time
        self._failures: dict[int, int] = {}  # connections lost while it was in flight alone
        self._taken: dict[int, int] = {}  # the order messages were first handed out: a requeue keeps it
        self._takes = 0
        self._changed = asyncio.Event()
        self._emptied = asyncio.Event()
        self.connected = False
        self.overflow = 0  # events dropped because the outbox was full
        self.scores_dropped = 0
        self.rejected = 0  # messages given up after max_attempts lost connections
        self.sent = 0
        self.event_delivery_ms: deque[float] = deque(maxlen=4096)  # queued -> acknowledged, per event message

    # -- queueing -----------------------------------------------------------------------------------------

    def put(self, message: Message) -> None:
        if message.kind == "event":
            in_flight = sum(m.kind == "event" for m in self._in_flight.values())
            while self._events and len(self._events) + in_flight >= self.capacity:
                self._forget(self._events.popleft())
                self.overflow += 1
            self._events.append(message)
        elif message.kind in ("status", "state"):
            table = self._statuses if message.kind == "status" else self._state
            old = table.pop(message.topic, None)
            if old is not None:
                self._forget(old)
            table[message.topic] = message
        else:
            if not self.connected or len(self._scores) >= self.capacity:
                self.scores_dropped += 1
                return
            self._scores.append(message)
        self._changed.set()

    def __len__(self) -> int:
        return len(self._events) + len(self._statuses) + len(self._state) + len(self._scores) + len(self._in_flight)

    @property
    def pending_events(self) -> int:
        """Events not acknowledged yet (waiting or in flight)."""
        return len(self._events) + sum(m.kind == "event" for m in self._in_flight.values())

    @property
    def in_flight(self) -> int:
        return len(self._in_flight)

    @property
    def retrying(self) -> bool:
        """Messages that were in flight when a connection was lost are being sent again, one at a time."""
        return bool(self._suspects)

    # -- sending ------------------------------------------------------------------------------------------

    def peek(self) -> Message | None:
        """The next message to send: events in order, then statuses, other state, scores."""
        if self._events:
            return self._events[0]
        for table in (self._statuses, self._state):
            if table:
                return next(iter(table.values()))
        if self._scores:
            return self._scores[0]
        return None

    async def take(self, window: int) -> Message:
        """Wait for a message to send while fewer than ``window`` are in flight (1 while suspects are retried),
        and mark it in flight: it stays in the outbox until :meth:`done` or :meth:`lost`."""
        while True:
            limit = 1 if self._suspects else window
            if len(self._in_flight) < limit and (message := self.peek()) is not None:
                self._unqueue(message)
                self._in_flight[id(message)] = message
                if id(message) not in self._taken:
                    self._taken[id(message)] = self._takes
                    self._takes += 1
                return message
            self._changed.clear()
            await self._changed.wait()

    def done(self, message: Message) -> None:
        """``message`` (from :meth:`take`, or the one :meth:`peek` gave) reached the broker."""
        if self._in_flight.pop(id(message), None) is None and not self._unqueue(message):
            return
        self.sent += 1
        if message.kind == "event":
            self.event_delivery_ms.append(1000 * (time.time() - message.created))
        self._forget(message)
        self._after_removal()

    def release(self, message: Message) -> None:
        """``message`` (from :meth:`take`) was not sent after all: it waits first again, no attempt counted."""
        if self._in_flight.pop(id(message), None) is not None:
            self._requeue(message)
            self._after_removal()

    def reject(self, message: Message) -> None:
        """Give ``message`` up (in flight or waiting): dropped and counted in :attr:`rejected`."""
        if self._in_flight.pop(id(message), None) is None and not self._unqueue(message):
            return
        self.rejected += 1
        self._forget(message)
        self._after_removal()

    def lost(self, *, blame: bool = True) -> list[Message]:
        """The connection was lost: what was in flight waits again, first in its class, and becomes a suspect
        (sent alone until acknowledged). With ``blame``, a message that was in flight alone gets an attempt
        counted; one that reaches ``max_attempts`` is given up (counted in :attr:`rejected`) and returned.
        Without (the publisher was cancelled), what was in flight just waits again."""
        in_flight = list(self._in_flight.values())
        self._in_flight.clear()
        rejected: list[Message] = []
        if blame and len(in_flight) == 1:
            (message,) = in_flight
            failures = self._failures[id(message)] = self._failures.get(id(message), 0) + 1
            if failures >= self.max_attempts:
                in_flight.clear()
                rejected.append(message)
                self.rejected += 1
                self._forget(message)
        for message in reversed(in_flight):
            if self._requeue(message) and blame:
                self._suspects[id(message)] = message
        while len(self._events) > self.capacity:
            self._forget(self._events.popleft())
            self.overflow += 1
        self._after_removal()
        return rejected

    async def empty(self) -> None:
        """Wait until everything queued has been sent (or given up)."""
        while len(self):
            self._emptied.clear()
            await self._emptied.wait()

    def drop_scores(self) -> None:
        for message in self._scores:
            self._forget(message)
        self.scores_dropped += len(self._scores)
        self._scores.clear()
        self._after_removal()

    def counts(self) -> OutboxCounts:
        return OutboxCounts(len(self), self.pending_events, self.overflow, self.scores_dropped, self.rejected)

    def counters(self) -> dict[str, int]:
        return {
            "pending": len(self),
            "pending_events": self.pending_events,
            "overflow": self.overflow,
            "scores_dropped": self.scores_dropped,
            "rejected": self.rejected,
            "sent": self.sent,
            "capacity": self.capacity,
        }

    # -- internals ----------------------------------------------------------------------------------------

    def _unqueue(self, message: Message) -> bool:
        """Remove ``message`` from the waiting queues (it is the first of its class, or the latest state of its
        topic); False when it does not wait there."""
        if message.kind == "event":
            if self._events and self._events[0] is message:
                self._events.popleft()
                return True
        elif message.kind in ("status", "state"):
            table = self._statuses if message.kind == "status" else self._state
            if table.get(message.topic) is message:
                del table[message.topic]
                return True
        elif self._scores and self._scores[0] is message:
            self._scores.popleft()
            return True
        return False

    def _requeue(self, message: Message) -> bool:
        """Put ``message`` back first in its class; False when it is not needed any more (newer state for its
        topic waits, or a score while the broker is away)."""
        if message.kind == "event":
            self._insert(self._events, message)
        elif message.kind in ("status", "state"):
            table = self._statuses if message.kind == "status" else self._state
            if message.topic in table:
                self._forget(message)
                return False
            table[message.topic] = message
            table.move_to_end(message.topic, last=False)
        elif self.connected:
            self._insert(self._scores, message)
        else:
            self.scores_dropped += 1
            self._forget(message)
            return False
        return True

    def _insert(self, queue: deque[Message], message: Message) -> None:
        """Put ``message`` back before what was never sent, after what was handed out before it (messages come
        back one by one, from :meth:`release` or :meth:`lost`, in any order: the wire order is kept)."""
        order = self._taken[id(message)]
        index = 0
        for waiting in queue:
            taken = self._taken.get(id(waiting))
            if taken is None or taken > order:
                break
            index += 1
        queue.insert(index, message)

    def _forget(self, message: Message) -> None:
        self._suspects.pop(id(message), None)
        self._failures.pop(id(message), None)
        self._taken.pop(id(message), None)

    def _after_removal(self) -> None:
        self._changed.set()
        if not len(self):
            self._emptied.set()
