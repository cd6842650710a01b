"""``streamer cluster run | status | stop``.

``status`` and ``stop`` find a site as ``cluster run`` placed it: by its MQTT prefix (which names its Ray
namespace), read from the same ``--config`` file's ``[mqtt]`` table (``--prefix`` over it). ``stop`` then marks
the site offline on its broker, as a driver does when it stops the site, for a site whose driver was detached.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import signal
import sys
from typing import Any

from pipelines.cluster.driver import ClusterDriver, find_workers, namespace_for, site_namespaces, stop_workers
from pipelines.cluster.options import ClusterOptions
from pipelines.config import MqttConfig, mqtt_settings
from pipelines.flags import analyzer_config, flag_values, values_from
from pipelines.stages.topics import Topics
from streamer.errors import EXIT_OK, ConfigError

log = logging.getLogger("streamer")

OFFLINE_TIMEOUT = 10.0  # seconds `cluster stop` gives the broker to take the site's offline
RAY_AUTH_LOGGER = "ray._private.authentication.authentication_token_setup"
RAY_AUTH_NOTICE = "Token authentication is enabled for this Ray cluster"


class _RayAuthNotice(logging.Filter):
    """Ray prints that token authentication is on (its safe default) bare on stderr, where it reads as the first
    line of our own output. It goes to our log instead, shown with ``-v``; Ray's other lines (a warning that
    authentication is off among them) pass as they are."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.getMessage().startswith(RAY_AUTH_NOTICE):
            return True
        log.info("ray: %s", record.getMessage())
        return False


def _connect(address: str, namespace: str, local: int | None = None) -> None:
    try:
        import ray
    except ImportError:
        raise ConfigError("streamer cluster needs Ray: pip install -e '.[cluster]'") from None
    auth = logging.getLogger(RAY_AUTH_LOGGER)
    if not any(isinstance(f, _RayAuthNotice) for f in auth.filters):
        auth.addFilter(_RayAuthNotice())
    options: dict[str, Any] = {"namespace": namespace, "log_to_driver": False, "configure_logging": False}
    if local is not None:
        ray.init(include_dashboard=False, **options)
        return
    try:
        ray.init(address=address, **options)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise ConfigError(f"cannot reach the Ray cluster at {address}: {exc}") from None


def site_mqtt(args: argparse.Namespace) -> MqttConfig:
    """The site's broker settings as ``cluster run`` reads them: ``--config``'s ``[mqtt]``, the flags over it."""
    return mqtt_settings(getattr(args, "config", None), flag_values(args, f"cluster {args.cluster}")["mqtt"])


async def cluster_command(args: argparse.Namespace) -> int:
    options = ClusterOptions(**values_from(args, ClusterOptions))
    if args.cluster == "run":
        return await _run(args, options)
    mqtt = site_mqtt(args)
    namespace = namespace_for(mqtt.prefix)
    _connect(options.address, namespace)
    workers = find_workers(namespace)
    if not workers:
        print(_no_workers(args, options.address, mqtt.prefix, namespace), file=sys.stderr)
    if args.cluster == "stop":
        await stop_workers(workers)
        print(f"stopped {len(workers)} worker(s) of prefix '{mqtt.prefix}'")
        if workers and mqtt.url is not None:
            await _mark_offline(mqtt)
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
    if not rows:
        return EXIT_OK
    print(f"{'worker':<16} {'node':<10} {'pid':>7} {'streams':>7} {'p99 ms':>7}  stream ids")
    for r in rows:
        if "error" in r:
            print(f"{r['id']:<16} {r['error']}")
            continue
        p99 = r.get("latency_p99_ms")
        print(f"{r['id']:<16} {r['node'][:8]:<10} {r['pid']:>7} {len(r['streams']):>7} "
              f"{'-' if p99 is None else round(p99):>7}  {', '.join(sorted(r['streams']))}")  # fmt: skip
    return EXIT_OK


def _no_workers(args: argparse.Namespace, address: str, prefix: str, namespace: str) -> str:
    """Why the table is empty, most often: the prefix is not the site's."""
    config = getattr(args, "config", None)
    said = "--prefix" if getattr(args, "prefix", None) else f"--config {config}" if config else "the default"
    where = f"the Ray cluster at {address}"
    text = f"no workers under prefix '{prefix}' ({said}; Ray namespace {namespace}) on {where}"
    ask = "is the prefix right? (--config FILE / --prefix)"
    others = sorted(site_namespaces() - {namespace})
    if others:
        return f"{text}; Ray namespaces with workers: {', '.join(others)}: {ask}"
    return f"{text}: is the site running, and {ask}"


async def _mark_offline(mqtt: MqttConfig) -> None:
    """What a driver publishes when it stops its site: the layout cleared, ``{prefix}/status`` offline
    (retained). A detached site has no driver left to say it."""
    import aiomqtt

    from pipelines.stages.mqtt import mqtt_client

    topics = Topics(mqtt.prefix)
    try:
        async with asyncio.timeout(OFFLINE_TIMEOUT):
            async with mqtt_client(mqtt, OFFLINE_TIMEOUT) as client:
                await client.publish(topics.cluster, b"", qos=1, retain=True)
                await client.publish(topics.status, b"offline", qos=1, retain=True)
    except (aiomqtt.MqttError, OSError, TimeoutError, ConfigError) as exc:
        log.warning("the site's status not set offline on %s: %s", mqtt.display_url, exc or type(exc).__name__)


async def _run(args: argparse.Namespace, options: ClusterOptions) -> int:
    config = analyzer_config(args, args.sources, args.config)
    namespace = namespace_for(config.mqtt.prefix)
    _connect(options.address, namespace, options.local)
    reload = (lambda: analyzer_config(args, args.sources, args.config)) if args.config else None
    driver = ClusterDriver(config, namespace, options, watch=args.config, reload=reload)
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, driver.stop)
    print(f"streamer cluster: {len(config.streams)} stream(s), namespace {namespace}", file=sys.stderr)
    return await driver.run()
