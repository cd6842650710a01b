"""``streamer cluster`` on a real multi-node Ray cluster on this machine (``ray.cluster_utils.Cluster``: a head
and two more nodes, each with its own raylet), a real mosquitto, real driver processes.

One scenario, in phases that build on each other: streams spread over nodes and all publish; a killed worker
process is restarted with its streams; a removed node's streams move and resume; a killed driver leaves the
workers publishing and a new one re-attaches; the config file adds and removes a stream; Ctrl-C stops it all.

Then what a user meets first, each in one short Ray session of its own: a worker whose analyzer cannot be built
on its node (``device = "cuda"`` here) is reported and the run ends; Ctrl-C on ``cluster run --local`` leaves
every stream's retained status ``offline``, a file's as well as a live one's; ``cluster status`` and
``cluster stop`` find a detached site through its config file, say why a table is empty, and ``stop`` marks the
site offline. And, with no Ray, the driver's bookkeeping: the moves it keeps, what a reloaded config ignores.
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

from pipelines.cluster.commands import RAY_AUTH_NOTICE
from pipelines.cluster.driver import MOVES_KEPT, ClusterDriver, WorkerRef
from pipelines.cluster.placement import WorkerSlot, place, stream_cost
from pipelines.config import build_config

from .analyzer_run import STREAMER, Subscriber, streamer, subscribe
from .helpers import until
from .media import make_clip

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


# -- the driver's bookkeeping (no Ray) ----------------------------------------------------------------------------


async def test_the_driver_keeps_only_the_recent_moves() -> None:
    """A stream bounced between two workers 50 times: the driver keeps (and its layout shows) the last
    MOVES_KEPT moves, not all of them; each one still went out on the moves topic."""
    driver = ClusterDriver(build_config(None, sources=[f"cam1={SOURCE}"]), "streamer-t")

    def only(worker: str) -> None:  # "unreachable": placed on, never called
        driver.workers = {worker: WorkerRef(worker, "node", None, 1.0, state="unreachable")}

    only("x")
    await driver._place(set())
    for _ in range(50):
        gone = driver.placement["cam1"]
        only("y" if gone == "x" else "x")
        await driver._place({gone})
    assert len(driver.moves) == MOVES_KEPT
    assert driver.layout()["moves"] == list(driver.moves)
    assert driver.moves[-1]["to"] == driver.placement["cam1"]
    assert len(driver._outbox) >= 50  # each move was queued for {prefix}/cluster/moves


def test_a_reloaded_config_names_what_it_cannot_apply(caplog: pytest.LogCaptureFixture) -> None:
    first = {"streams": [{"name": "cam1", "source": SOURCE}]}
    changed = {
        "streams": [{"name": "cam1", "source": SOURCE, "threshold": 0.4}, {"name": "cam2", "source": SOURCE}],
        "mqtt": {"prefix": "elsewhere", "stats_interval": 5},
        "model": {"tau": 3.0},
        "device": {"type": "cpu"},
    }
    driver = ClusterDriver(build_config(first), "streamer-t", reload=lambda: build_config(changed))
    caplog.set_level("WARNING", logger="streamer")
    driver._reload()
    (line,) = [r.getMessage() for r in caplog.records if "config reloaded" in r.getMessage()]
    assert "1 stream(s) added, 0 removed, 1 changed (restarted)" in line
    ignored = line.partition("not applied until `cluster run` starts again:")[2]
    assert {name.strip() for name in ignored.split(",")} == {
        "mqtt.prefix", "mqtt.stats_interval", "model.tau", "device.type"
    }, line  # fmt: skip
    assert [sc.stream_id for sc in driver.config.streams] == ["cam1", "cam2"]
    assert driver.config.mqtt.prefix == "streamer"  # the workers' settings, until a restart
    caplog.clear()
    driver.reload = lambda: build_config(first)
    driver._reload()  # back to the first: the workers' settings are the file's again, nothing to name
    assert [r.getMessage() for r in caplog.records if "config reloaded" in r.getMessage()] == [
        "config reloaded: 0 stream(s) added, 1 removed, 1 changed (restarted)"
    ]


# -- a user's first steps, each on a Ray of its own --------------------------------------------------------------


async def ended(proc: asyncio.subprocess.Process, seconds: float) -> str:
    """Its stderr once it exits; killed (and the test failed) if it has not within ``seconds``."""
    try:
        async with asyncio.timeout(seconds):
            _, err = await proc.communicate()
    except TimeoutError:
        proc.kill()
        _, err = await proc.communicate()
        pytest.fail(f"still running after {seconds} s:\n{err.decode()[-3000:]}")
    return err.decode()


@pytest.mark.timeout(300)
async def test_a_worker_that_cannot_build_its_analyzer_ends_the_run_with_its_cause(tmp_path: Path) -> None:
    pytest.importorskip("ray")
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("needs a machine without CUDA: its worker must fail to open the device")
    config = tmp_path / "site.toml"
    config.write_text(
        f'[device]\ntype = "cuda"\n[mqtt]\nurl = "none"\n\n[[streams]]\nname = "cam1"\nsource = "{SOURCE}"\n'
    )
    proc = await asyncio.create_subprocess_exec(
        *STREAMER, "cluster", "run", "--local", "1", "--config", str(config), "--worker-cpus", "0.5",
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    err = await ended(proc, 240)  # it used to wait for the worker forever
    assert proc.returncode == 2, err  # a setting the node cannot honour
    (line,) = [line for line in err.splitlines() if "cannot start its analyzer" in line]
    assert line.startswith("streamer: error: worker w-") and " on node " in line and "device.type" in line, line
    assert "no worker can analyze the streams" in err
    assert RAY_AUTH_NOTICE not in err  # Ray's notice is no longer printed as if it were our first line


@pytest.mark.timeout(300)
async def test_ctrl_c_on_cluster_run_leaves_every_stream_offline(mqtt_broker: Any, tmp_path: Path) -> None:
    pytest.importorskip("ray")
    broker = mqtt_broker()
    clip = make_clip(tmp_path / "door.mp4", duration=4, width=160, height=90, fps=10, flashes=[1], beeps=[1])
    config = tmp_path / "site.toml"
    config.write_text(
        config_text(broker, ["live"])
        + f'\n[[streams]]\nname = "file"\nsource = "{clip}"\nrealtime = true\nloop = true\n'
    )
    async with subscribe(broker.host, broker.port, "t/#") as sub:
        proc = await asyncio.create_subprocess_exec(
            *STREAMER, "cluster", "run", "--local", "1", "--config", str(config), "--worker-cpus", "0.5",
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE, start_new_session=True,
        )  # fmt: skip
        try:
            running = await until(lambda: proc.returncode is not None or all(
                sub.payloads(f"t/{s}/status")[-1:] == ["online"] for s in ("live", "file")), 180)  # fmt: skip
            assert running and proc.returncode is None, "both streams online"
            os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C: the terminal signals the foreground process group
            err = await ended(proc, 120)
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
        assert proc.returncode == 0, err
    async with subscribe(broker.host, broker.port, "t/+/status") as retained:  # what a dashboard reads now
        await until(lambda: len(retained.messages) >= 2, 10)
    assert {m.topic: m.payload.decode() for m in retained.messages} == {
        "t/live/status": "offline", "t/file/status": "offline"
    }  # fmt: skip


@pytest.mark.timeout(300)
async def test_cluster_status_and_stop_find_the_site_by_its_config(mqtt_broker: Any, tmp_path: Path) -> None:
    pytest.importorskip("ray")
    from ray.cluster_utils import Cluster

    broker = mqtt_broker()
    config = tmp_path / "site.toml"
    config.write_text(config_text(broker, ["cam1"]))
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 2, "include_dashboard": False})
    try:
        address = cluster.address
        async with subscribe(broker.host, broker.port, "t/#") as sub:
            code, _, err = await streamer("cluster", "run", "--address", address, "--config", str(config),
                                          "--worker-cpus", "0.5", "--detach", within=180)  # fmt: skip
            assert code == 0, err
            await sub.wait_for("t/cam1/status", "online", within=60)

        code, out, err = await streamer("cluster", "status", "--address", address, "--config", str(config))
        assert code == 0, err
        header, row = out.splitlines()
        assert header.split()[-2:] == ["stream", "ids"] and header.count("streams") == 1, header
        assert row.startswith("w-") and row.split()[-1] == "cam1", out

        code, out, err = await streamer("cluster", "status", "--address", address)  # the default prefix
        assert code == 0 and out == "", out
        assert "no workers under prefix 'streamer'" in err and "streamer-t" in err and "--config" in err, err

        code, out, err = await streamer("cluster", "stop", "--address", address, "--config", str(config))
        assert code == 0 and "stopped 1 worker(s)" in out, out + err
        async with subscribe(broker.host, broker.port, "t/#") as retained:
            await until(lambda: {"t/status", "t/cam1/status"} <= {m.topic for m in retained.messages}, 10)
        now = {m.topic: m.payload for m in retained.messages}
        assert now["t/status"] == b"offline" and now["t/cam1/status"] == b"offline", now
        assert "t/cluster" not in now  # the layout of a site that is gone is cleared
    finally:
        cluster.shutdown()
