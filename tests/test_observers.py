"""Observers: one that fails is logged once and the others, and the analysis, go on."""

from __future__ import annotations

import asyncio
import logging

import pytest

from pipelines.outputs.observers import Observer, Observers
from pipelines.stages.events import Scores
from pipelines.stages.stats import Stamps


class Broken(Observer):
    def scored(self, stream_id: str, scores: Scores, stamps: Stamps) -> None:
        raise RuntimeError("broken")

    async def run(self) -> None:
        raise RuntimeError("broken too")


class Counting(Observer):
    def __init__(self) -> None:
        self.n = 0
        self.ran = asyncio.Event()

    def scored(self, stream_id: str, scores: Scores, stamps: Stamps) -> None:
        self.n += 1

    async def run(self) -> None:
        self.ran.set()
        await asyncio.sleep(3600)


async def test_a_failing_observer_is_logged_once_and_the_others_go_on(caplog: pytest.LogCaptureFixture) -> None:
    counting = Counting()
    observers = Observers([Broken(), counting])
    with caplog.at_level(logging.ERROR, logger="streamer"):
        for _ in range(3):
            observers.scored("a", Scores(t=0, hop=0.1, score=0, s_v=0, s_a=0), Stamps(0, 0))
        task = asyncio.create_task(observers.run())
        await asyncio.wait_for(counting.ran.wait(), 5)
        await asyncio.sleep(0.05)
        assert not task.done()  # the broken run() did not end the others
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert counting.n == 3
    assert [r.getMessage() for r in caplog.records] == ["Broken.scored failed (logged once)", "Broken stopped"]
