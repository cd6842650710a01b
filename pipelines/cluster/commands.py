"""``streamer cluster run | status | stop``."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import signal
import sys
from typing import Any

from pipelines.cluster.driver import ClusterDriver, find_workers, namespace_for, stop_workers
from streamer.errors import EXIT_OK, ConfigError

log = logging.getLogger("streamer")


def _connect(address: str | None, namespace: str, local: int | None = None) -> None:
    try:
        import ray
    except ImportError:
        raise ConfigError("streamer cluster needs Ray: pip install -e '.[cluster]'") from None
    options: dict[str, Any] = {"namespace": namespace, "log_to_driver": False, "configure_logging": False}
    if local is not None:
        ray.init(include_dashboard=False, **options)
        return
    try:
        ray.init(address=address or "auto", **options)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise ConfigError(f"cannot reach the Ray cluster at {address or 'auto'}: {exc}") from None


async def cluster_command(args: argparse.Namespace) -> int:
    if args.cluster == "run":
        return await _run(args)
    namespace = namespace_for(args.prefix)
    _connect(args.address, namespace)
    workers = find_workers(namespace)
    if args.cluster == "stop":
        await stop_workers(workers)
        print(f"stopped {len(workers)} worker(s)")
        return EXIT_OK
    rows = []
    for w in workers:
        try:
            rows.append(await asyncio.wait_for(w.handle.status.remote(), 10))
        except Exception as exc:
            rows.append({"id": w.id, "error": f"not answering ({type(exc).__name__})"})
    if args.json:
        print(json.dumps({"workers": rows}, indent=2))
        return EXIT_OK
    print(f"{'worker':<16} {'node':<10} {'pid':>7} {'streams':>7} {'p99 ms':>7}  streams")
    for r in rows:
        if "error" in r:
            print(f"{r['id']:<16} {r['error']}")
            continue
        p99 = r.get("latency_p99_ms")
        print(f"{r['id']:<16} {r['node'][:8]:<10} {r['pid']:>7} {len(r['streams']):>7} "
              f"{'-' if p99 is None else round(p99):>7}  {', '.join(sorted(r['streams']))}")  # fmt: skip
    return EXIT_OK


async def _run(args: argparse.Namespace) -> int:
    from pipelines.cli.main import analyzer_config

    config = analyzer_config(args, args.sources, args.config)
    if config.duration is not None:
        raise ConfigError("--duration: not for a cluster (its workers serve until stopped)")
    namespace = namespace_for(config.mqtt.prefix)
    _connect(args.address, namespace, args.local)
    driver = ClusterDriver(
        config, namespace, workers_per_node=args.local or args.workers_per_node, worker_cpus=args.worker_cpus,
        checkpoint_s=args.checkpoint_s,
        watch=args.config, reload=(lambda: analyzer_config(args, args.sources, args.config)) if args.config else None,
        detach=args.detach and args.local is None,
    )  # fmt: skip
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, driver.stop)
    print(f"streamer cluster: {len(config.streams)} stream(s), namespace {namespace}", file=sys.stderr)
    return await driver.run()
