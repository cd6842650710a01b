"""The cluster's driver (``streamer cluster run``): places streams on workers and keeps them placed.

Every ``interval`` seconds it reads the Ray cluster's nodes and its workers' status, and:

* starts the workers a node should have (``workers_per_node``, named ``w-<node>-<i>``, detached, pinned to
  their node, restarted by Ray when their process dies: they outlive the driver);
* gives each worker its streams (:func:`.placement.place`: balanced, sticky); the streams of a worker whose node
  is lost go to the other workers (logged, and published on ``{prefix}/cluster/moves``), starting from their
  last checkpoint;
* follows the config file: a stream added or removed there is placed or stopped, the others are left alone; a
  change outside ``[[streams]]`` and ``[defaults]`` (the broker, the model, the device...) is named in the log
  and waits for the next ``cluster run``;
* publishes the layout, retained, on ``{prefix}/cluster``.

A worker that cannot analyze (its analyzer could not be built on its node, or stopped on an error) is shown in
one line naming the worker, its node and the cause, marked ``failed`` in the layout and stopped; its streams go
to the other workers. When every worker has failed, nothing can analyze the streams: the driver stops, marks
the site offline and exits with the failure's exit code (2 for a setting, such as a ``device`` the node lacks).

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
from collections import deque
from collections.abc import Callable, Collection
from dataclasses import dataclass, field, fields, is_dataclass, replace
from pathlib import Path
from typing import Any, cast

from pipelines.cluster.options import UNUSED_BY_WORKERS, ClusterOptions
from pipelines.cluster.placement import WorkerSlot, place, stream_cost
from pipelines.config import AnalyzerConfig, StreamConfig
from pipelines.stages.mqtt import Publisher
from pipelines.stages.outbox import Message, Outbox
from pipelines.stages.topics import Topics
from streamer.errors import EXIT_FAILURE, EXIT_OK, ConfigError
from streamer.settings import settings_of

log = logging.getLogger("streamer")

GPU_WEIGHT = 4.0  # a worker with a GPU takes this many times the streams of one without
STATUS_TIMEOUT = 10.0
ATTACH_TICKS = 15  # ticks a re-attaching driver waits for restarting workers before placing their streams
# Moves the driver keeps: those its layout shows. The layout is retained and published every tick, so it stays
# small (20 moves are about 2.5 kB); a lost node can move hundreds of streams at once, and each move is also
# published on its own on ``{prefix}/cluster/moves`` (QoS 1), the complete record for whoever needs it.
MOVES_KEPT = 20
NAMESPACE_PREFIX = "streamer-"  # a site's Ray namespace: this and its MQTT prefix
WORKER_PREFIX = "w-"  # a worker's actor name: this, its node, its index on the node


def namespace_for(prefix: str) -> str:
    """The Ray namespace of a site: one per MQTT prefix, so two sites can share a Ray cluster."""
    return NAMESPACE_PREFIX + prefix.replace("/", "-")


@dataclass
class WorkerRef:
    id: str
    node: str
    handle: Any
    capacity: float
    status: dict[str, Any] | None = None
    state: str = "starting"  # starting, alive, unreachable (restarting), failed (cannot analyze: ``error``)
    sent: tuple[StreamConfig, ...] | None = None  # what it was last told to hold
    error: str | None = None  # why it failed, one line
    exit_code: int = EXIT_FAILURE  # its failure's, when every worker failed


@dataclass
class ClusterDriver:
    config: AnalyzerConfig
    namespace: str
    options: ClusterOptions = field(default_factory=ClusterOptions)  # the workers' layout; detach
    interval: float = 1.0
    watch: Path | None = None  # the config file, re-read when it changes
    reload: Callable[[], AnalyzerConfig] | None = None
    workers: dict[str, WorkerRef] = field(default_factory=dict)
    placement: dict[str, str] = field(default_factory=dict)  # stream -> worker
    moves: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=MOVES_KEPT))  # the recent ones
    _ticks: int = 0
    _stop: asyncio.Event = field(default_factory=asyncio.Event)

    def __post_init__(self) -> None:
        self._topics = Topics(self.config.mqtt.prefix, "cluster/driver")
        self._outbox = Outbox(self.config.mqtt.outbox_size)

    def stop(self) -> None:
        self._stop.set()

    async def run(self) -> int:
        topics, outbox = self._topics, self._outbox
        mqtt = self.config.mqtt
        if mqtt.client_id:
            mqtt = replace(mqtt, client_id=f"{mqtt.client_id}-driver")
        publisher = Publisher(mqtt, topics, outbox) if mqtt.url else None
        self._base = pickle.dumps(replace(self.config, streams=()))
        code = EXIT_OK
        mtime = self._mtime()
        mqtt_task = asyncio.get_running_loop().create_task(publisher.run(), name="mqtt") if publisher else None
        try:
            while not self._stop.is_set():
                now = self._mtime()
                if now != mtime:
                    mtime = now
                    self._reload()
                await self._tick()
                if self.workers and all(w.state == "failed" for w in self.workers.values()):
                    log.error("error: no worker can analyze the streams (each one's cause above); stopping")
                    code = next(iter(self.workers.values())).exit_code
                    break
                if self.options.detached and self._settled():
                    log.info("streams placed; the workers go on without this driver")
                    break
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), self.interval)
            if (self._stop.is_set() and not self.options.detached) or code != EXIT_OK:
                await stop_workers(list(self.workers.values()))
                self._queue(topics.cluster, b"", retain=True)
                self._queue(topics.status, b"offline", retain=True)
        finally:
            if publisher is not None and mqtt_task is not None:
                await publisher.close(mqtt_task)
        return code

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
        before = {sc.stream_id: sc for sc in self.config.streams}
        after = {sc.stream_id: sc for sc in config.streams}
        changed = [sid for sid in after if sid in before and after[sid] != before[sid]]
        ignored = changed_settings(self.config, config)
        log.warning(
            "config reloaded: %d stream(s) added, %d removed, %d changed (restarted)%s",
            len(after.keys() - before.keys()), len(before.keys() - after.keys()), len(changed),
            f"; not applied until `cluster run` starts again: {', '.join(ignored)}" if ignored else "",
        )  # fmt: skip
        self.config = replace(self.config, streams=config.streams)

    def _settled(self) -> bool:
        wanted = {sc.stream_id for sc in self.config.streams}
        return set(self.placement) == wanted and all(
            w.sent is not None and w.state == "alive" for w in self.workers.values() if w.state != "failed"
        )

    # -- one round of supervision -------------------------------------------------------------------------

    async def _tick(self) -> None:
        import ray

        self._ticks += 1
        nodes = {n["NodeID"]: n for n in await asyncio.to_thread(ray.nodes) if n.get("Alive")}
        for node_id, node in nodes.items():
            gpus = float(node.get("Resources", {}).get("GPU", 0))
            for i in range(self.options.workers_each_node):
                name = f"{WORKER_PREFIX}{node_id[:8]}-{i}"
                if name not in self.workers:
                    capacity = self.options.worker_cpus * (GPU_WEIGHT if gpus else 1.0)
                    self.workers[name] = WorkerRef(name, node_id, self._start_worker(name, node_id, gpus), capacity)
        lost = [w for w in self.workers.values() if w.node not in nodes]
        for w in lost:
            del self.workers[w.id]
            log.warning("worker %s: its node %s is gone", w.id, w.node[:8])
            with contextlib.suppress(Exception):
                ray.kill(w.handle, no_restart=True)
        await asyncio.gather(*(self._poll(w) for w in self.workers.values()))
        failed = {w.id for w in self.workers.values() if w.state == "failed"}
        for w in self.workers.values():  # a re-attached driver: what each worker already holds is its placement
            if w.sent is None and w.status is not None:
                held = set(w.status["streams"])
                w.sent = tuple(sc for sc in self.config.streams if sc.stream_id in held)
                for sid in held:
                    self.placement.setdefault(sid, w.id)
        waiting = any(w.state in ("starting", "unreachable") for w in self.workers.values())
        if waiting and self._ticks <= ATTACH_TICKS and not lost:
            self._publish()
            return  # workers are starting (or restarting after a lost driver): what they hold is not known yet
        await self._place({w.id for w in lost}, failed)
        self._publish()

    def _start_worker(self, name: str, node_id: str, gpus: float) -> Any:
        import ray
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        from pipelines.cluster.worker import StreamWorker

        actor = ray.remote(StreamWorker)
        return actor.options(
            name=name, namespace=self.namespace, lifetime="detached", get_if_exists=True, max_restarts=-1,
            num_cpus=self.options.worker_cpus, num_gpus=1 if gpus else 0,
            scheduling_strategy=NodeAffinitySchedulingStrategy(node_id, soft=False),
        ).remote(name, self.namespace, self._base, self.options)  # fmt: skip

    async def _poll(self, w: WorkerRef) -> None:
        if w.state == "failed":
            return
        try:
            async with asyncio.timeout(STATUS_TIMEOUT):
                status = await w.handle.status.remote()
        except Exception as exc:  # restarting (Ray starts it again), or not up yet
            if getattr(exc, "actor_init_failed", False):  # its constructor raised (Ray will not start it again)
                cause = next((line for line in reversed(str(exc).splitlines()) if line.strip()), type(exc).__name__)
                await self._failed(w, f"cannot start: {cause.strip()}", EXIT_FAILURE)
                return
            if w.state == "alive":
                log.warning("worker %s: not answering (%s)", w.id, type(exc).__name__)
            w.state = "unreachable" if w.state != "starting" else "starting"
            w.status = None
            return
        if status.get("error"):
            await self._failed(w, status["error"], status.get("exit_code", EXIT_FAILURE))
            return
        w.status, w.state = status, "alive"

    async def _failed(self, w: WorkerRef, error: str, exit_code: int) -> None:
        """Shown once; the worker is stopped for good (it would hold its CPUs and GPU for nothing) and forgets
        its streams (they go to the others; were it started again, it must not resume them as well)."""
        import ray

        from pipelines.cluster.store import Store

        log.error("error: worker %s on node %s: %s", w.id, w.node[:8], error)
        w.state, w.error, w.exit_code, w.status = "failed", error, exit_code, None
        with contextlib.suppress(Exception):
            await asyncio.to_thread(Store(self.namespace).set_assignment, w.id, ())
        with contextlib.suppress(Exception):
            ray.kill(w.handle, no_restart=True)

    async def _place(self, lost: Collection[str], failed: Collection[str] = ()) -> None:
        costs = {
            sid: stream_cost(info.get("video"))
            for w in self.workers.values() if w.status is not None
            for sid, info in w.status["streams"].items()
        }  # fmt: skip
        slots = [WorkerSlot(w.id, w.capacity) for w in self.workers.values() if w.state != "failed"]
        streams = {sc.stream_id: sc for sc in self.config.streams}
        placement = place(list(streams), slots, self.placement, costs)
        for sid, worker in placement.items():
            before = self.placement.get(sid)
            if before is not None and before != worker:
                reason = "node lost" if before in lost else "worker failed" if before in failed else "rebalanced"
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
                "streams": sorted(streams), "device": s.get("device"), "error": w.error,
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
            "moves": list(self.moves),
        }

    def _publish(self) -> None:
        self._queue(self._topics.cluster, json.dumps(self.layout()).encode(), retain=True)

    def _queue(self, topic: str, payload: bytes, *, retain: bool, qos: int = 1) -> None:
        if self.config.mqtt.url:
            self._outbox.put(Message(topic, payload, qos, retain, "state" if retain else "event", time.time()))


def changed_settings(before: AnalyzerConfig, after: AnalyzerConfig) -> list[str]:
    """The settings outside the streams that differ between two configurations, by their config-file name
    (``mqtt.prefix``, ``model.tau``, ``device.type``): the workers were built with ``before``'s and keep them.
    Per-stream settings (``[defaults]``, a stream's own) are not among them: they reach the streams' configs."""
    names: list[str] = []
    for f in fields(before):
        old, new = getattr(before, f.name), getattr(after, f.name)
        if f.name == "streams" or f.name in UNUSED_BY_WORKERS or old == new:
            continue
        if is_dataclass(old) and type(old) is type(new):
            # each setting by where the config file holds it (model.device is device.type there)
            declared = {s.name: f"{s.section}.{s.key}" for s in settings_of(cast(type, type(old)))}
            names += [declared.get(g.name, f"{f.name}.{g.name}") for g in fields(old)
                      if getattr(old, g.name) != getattr(new, g.name)]  # fmt: skip
        else:
            names.append(f.name)
    return names


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
    for entry in _named_workers():
        if entry.get("namespace") == namespace:
            with contextlib.suppress(ValueError):
                handle = ray.get_actor(entry["name"], namespace=namespace)
                refs.append(WorkerRef(entry["name"], "", handle, 1.0))
    return refs


def site_namespaces() -> set[str]:
    """The Ray namespaces holding workers: one per site on this Ray cluster (:func:`namespace_for`)."""
    return {str(entry.get("namespace")) for entry in _named_workers()}


def _named_workers() -> list[dict[str, Any]]:
    import ray

    entries: list[dict[str, Any]] = ray.util.list_named_actors(all_namespaces=True)
    return [
        e
        for e in entries
        if str(e.get("name", "")).startswith(WORKER_PREFIX) and e.get("namespace", "").startswith(NAMESPACE_PREFIX)
    ]
