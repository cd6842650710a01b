"""Streams analyzed against the number of cluster workers on one machine (``streamer cluster run --local W``).

For each worker count W and stream count N: N live synthetic streams (640x360, 30 fps video and audio, a burst
every 3 s; rendered in the ingest processes, so each costs about what decoding a camera does) on W workers
sharing the machine's cores (``--worker-cpus cores/W``), a real mosquitto, 15 s to settle, then 20 s measured
from the workers' status (``{prefix}/cluster``): timesteps scored per second against the N x 10 due, the
workers' glass-to-publish latency p99 and dropped timesteps. N is kept up when >= 95% of the timesteps are
scored, none is dropped and p99 <= hop + 80 ms (180 ms).

    .venv/bin/python benchmarks/cluster_scaling.py --workers 1,2,4 --streams 8,16,24,32 --json cluster.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipelines.bench.mosquitto import MqttBroker
from tests.analyzer_run import STREAMER, subscribe

BURSTS = ",".join(f"av@{t}" for t in range(2, 600, 3))
SOURCE = f"synthetic:?events={BURSTS}&duration=0&width=640&height=360&fps=30"
BUDGET_MS = 180.0


def config(broker: MqttBroker, n: int) -> str:
    text = f'[mqtt]\nurl = "{broker.url}"\nprefix = "bench"\nstats_interval = 5\n'
    return text + "".join(f'\n[[streams]]\nname = "cam{i}"\nsource = "{SOURCE}"\n' for i in range(n))


async def measure(broker: MqttBroker, workers: int, n: int, settle: float, window: float) -> dict[str, Any]:
    cores = os.cpu_count() or 2
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "site.toml"
        path.write_text(config(broker, n))
        proc = await asyncio.create_subprocess_exec(
            *STREAMER, "cluster", "run", "--config", str(path), "--local", str(workers),
            "--worker-cpus", f"{cores / workers:.3f}", stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )  # fmt: skip
        try:
            async with subscribe(broker.host, broker.port, "bench/cluster") as sub:

                def layout() -> dict[str, Any] | None:
                    m = sub.on("bench/cluster")
                    return json.loads(m[-1].payload) if m and m[-1].payload else None

                deadline = time.monotonic() + 180
                while not (
                    (lay := layout()) and lay["health"] == "ok" and sum(len(w["streams"]) for w in lay["workers"]) == n
                ):
                    if time.monotonic() > deadline:
                        return {"workers": workers, "streams": n, "error": "not placed within 180 s"}
                    await asyncio.sleep(0.5)
                await asyncio.sleep(settle)
                before = layout()
                await asyncio.sleep(window)
                after = layout()
        finally:
            proc.send_signal(signal.SIGINT)
            try:
                await asyncio.wait_for(proc.wait(), 90)
            except TimeoutError:
                proc.kill()
                await proc.wait()
    assert before is not None and after is not None
    done = sum(w["timesteps"] for w in after["workers"]) - sum(w["timesteps"] for w in before["workers"])
    dropped = sum(w["dropped_timesteps"] for w in after["workers"]) - sum(
        w["dropped_timesteps"] for w in before["workers"]
    )
    p99 = max((w["latency_p99_ms"] or 0.0) for w in after["workers"])
    span = after["wall_time"] - before["wall_time"]  # the workers' counts as of these two layouts
    rate = done / span / (n * 10)
    return {
        "workers": workers, "streams": n, "scored_share": round(rate, 3), "dropped": dropped,
        "p99_ms": round(p99, 1), "kept_up": rate >= 0.95 and dropped == 0 and p99 <= BUDGET_MS,
    }  # fmt: skip


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workers", default="1,2,4")
    parser.add_argument("--streams", default="8,16,24,32")
    parser.add_argument("--settle", type=float, default=15.0)
    parser.add_argument("--window", type=float, default=20.0)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    broker = MqttBroker(Path(tempfile.mkdtemp(prefix="bench-mqtt-")))
    broker.start()
    rows = []
    try:
        for workers in [int(w) for w in args.workers.split(",")]:
            for n in [int(s) for s in args.streams.split(",")]:
                row = await measure(broker, workers, n, args.settle, args.window)
                print(json.dumps(row), flush=True)
                rows.append(row)
                if not row.get("kept_up"):
                    break  # more streams will not keep up either
    finally:
        broker.stop()
    best = {w: max((r["streams"] for r in rows if r["workers"] == w and r.get("kept_up")), default=0)
            for w in sorted({r["workers"] for r in rows})}  # fmt: skip
    print("streams kept up, by workers:", best)
    if args.json is not None:
        args.json.write_text(json.dumps({"rows": rows, "kept_up": best, "cores": os.cpu_count()}, indent=2))


if __name__ == "__main__":
    asyncio.run(main())
