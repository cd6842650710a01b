"""The cluster's worker: a Ray actor running one serving :class:`pipelines.analyzer.Analyzer` on its shard.

The analyzer runs on an asyncio loop in a thread of the actor's process (its sources in ingest processes, its
model on the worker's device, its own MQTT connection and outbox, its own will on
``{prefix}/cluster/workers/<id>``); the actor's methods hand work to that loop. Every ``checkpoint_s`` seconds
it writes its streams' model state to the cluster's store (:mod:`.store`). Started again by Ray after its
process died, it reads what it held and resumes it from the last checkpoints.
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

log = logging.getLogger("streamer")

T = TypeVar("T")
CALL_TIMEOUT = 60.0


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
        ready = threading.Event()
        self.thread = threading.Thread(target=self._main, args=(ready,), name=f"analyzer-{worker_id}", daemon=True)
        self.thread.start()
        ready.wait()
        held = self.store.assignment(worker_id)
        if held:
            log.info("resuming %d stream(s): %s", len(held), ", ".join(sc.stream_id for sc in held))
            self.assign(held)

    # -- the analyzer's thread ---------------------------------------------------------------------------

    def _main(self, ready: threading.Event) -> None:
        asyncio.set_event_loop(self.loop)
        self.analyzer = Analyzer(self.config, serve=True, presence=f"cluster/workers/{self.id}")
        ready.set()
        self.loop.run_until_complete(self._serve(self.analyzer))

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
        future: Future[T] = asyncio.run_coroutine_threadsafe(coro, self.loop)
        return future.result(timeout)

    # -- called by the driver -----------------------------------------------------------------------------

    def assign(self, streams: Sequence[StreamConfig]) -> list[str]:
        """Hold exactly ``streams`` from now on (kept in the store first, so a restart resumes them); returns
        the ids of the streams it started."""
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
                log.error("stream '%s': cannot start: %s", sid, exc)
                continue
            started.append(sid)
        return started

    def status(self) -> dict[str, Any]:
        analyzer = self.analyzer
        assert analyzer is not None
        summary = self._call(_summary(analyzer), timeout=10)
        return {"id": self.id, "node": self.node, "pid": os.getpid(), **summary}

    def stop(self) -> None:
        """End every stream (open events end, statuses go offline), flush the outbox, leave."""
        analyzer = self.analyzer
        if analyzer is not None:
            self.loop.call_soon_threadsafe(analyzer.stop)
        self.thread.join(30)


async def _summary(analyzer: Analyzer) -> dict[str, Any]:
    return analyzer.summary()
