"""``streamer cluster`` on a real multi-node Ray cluster on this machine (``ray.cluster_utils.Cluster``: a head
and two more nodes, each with its own raylet), a real mosquitto, real driver processes.

One scenario, in phases that build on each other: streams spread over nodes and all publish; a killed worker
process is restarted with its streams; a removed node's streams move and resume; a killed driver leaves the
workers publishing and a new one re-attaches; the config file adds and removes a stream; Ctrl-C stops it all.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from pathlib import Path
from typing import Any

import pytest

from pipelines.cluster.placement import WorkerSlot, place, stream_cost

from .analyzer_run import STREAMER, Subscriber, subscribe
from .helpers import until

EVERY_3S = ",".join(f"av@{t}" for t in range(2, 600, 3))
SOURCE = f"synthetic:?events={EVERY_3S}&duration=0&width=320&height=180&fps=15"


def test_placement_balances_by_cost_and_sticks() -> None:
    workers = [WorkerSlot("a"), WorkerSlot("b"), WorkerSlot("gpu", capacity=4)]
    costs = {"big": 9.0, "s1": 1.0, "s2": 1.0, "s3": 1.0}
    first = place(["big", "s1", "s2", "s3"], workers, {}, costs)
    assert first["big"] == "gpu"  # the costliest stream to the largest capacity
    assert {first["s1"], first["s2"], first["s3"]} >= {"a", "b"}
    # a worker gone: only its streams move, onto the others; the rest stay where they were
    after = place(["big", "s1", "s2", "s3"], [w for w in workers if w.id != "a"], first, costs)
    assert all(after[s] == first[s] for s in first if first[s] != "a")
    assert all(after[s] in ("b", "gpu") for s in after)
    assert place(["x"], [], {}) == {}
    assert stream_cost({"width": 1920, "height": 1080, "fps": 30}) == pytest.approx(9.0)
    assert stream_cost(None) == 1.0


def config_text(broker: Any, names: list[str]) -> str:
    text = f'[mqtt]\nurl = "{broker.url}"\nprefix = "t"\nstats_interval = 5\n'
    for name in names:
        text += f'\n[[streams]]\nname = "{name}"\nsource = "{SOURCE}"\n'
    return text


def layout(sub: Subscriber) -> dict[str, Any] | None:
    messages = sub.on("t/cluster")
    return json.loads(messages[-1].payload) if messages and messages[-1].payload else None


def events_since(sub: Subscriber, mark: int, stream: str) -> list[dict[str, Any]]:
    return [json.loads(m.payload) for m in sub.messages[mark:] if m.topic == f"t/{stream}/events"]


async def start_driver(config: Path, address: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        *STREAMER, "cluster", "run", "--config", str(config), "--address", address, "--worker-cpus", "0.5",
        "--checkpoint-s", "1",
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip


@pytest.mark.live_heavy
@pytest.mark.timeout(600)
async def test_a_cluster_spreads_streams_and_survives_faults(mqtt_broker: Any, tmp_path: Path) -> None:
    ray = pytest.importorskip("ray")
    from ray.cluster_utils import Cluster

    broker = mqtt_broker()
    config = tmp_path / "site.toml"
    names = ["cam1", "cam2", "cam3", "cam4"]
    config.write_text(config_text(broker, names))
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 2, "include_dashboard": False})
    nodes = [cluster.add_node(num_cpus=2) for _ in range(2)]
    cluster.wait_for_nodes()
    driver = await start_driver(config, cluster.address)
    try:
        async with subscribe(broker.host, broker.port, "t/#") as sub:
            # 1. spread over the nodes, every stream publishing
            def placed() -> dict[str, Any] | None:
                lay = layout(sub)
                ok = lay and lay["health"] == "ok" and len(lay["workers"]) == 3
                return lay if ok and sorted(s for w in lay["workers"] for s in w["streams"]) == names else None

            def publishing(streams: list[str], mark: int) -> bool:
                return all(events_since(sub, mark, n) for n in streams)

            first = await until(placed, 180)
            assert first, "4 streams placed on workers of 3 nodes"
            assert len({w["node"] for w in first["workers"] if w["streams"]}) >= 2
            assert await until(lambda: publishing(names, 0), 60)
            status = await asyncio.create_subprocess_exec(
                *STREAMER, "cluster", "status", "--address", cluster.address, "--prefix", "t", "--json",
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
            )  # fmt: skip
            out, _ = await asyncio.wait_for(status.communicate(), 60)
            rows = json.loads(out)["workers"]
            assert sorted(s for r in rows for s in r["streams"]) == names
            assert {r["pid"] for r in rows} == {w["pid"] for w in first["workers"]}

            # 2. a worker process killed: Ray starts it again, with its streams
            victim = next(w for w in first["workers"] if w["streams"])
            mark = len(sub.messages)
            os.kill(victim["pid"], signal.SIGKILL)

            def restarted() -> bool:
                workers = (layout(sub) or {"workers": []})["workers"]
                return any(w["id"] == victim["id"] and w["pid"] not in (None, victim["pid"])
                           and w["streams"] == victim["streams"] for w in workers)  # fmt: skip

            assert await until(restarted, 120), "the killed worker back with a new process and its streams"
            assert await until(lambda: publishing(victim["streams"], mark), 60)

            # 3. a node lost: its streams move to the other workers and resume
            lay = layout(sub)
            assert lay is not None
            by_node = {node.node_id: node for node in nodes}
            moving = next(w for w in lay["workers"] if w["node"] in by_node and w["streams"])
            mark = len(sub.messages)
            removed_at = time.monotonic()
            cluster.remove_node(by_node[moving["node"]])

            def moved() -> bool:
                lay = layout(sub)
                return (
                    bool(lay)
                    and all(w["id"] != moving["id"] for w in lay["workers"])
                    and all(lay["placement"].get(s) not in (None, moving["id"]) for s in moving["streams"])
                )

            assert await until(moved, 90), "the lost node's streams placed elsewhere"
            assert await until(lambda: publishing(moving["streams"], mark), 90)
            resumed = time.monotonic() - removed_at

            def carried_over() -> bool:  # the layout after the workers' next status, which says so
                workers = (layout(sub) or {"workers": []})["workers"]
                return set(moving["streams"]) <= {s for w in workers for s in w["carried_over"]}

            assert await until(carried_over, 30), "a moved stream starts from its last checkpoint"
            moves = [json.loads(m.payload) for m in sub.messages[mark:] if m.topic == "t/cluster/moves"]
            assert {m["stream"] for m in moves} == set(moving["streams"]), moves
            assert all(m["reason"] == "node lost" for m in moves)
            print(f"node lost -> its streams' events resumed in {resumed:.1f} s")
            delivery = [m.json().get("event_delivery_ms", {}).get("p99") for m in sub.on("t/stats")]
            print(f"detected -> acknowledged by the broker, p99 per stats message (ms): {delivery}")

            # 4. the driver killed: the workers go on publishing; a new driver re-attaches without moving anything
            placement = layout(sub)["placement"]  # type: ignore[index]
            driver.kill()
            await driver.wait()
            mark = len(sub.messages)
            assert await until(lambda: publishing(names, mark), 60), "events from every stream with no driver"
            driver = await start_driver(config, cluster.address)

            def attached() -> bool:
                lay = layout(sub)
                return bool(lay) and lay["driver"]["pid"] == driver.pid and lay["health"] == "ok"

            assert await until(attached, 120), "the new driver's layout"
            assert layout(sub)["placement"] == placement  # type: ignore[index]

            # 5. the config changes: a stream removed, one added
            names = ["cam1", "cam2", "cam3", "cam5"]
            mark = len(sub.messages)
            config.write_text(config_text(broker, names))
            assert await until(lambda: sorted((layout(sub) or {"placement": {}})["placement"]) == names, 120)
            assert await until(lambda: publishing(["cam5"], mark), 120)
            await sub.wait_for("t/cam4/status", "offline", within=30)
            assert layout(sub)["placement"]["cam1"] == placement["cam1"]  # type: ignore[index]

            # 6. Ctrl-C: every worker stops, the site goes offline
            driver.send_signal(signal.SIGINT)
            async with asyncio.timeout(120):
                assert await driver.wait() == 0
            await sub.wait_for("t/status", "offline", within=30)
            ray.init(address=cluster.address, namespace="streamer-t", log_to_driver=False)
            assert [a for a in ray.util.list_named_actors(all_namespaces=True) if a["namespace"] == "streamer-t"] == []
    finally:
        if driver.returncode is None:
            driver.kill()
            await driver.wait()
        err = (await driver.stderr.read()).decode() if driver.stderr else ""
        print(err[-3000:])
        ray.shutdown()
        cluster.shutdown()
