"""A cluster worker's start-up (:class:`pipelines.cluster.worker.AnalyzerThread`), without Ray: whether its
analyzer started is decided once, by whichever ends first, the build or the wait for it.

The build is held on an event, so each order is made to happen, not waited for: the wait gives up first and the
analyzer is built later (it must be closed unserved: the driver was told the worker failed), and the build ends
just as the wait gives up (it must serve, and the worker must not say it failed). Before, the wait's timeout and
the build thread's look at it were two separate steps: in the second order the worker reported a failure while
its analyzer served.
"""

from __future__ import annotations

import threading
import time
from dataclasses import replace
from typing import Any

import pytest

from pipelines.analyzer import Analyzer
from pipelines.cluster.worker import AnalyzerThread
from pipelines.config import AnalyzerConfig, build_config


@pytest.fixture(scope="module")
def config() -> AnalyzerConfig:
    """An analyzer with no streams yet, no broker, on the CPU, capturing in threads: what a worker builds."""
    config = build_config(None, sources=["synthetic:"], mqtt_flags={"url": "none"}, device="cpu")
    return replace(config, streams=(), ingest="thread")


class Held:
    """A worker's build that waits for :attr:`release`, and a serve that records what it served."""

    def __init__(self, config: AnalyzerConfig) -> None:
        self.config = config
        self.release = threading.Event()
        self.served: list[Analyzer] = []
        self.built: list[Analyzer] = []

    def build(self) -> Analyzer:
        assert self.release.wait(60), "never released"
        analyzer = Analyzer(self.config, serve=True, presence="cluster/workers/w-test-0")
        self.built.append(analyzer)
        return analyzer

    async def serve(self, analyzer: Analyzer) -> None:
        self.served.append(analyzer)
        await analyzer.run()


def went_on(thread: AnalyzerThread, held: Held) -> None:
    """Until the build's thread has settled its analyzer: serving it, or gone."""
    deadline = time.monotonic() + 60
    while not held.served and thread.thread.is_alive():
        assert time.monotonic() < deadline, "the build's thread neither serves nor ends"
        time.sleep(0.01)


def stop(thread: AnalyzerThread) -> None:
    thread.stop(60)
    assert not thread.thread.is_alive()


def test_an_analyzer_built_after_the_wait_gave_up_is_closed_unserved(config: AnalyzerConfig) -> None:
    held = Held(config)
    worker = AnalyzerThread("analyzer-test", held.build, held.serve)
    assert not worker.start(timeout=0.01)  # the build is held: the wait gives up first
    assert worker.failure == "its analyzer did not start within 0 s"
    held.release.set()
    worker.thread.join(60)
    assert not worker.thread.is_alive() and len(held.built) == 1
    assert held.served == [] and worker.analyzer is None  # what the driver was told stays true
    assert worker.failure == "its analyzer did not start within 0 s"


def test_a_build_that_ends_as_the_wait_gives_up_serves_and_the_worker_says_so(config: AnalyzerConfig) -> None:
    held = Held(config)
    worker = AnalyzerThread("analyzer-test", held.build, held.serve)

    class GivesUpAsTheBuildEnds(threading.Event):
        """The wait's timeout at the boundary: the build ends and its thread goes on, then the wait gives up."""

        def wait(self, timeout: Any = None) -> bool:
            held.release.set()
            went_on(worker, held)
            return False

    worker._built = GivesUpAsTheBuildEnds()
    try:
        started = worker.start(timeout=0.01)
        assert held.served == held.built and len(held.built) == 1  # it serves...
        assert started and worker.failure is None, worker.failure  # ...and the worker does not say it failed
        assert worker.analyzer is held.served[0]
    finally:
        stop(worker)
