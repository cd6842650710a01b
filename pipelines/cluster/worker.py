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
from collections.abc import Callable, Coroutine, Sequence
from concurrent.futures import Future
from dataclasses import replace
from typing import Any, TypeVar

from pipelines.analyzer import Analyzer
from pipelines.cluster.options import UNUSED_BY_WORKERS, ClusterOptions
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


class AnalyzerThread:
    """An analyzer built and then served on a thread of its own, with its own asyncio loop; ``failure`` says in one
    line why it cannot analyze, when that is so.

    Whether it started is decided in one place, :meth:`_settle`, under a lock, by whichever comes first: the end
    of its build (the analyzer, or why it could not be built) or the end of :meth:`start`'s wait. The other finds
    it decided: an analyzer built after the wait gave up is closed unserved (the driver has been told this worker
    failed); a wait that gives up as the build ends leaves the analyzer serving.
    """

    def __init__(
        self, name: str, build: Callable[[], Analyzer], serve: Callable[[Analyzer], Coroutine[Any, Any, Any]]
    ) -> None:
        self.loop = asyncio.new_event_loop()
        self.analyzer: Analyzer | None = None  # once it started
        self.failure: str | None = None  # why it cannot analyze, one line
        self.failure_code = EXIT_FAILURE
        self._build, self._serve = build, serve
        self._lock = threading.Lock()
        self._built = threading.Event()  # the build ended and its outcome is settled
        self.thread = threading.Thread(target=self._main, name=name, daemon=True)

    def start(self, timeout: float) -> bool:
        """Build the analyzer and serve it: True once it serves; False (``failure`` says why) when it cannot be
        built or is not built within ``timeout`` seconds."""
        self.thread.start()
        if not self._built.wait(timeout):
            self._settle(None, f"its analyzer did not start within {timeout:.0f} s")
        return self.analyzer is not None and self.failure is None

    def _main(self) -> None:
        asyncio.set_event_loop(self.loop)
        built: Analyzer | None = None
        try:
            built = self._build()
        except Exception as exc:
            self._settle(None, f"cannot start its analyzer: {one_line(exc)}", exc)
        kept = built is not None and self._settle(built)
        self._built.set()
        if built is None:
            return
        if not kept:  # built after the wait gave up
            built.runner.close()
            return
        try:
            self.loop.run_until_complete(self._serve(built))
        except Exception as exc:
            self.fail(f"its analyzer stopped: {one_line(exc)}", exc)

    def _settle(self, analyzer: Analyzer | None, reason: str = "", exc: BaseException | None = None) -> bool:
        """Whether it started: ``analyzer`` (built) or ``reason`` (not), unless that is decided already; True
        when this call decided it."""
        with self._lock:
            first = self.analyzer is None and self.failure is None
            if first and analyzer is not None:
                self.analyzer = analyzer
            elif first:
                self.failure, self.failure_code = reason, getattr(exc, "exit_code", EXIT_FAILURE)
        if analyzer is None and (first or exc is not None):
            log.error("%s", reason, exc_info=exc)  # the worker's own log (on its node) keeps the traceback
        return first

    def fail(self, reason: str, exc: BaseException | None = None) -> None:
        """It can no longer analyze (the first reason stays)."""
        with self._lock:
            if self.failure is None:
                self.failure, self.failure_code = reason, getattr(exc, "exit_code", EXIT_FAILURE)
        log.error("%s", reason, exc_info=exc)

    def stop(self, timeout: float) -> None:
        """Stop its analyzer (its streams end, its outbox flushes) and wait up to ``timeout`` s for the thread."""
        if self.analyzer is not None:
            self.loop.call_soon_threadsafe(self.analyzer.stop)
        self.thread.join(timeout)


class StreamWorker:
    def __init__(self, worker_id: str, namespace: str, base: bytes, options: ClusterOptions) -> None:
        import ray

        logging.basicConfig(level=logging.INFO, format=f"streamer[{worker_id}]: %(message)s")
        self.id = worker_id
        self.node = ray.get_runtime_context().get_node_id()
        self.store = Store(namespace)
        self.options = options
        config: AnalyzerConfig = pickle.loads(base)
        mqtt = config.mqtt
        if mqtt.client_id:
            mqtt = replace(mqtt, client_id=f"{mqtt.client_id}-{worker_id}")
        # one endpoint per site, not per worker: the workers serve no /metrics and no web view
        unused: dict[str, Any] = dict.fromkeys(UNUSED_BY_WORKERS)  # each of them None
        self.config = replace(config, streams=(), mqtt=mqtt, **unused)

        def build() -> Analyzer:
            return Analyzer(self.config, serve=True, presence=f"cluster/workers/{worker_id}")

        self.serving = AnalyzerThread(f"analyzer-{worker_id}", build, self._serve)
        if not self.serving.start(START_TIMEOUT):
            return
        held = self.store.assignment(worker_id)
        if held:
            log.info("resuming %d stream(s): %s", len(held), ", ".join(sc.stream_id for sc in held))
            self.assign(held)

    @property
    def failure(self) -> str | None:
        """Why this worker cannot analyze, one line (:meth:`status` reports it)."""
        return self.serving.failure

    async def _serve(self, analyzer: Analyzer) -> None:
        checkpoints = asyncio.get_running_loop().create_task(self._checkpoints(analyzer), name="checkpoints")
        try:
            await analyzer.run()
        finally:
            checkpoints.cancel()

    async def _checkpoints(self, analyzer: Analyzer) -> None:
        while True:
            await asyncio.sleep(self.options.checkpoint_s)
            try:
                states = await analyzer.export_states()
                await asyncio.to_thread(self.store.set_states, states)
            except Exception as exc:  # a missed checkpoint only means an older one is used
                log.warning("checkpoint failed: %s", exc)

    def _call(self, coro: Coroutine[Any, Any, T], timeout: float = CALL_TIMEOUT) -> T:
        if self.failure is not None:  # no loop runs the analyzer: the call would wait out its timeout
            coro.close()
            raise RuntimeError(f"worker {self.id}: {self.failure}")
        future: Future[T] = asyncio.run_coroutine_threadsafe(coro, self.serving.loop)
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
        analyzer = self.serving.analyzer
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
            return {**me, "error": self.failure, "exit_code": self.serving.failure_code, "streams": {}}
        analyzer = self.serving.analyzer
        assert analyzer is not None
        return {**me, **self._call(_summary(analyzer), timeout=10)}

    def stop(self) -> None:
        """End every stream (open events end, statuses go offline), flush the outbox, leave."""
        if self.failure is None:
            self.serving.stop(30)


async def _summary(analyzer: Analyzer) -> dict[str, Any]:
    return analyzer.summary()


def one_line(exc: BaseException) -> str:
    """An error as one line: our own errors say it all; another names its type. A task group's error is its
    first stage's."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    text = str(exc) if isinstance(exc, StreamerError) and str(exc) else f"{type(exc).__name__}: {exc}"
    return " ".join(text.split())
