"""The cluster's driver (``streamer cluster run``): places streams on workers and keeps them placed.

Every ``interval`` seconds it reads the Ray cluster's nodes and its workers' status, and:

* starts the workers a node should have (``workers_per_node``, named ``w-<node>-<i>``, detached, pinned to
  their node, restarted by Ray when their process dies: they outlive the driver);
* gives each worker its streams (:func:`.placement.place`: balanced, sticky); the streams of a worker whose node
  is lost go to the other workers (logged, and published on ``{prefix}/cluster/moves``), starting from their
  last checkpoint;
* follows the config file: a stream added or removed there is placed or stopped, the others are left alone;
* publishes the layout, retained, on ``{prefix}/cluster``.

A driver that goes away leaves the workers analyzing and publishing; a new one re-attaches (it finds the workers
by name and what they hold). Stopping the driver (Ctrl-C, SIGTERM) stops the workers unless it was detached.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import pickle
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from pipelines.cluster.placement import WorkerSlot, place, stream_cost
from pipelines.config import AnalyzerConfig, StreamConfig
from pipelines.stages.mqtt import Publisher
from pipelines.stages.outbox import Message, Outbox
from pipelines.stages.topics import Topics
from streamer.errors import ConfigError

log = logging.getLogger("streamer")

GPU_WEIGHT = 4.0  # a worker with a GPU takes this many times the streams of one without
STATUS_TIMEOUT = 10.0
ATTACH_TICKS = 15  # ticks a re-attaching driver waits for restarting workers before placing their streams


def namespace_for(prefix: str) -> str:
    """The Ray namespace of a site: one per MQTT prefix, so two sites can share a Ray cluster."""
    return "streamer-" + prefix.replace("/", "-")


@dataclass
class WorkerRef:
    id: str
    node: str
    handle: Any
    capacity: float
    status: dict[str, Any] | None = None
    state: str = "starting"  # starting, alive, unreachable (restarting)
    sent: tuple[StreamConfig, ...] | None = None  # what it was last told to hold


@dataclass
class ClusterDriver:
    config: AnalyzerConfig
    namespace: str
    workers_per_node: int = 1
    worker_cpus: float = 1.0
    interval: float = 1.0
    checkpoint_s: float = 5.0
    watch: Path | None = None  # the config file, re-read when it changes
    reload: Callable[[], AnalyzerConfig] | None = None
    detach: bool = False  # exit once the streams are placed, leaving the workers running
    workers: dict[str, WorkerRef] = field(default_factory=dict)
    placement: dict[str, str] = field(default_factory=dict)  # stream -> worker
    moves: list[dict[str, Any]] = field(default_factory=list)
    _ticks: int = 0
    _stop: asyncio.Event = field(default_factory=asyncio.Event)

    def stop(self) -> None:
        self._stop.set()

    async def run(self) -> int:
        topics = Topics(self.config.mqtt.prefix, "cluster/driver")
        outbox = Outbox(self.config.mqtt.outbox_size)
        mqtt = self.config.mqtt
        if mqtt.client_id:
            mqtt = replace(mqtt, client_id=f"{mqtt.client_id}-driver")
        publisher = Publisher(mqtt, topics, outbox) if mqtt.url else None
        self._topics, self._outbox = topics, outbox
        self._base = pickle.dumps(replace(self.config, streams=()))
        mtime = self._mtime()
        mqtt_task = asyncio.get_running_loop().create_task(publisher.run(), name="mqtt") if publisher else None
        try:
            while not self._stop.is_set():
                now = self._mtime()
                if now != mtime:
                    mtime = now
                    self._reload()
                await self._tick()
                if self.detach and self._settled():
                    log.info("streams placed; the workers go on without this driver")
                    break
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), self.interval)
            if self._stop.is_set() and not self.detach:
                await stop_workers(list(self.workers.values()))
                self._queue(topics.cluster, b"", retain=True)
                self._queue(topics.status, b"offline", retain=True)
        finally:
            if publisher is not None and mqtt_task is not None:
                await publisher.close(mqtt_task)
        return 0

    def _mtime(self) -> float | None:
        try:
            return self.watch.stat().st_mtime if self.watch is not None else None
        except OSError:
            return None

    def _reload(self) -> None:
        if self.reload is None:
            return
        try:
            config = self.reload()
        except ConfigError as exc:
            log.error("config not reloaded: %s", exc)
            return
        added = {sc.stream_id for sc in config.streams} - {sc.stream_id for sc in self.config.streams}
        removed = {sc.stream_id for sc in self.config.streams} - {sc.stream_id for sc in config.streams}
        log.warning("config reloaded: %d stream(s) added, %d removed", len(added), len(removed))
        self.config = replace(self.config, streams=config.streams)

    def _settled(self) -> bool:
        wanted = {sc.stream_id for sc in self.config.streams}
        return set(self.placement) == wanted and all(
            w.sent is not None and w.state == "alive" for w in self.workers.values()
        )

    # -- one round of supervision -------------------------------------------------------------------------

    async def _tick(self) -> None:
        import ray

        self._ticks += 1
        nodes = {n["NodeID"]: n for n in await asyncio.to_thread(ray.nodes) if n.get("Alive")}
        for node_id, node in nodes.items():
            gpus = float(node.get("Resources", {}).get("GPU", 0))
            for i in range(self.workers_per_node):
                name = f"w-{node_id[:8]}-{i}"
                if name not in self.workers:
                    capacity = self.worker_cpus * (GPU_WEIGHT if gpus else 1.0)
                    self.workers[name] = WorkerRef(name, node_id, self._start_worker(name, node_id, gpus), capacity)
        lost = [w for w in self.workers.values() if w.node not in nodes]
        for w in lost:
            del self.workers[w.id]
            log.warning("worker %s: its node %s is gone", w.id, w.node[:8])
            with contextlib.suppress(Exception):
                ray.kill(w.handle, no_restart=True)
        await asyncio.gather(*(self._poll(w) for w in self.workers.values()))
        for w in self.workers.values():  # a re-attached driver: what each worker already holds is its placement
            if w.sent is None and w.status is not None:
                held = set(w.status["streams"])
                w.sent = tuple(sc for sc in self.config.streams if sc.stream_id in held)
                for sid in held:
                    self.placement.setdefault(sid, w.id)
        if any(w.state != "alive" for w in self.workers.values()) and self._ticks <= ATTACH_TICKS and not lost:
            self._publish()
            return  # workers are starting (or restarting after a lost driver): what they hold is not known yet
        await self._place({w.id for w in lost})
        self._publish()

    def _start_worker(self, name: str, node_id: str, gpus: float) -> Any:
        import ray
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        from pipelines.cluster.worker import StreamWorker

        actor = ray.remote(StreamWorker)
        return actor.options(
            name=name, namespace=self.namespace, lifetime="detached", get_if_exists=True, max_restarts=-1,
            num_cpus=self.worker_cpus, num_gpus=1 if gpus else 0,
            scheduling_strategy=NodeAffinitySchedulingStrategy(node_id, soft=False),
        ).remote(name, self.namespace, self._base, self.checkpoint_s)  # fmt: skip

    async def _poll(self, w: WorkerRef) -> None:
        try:
            async with asyncio.timeout(STATUS_TIMEOUT):
                w.status = await w.handle.status.remote()
            w.state = "alive"
        except Exception as exc:  # restarting (Ray starts it again), or not up yet
            if w.state == "alive":
                log.warning("worker %s: not answering (%s)", w.id, type(exc).__name__)
            w.state = "unreachable" if w.state != "starting" else "starting"
            w.status = None

    async def _place(self, lost: set[str]) -> None:
        costs = {
            sid: stream_cost(info.get("video"))
            for w in self.workers.values() if w.status is not None
            for sid, info in w.status["streams"].items()
        }  # fmt: skip
        slots = [WorkerSlot(w.id, w.capacity) for w in self.workers.values()]
        streams = {sc.stream_id: sc for sc in self.config.streams}
        placement = place(list(streams), slots, self.placement, costs)
        for sid, worker in placement.items():
            before = self.placement.get(sid)
            if before is not None and before != worker:
                reason = "node lost" if before in lost else "rebalanced"
                log.warning("stream '%s': moved from worker %s to %s (%s)", sid, before, worker, reason)
                move = {
                    "stream": sid,
                    "from": before,
                    "to": worker,
                    "reason": reason,
                    "wall_time": round(time.time(), 3),
                }
                self.moves.append(move)
                self._queue(self._topics.cluster_moves, json.dumps(move).encode(), retain=False, qos=1)
        self.placement = placement
        calls = []
        for w in self.workers.values():
            wanted = tuple(streams[sid] for sid in sorted(streams) if placement.get(sid) == w.id)
            if wanted != w.sent and w.state == "alive":
                calls.append(self._assign(w, wanted))
        await asyncio.gather(*calls)

    async def _assign(self, w: WorkerRef, wanted: tuple[StreamConfig, ...]) -> None:
        try:
            async with asyncio.timeout(120):
                await w.handle.assign.remote(list(wanted))
            w.sent = wanted
        except Exception as exc:
            log.warning("worker %s: could not take its streams (%s); trying again", w.id, exc)

    # -- publishing --------------------------------------------------------------------------------------

    def layout(self) -> dict[str, Any]:
        workers = []
        for w in sorted(self.workers.values(), key=lambda w: w.id):
            s = w.status or {}
            streams = s.get("streams", {})
            workers.append({
                "id": w.id, "node": w.node, "pid": s.get("pid"), "state": w.state, "capacity": w.capacity,
                "streams": sorted(streams), "device": s.get("device"),
                "carried_over": sorted(sid for sid, v in streams.items() if v.get("carried_over")),
                "timesteps": sum(v["timesteps"] for v in streams.values()),
                "dropped_timesteps": sum(v["dropped_timesteps"] for v in streams.values()),
                "batch_mean": s.get("batch_mean"), "latency_p99_ms": s.get("latency_p99_ms"),
            })  # fmt: skip
        healthy = all(w["state"] == "alive" for w in workers) and set(self.placement) == {
            sc.stream_id for sc in self.config.streams
        }
        return {
            "wall_time": round(time.time(), 3),
            "driver": {"pid": os.getpid()},
            "health": "ok" if healthy else "degraded",
            "workers": workers,
            "placement": dict(sorted(self.placement.items())),
            "moves": self.moves[-20:],
        }

    def _publish(self) -> None:
        self._queue(self._topics.cluster, json.dumps(self.layout()).encode(), retain=True)

    def _queue(self, topic: str, payload: bytes, *, retain: bool, qos: int = 1) -> None:
        if self.config.mqtt.url:
            self._outbox.put(Message(topic, payload, qos, retain, "state" if retain else "event", time.time()))


async def stop_workers(workers: list[WorkerRef]) -> None:
    """End each worker's streams (their events close, statuses go offline), then the workers themselves."""
    import ray

    async def one(w: WorkerRef) -> None:
        with contextlib.suppress(Exception):
            async with asyncio.timeout(40):
                await w.handle.stop.remote()
        with contextlib.suppress(Exception):
            ray.kill(w.handle, no_restart=True)

    await asyncio.gather(*(one(w) for w in workers))


def find_workers(namespace: str) -> list[WorkerRef]:
    """The workers of a site, by name (for ``cluster status`` and ``cluster stop``)."""
    import ray

    refs = []
    for entry in ray.util.list_named_actors(all_namespaces=True):
        if entry.get("namespace") == namespace and str(entry.get("name", "")).startswith("w-"):
            with contextlib.suppress(ValueError):
                handle = ray.get_actor(entry["name"], namespace=namespace)
                refs.append(WorkerRef(entry["name"], "", handle, 1.0))
    return refs
