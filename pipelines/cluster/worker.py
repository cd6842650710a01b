"""The cluster's worker: a Ray actor running one serving :class:`pipelines.analyzer.Analyzer` on its shard.

The analyzer runs on an asyncio loop in a thread of the actor's process (its sources in ingest processes, its
model on the worker's device, its own MQTT connection and outbox, its own will on
``{prefix}/cluster/workers/<id>``); the actor's methods hand work to that loop. Every ``checkpoint_s`` seconds
it writes its streams' model state to the cluster's store (:mod:`.store`). Started again by Ray after its
process died, it reads what it held and resumes it from the last checkpoints.

A worker whose analyzer cannot be built (``device = "cuda"`` on a node without one, a ``--model`` file that only
exists on the driver's machine), does not build within ``START_TIMEOUT``, or whose analyzer stops on an error,
stays up and says why in one line: its :meth:`StreamWorker.status` carries ``error`` (and the error's exit code),
which the driver shows. Its log lines stay on its node (the driver runs Ray with ``log_to_driver`` off).
"""

from __future__ import annotations

import asyncio
import logging
import os
import pickle
import threading
from collections.abc import Coroutine, Sequence
from concurrent.futures import Future
from dataclasses import replace
from typing import Any, TypeVar

from pipelines.analyzer import Analyzer
from pipelines.cluster.store import Store
from pipelines.config import AnalyzerConfig, StreamConfig
from streamer.errors import EXIT_FAILURE, StreamerError

log = logging.getLogger("streamer")

T = TypeVar("T")
CALL_TIMEOUT = 60.0
# Building the analyzer imports torch (measured: 1.6 s here; the build itself takes milliseconds on a CPU), opens
# the device (CUDA's first use: seconds) and loads any checkpoint or plugin weights. Two minutes leaves a loaded
# node ten times that and still says "stuck" (a GPU driver or a file system that does not answer) in the time a
# user would wait for it.
START_TIMEOUT = 120.0


class StreamWorker:
    def __init__(self, worker_id: str, namespace: str, base: bytes, checkpoint_s: float = 5.0) -> None:
        import ray

        logging.basicConfig(level=logging.INFO, format=f"streamer[{worker_id}]: %(message)s")
        self.id = worker_id
        self.node = ray.get_runtime_context().get_node_id()
        self.store = Store(namespace)
        self.checkpoint_s = checkpoint_s
        config: AnalyzerConfig = pickle.loads(base)
        mqtt = config.mqtt
        if mqtt.client_id:
            mqtt = replace(mqtt, client_id=f"{mqtt.client_id}-{worker_id}")
        # one endpoint per site, not per worker: the workers serve no /metrics and no web view
        self.config = replace(config, streams=(), mqtt=mqtt, duration=None, events_out=None, metrics=None, ui=None)
        self.loop = asyncio.new_event_loop()
        self.analyzer: Analyzer | None = None
        self.failure: str | None = None  # why this worker cannot analyze, one line (status() reports it)
        self.failure_code = EXIT_FAILURE
        ready = threading.Event()
        self.thread = threading.Thread(target=self._main, args=(ready,), name=f"analyzer-{worker_id}", daemon=True)
        self.thread.start()
        if not ready.wait(START_TIMEOUT):
            self._fail(f"its analyzer did not start within {START_TIMEOUT:.0f} s")
        if self.failed:
            return
        held = self.store.assignment(worker_id)
        if held:
            log.info("resuming %d stream(s): %s", len(held), ", ".join(sc.stream_id for sc in held))
            self.assign(held)

    # -- the analyzer's thread ---------------------------------------------------------------------------

    def _main(self, ready: threading.Event) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self.analyzer = analyzer = Analyzer(self.config, serve=True, presence=f"cluster/workers/{self.id}")
        except Exception as exc:
            self._fail(f"cannot start its analyzer: {one_line(exc)}", exc)
            return
        finally:
            ready.set()  # after the analyzer or its failure is recorded: the constructor reads them
        if self.failed:  # built after START_TIMEOUT: the driver has been told it failed
            analyzer.runner.close()
            return
        try:
            self.loop.run_until_complete(self._serve(analyzer))
        except Exception as exc:
            self._fail(f"its analyzer stopped: {one_line(exc)}", exc)

    @property
    def failed(self) -> bool:
        return self.failure is not None

    def _fail(self, reason: str, exc: BaseException | None = None) -> None:
        if self.failure is None:
            self.failure = reason
            self.failure_code = getattr(exc, "exit_code", EXIT_FAILURE)
        log.error("%s", reason, exc_info=exc)  # the worker's own log (on its node) keeps the traceback

    async def _serve(self, analyzer: Analyzer) -> None:
        checkpoints = asyncio.get_running_loop().create_task(self._checkpoints(analyzer), name="checkpoints")
        try:
            await analyzer.run()
        finally:
            checkpoints.cancel()

    async def _checkpoints(self, analyzer: Analyzer) -> None:
        while True:
            await asyncio.sleep(self.checkpoint_s)
            try:
                states = await analyzer.export_states()
                await asyncio.to_thread(self.store.set_states, states)
            except Exception as exc:  # a missed checkpoint only means an older one is used
                log.warning("checkpoint failed: %s", exc)

    def _call(self, coro: Coroutine[Any, Any, T], timeout: float = CALL_TIMEOUT) -> T:
        if self.failure is not None:  # no loop runs the analyzer: the call would wait out its timeout
            coro.close()
            raise RuntimeError(f"worker {self.id}: {self.failure}")
        future: Future[T] = asyncio.run_coroutine_threadsafe(coro, self.loop)
        return future.result(timeout)

    # -- called by the driver -----------------------------------------------------------------------------

    def assign(self, streams: Sequence[StreamConfig]) -> list[str]:
        """Hold exactly ``streams`` from now on (kept in the store first, so a restart resumes them); returns
        the ids of the streams it started."""
        if self.failure is not None:
            raise RuntimeError(f"worker {self.id}: {self.failure}")
        self.store.set_assignment(self.id, streams)
        return self._call(self._assign(list(streams)))

    async def _assign(self, streams: list[StreamConfig]) -> list[str]:
        analyzer = self.analyzer
        assert analyzer is not None
        wanted = {sc.stream_id: sc for sc in streams}
        for sid, rt in list(analyzer.streams.items()):
            if wanted.get(sid) != rt.config:
                analyzer.remove_stream(sid)
        async with asyncio.timeout(30):  # a changed stream leaves before it comes back with its new settings
            while any(sid in analyzer.streams and analyzer.streams[sid].removed for sid in wanted):  # noqa: ASYNC110
                await asyncio.sleep(0.05)
        started = []
        for sid, sc in wanted.items():
            if sid in analyzer.streams:
                continue
            state = await asyncio.to_thread(self.store.state, sid)
            try:
                await analyzer.add_stream(sc, state)
            except Exception as exc:  # one stream that cannot start never stops the others
                said = str(exc)
                log.error("%s", said if f"'{sid}'" in said else f"stream '{sid}': cannot start: {said}")
                continue
            started.append(sid)
        return started

    def status(self) -> dict[str, Any]:
        """Its streams and load; for a worker that cannot analyze, ``error`` (one line) and ``exit_code``."""
        me = {"id": self.id, "node": self.node, "pid": os.getpid()}
        if self.failure is not None:
            return {**me, "error": self.failure, "exit_code": self.failure_code, "streams": {}}
        analyzer = self.analyzer
        assert analyzer is not None
        return {**me, **self._call(_summary(analyzer), timeout=10)}

    def stop(self) -> None:
        """End every stream (open events end, statuses go offline), flush the outbox, leave."""
        analyzer = self.analyzer
        if analyzer is not None and self.failure is None:
            self.loop.call_soon_threadsafe(analyzer.stop)
            self.thread.join(30)


async def _summary(analyzer: Analyzer) -> dict[str, Any]:
    return analyzer.summary()


def one_line(exc: BaseException) -> str:
    """An error as one line: our own errors say it all; another names its type. A task group's error is its
    first stage's."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    text = str(exc) if isinstance(exc, StreamerError) and str(exc) else f"{type(exc).__name__}: {exc}"
    return " ".join(text.split())
