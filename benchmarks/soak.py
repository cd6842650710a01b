"""Soak: N live streams for M minutes against a real mosquitto; the analyzer's memory must stay flat.

    .venv/bin/python benchmarks/soak.py [--streams 4] [--minutes 10] [--warmup 60] [--json soak.json]

Starts mosquitto (pipelines/bench/mosquitto.py) and ``streamer run`` on N live synthetic streams (30 fps
640x360 video and audio, running forever, a burst every 10 s) with scores and stats on, as a subprocess. A
subscriber counts what arrives. Every 10 s it samples the analyzer's resident memory (VmRSS, /proc). Reports RSS
after the warm-up and at the end, growth in % (target < 5%), events and stats (drops, latency), and whether the
process stayed up. A benchmark, not a CI test: it takes the whole duration.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiomqtt

from pipelines.bench.mosquitto import MqttBroker


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def soak(streams: int, minutes: float, warmup: float, workdir: Path) -> dict[str, Any]:
    broker = MqttBroker(workdir / "mosquitto")
    broker.start()
    events = 0
    stats: dict[str, Any] = {}
    samples: list[tuple[float, float]] = []
    bursts = ",".join(f"av@{5 + 10 * k}" for k in range(int(minutes * 6) + 12))
    args = [f"s{i}=synthetic:?duration=0&seed={i}&events={bursts}" for i in range(streams)]
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "pipelines.cli.main", "run", *args, "--mqtt", broker.url, "--prefix", "soak",
        "--scores", "--stats-interval", "10", "-q", stderr=(workdir / "analyzer.log").open("w"),
    )  # fmt: skip
    try:
        async with aiomqtt.Client(broker.host, broker.port) as client:
            await client.subscribe("soak/#")

            async def listen() -> None:
                nonlocal events, stats
                async for message in client.messages:
                    topic = str(message.topic)
                    if topic.endswith("/events"):
                        events += 1
                    elif topic == "soak/stats" and isinstance(message.payload, bytes):
                        stats = json.loads(message.payload)

            task = asyncio.create_task(listen())
            start = time.monotonic()
            while (elapsed := time.monotonic() - start) < minutes * 60 and proc.returncode is None:
                samples.append((round(elapsed, 1), round(rss_mb(proc.pid), 1)))
                print(f"{elapsed:6.0f} s  rss {samples[-1][1]:7.1f} MB  events {events}", file=sys.stderr)
                await asyncio.sleep(10)
            task.cancel()
        alive = proc.returncode is None
    finally:
        if proc.returncode is None:
            proc.terminate()
            await proc.wait()
        broker.stop()
    after_warmup = next((rss for t, rss in samples if t >= warmup), samples[-1][1])
    final = samples[-1][1]
    return {
        "streams": streams,
        "minutes": minutes,
        "stayed_up": alive,
        "exit_code_on_sigterm": proc.returncode,
        "rss_after_warmup_mb": after_warmup,
        "rss_final_mb": final,
        "rss_growth_pct": round(100 * (final - after_warmup) / after_warmup, 2),
        "rss_max_mb": max(rss for _, rss in samples),
        "events_received": events,
        "last_stats": stats,
        "samples": samples,
        "date": time.strftime("%Y-%m-%d %H:%M"),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--streams", type=int, default=4)
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--warmup", type=float, default=60.0, help="seconds before the memory baseline")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="streamer-soak-") as tmp:
        report = asyncio.run(soak(args.streams, args.minutes, args.warmup, Path(tmp)))
    brief = {k: v for k, v in report.items() if k not in ("samples", "last_stats")}
    print(json.dumps(brief, indent=1))
    if args.json:
        args.json.write_text(json.dumps(report, indent=1) + "\n")
    return 0 if report["stayed_up"] and report["rss_growth_pct"] < 5 else 1


if __name__ == "__main__":
    sys.exit(main())
