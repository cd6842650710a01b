"""Fuzzing, seeded and bounded (hypothesis with ``derandomize``: the same examples on every run): MQTT commands
(``{prefix}/{stream}/set`` payloads, any bytes and any JSON), zone names and the topics built from them, source
URIs; and randomly mutated media through one real ``streamer run`` (``benchmarks/fuzz_media.py`` runs it for
longer)."""

from __future__ import annotations

import asyncio
import json
import random
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipelines.bench.corpus import encode, mutate
from pipelines.config import build_config
from pipelines.stages.control import Control
from pipelines.stages.topics import Topics
from streamer.errors import ConfigError, SourceSpecError
from streamer.spec import parse_source
from tests.analyzer_run import start_streamer

SEEDED = settings(derandomize=True, max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=12,
)
KEYS = st.sampled_from(["enabled", "threshold", "alpha", "beta", "min_gap", "zone_threshold", "zones", "source"])
COMMANDS = st.dictionaries(KEYS | st.text(max_size=8), JSON | st.dictionaries(st.sampled_from(["porch", "x"]), JSON),
                           max_size=4)  # fmt: skip
CONFIG = build_config({"streams": [{"source": "demo:", "name": "door", "zones": [
    {"name": "porch", "polygon": [[0, 0], [1, 0], [1, 1]]}]}]})  # fmt: skip


def control(tmp: Path) -> tuple[Control, list[tuple[str, bytes, bool]], list[Any]]:
    sent: list[tuple[str, bytes, bool]] = []
    applied: list[Any] = []
    configs = {"door": CONFIG.streams[0]}

    def apply(stream_id: str, config: Any) -> None:
        applied.append(config)
        configs[stream_id] = config

    return Control(Topics("t"), tmp / "state.json", lambda: configs, apply,
                   lambda topic, payload, retain: sent.append((topic, payload, retain))), sent, applied  # fmt: skip


@SEEDED
@given(payload=st.binary(max_size=300) | COMMANDS.map(lambda c: json.dumps(c).encode()))
def test_any_command_is_applied_checked_or_refused_in_one_line(tmp_path_factory: Any, payload: bytes) -> None:
    listener, sent, applied = control(tmp_path_factory.mktemp("control"))
    listener.received("t/door/set", payload)
    results = [json.loads(p) for topic, p, _ in sent if topic == "t/door/set/result"]
    assert len(results) == 1
    if results[0]["ok"]:
        (config,) = applied
        assert 0 < config.events.threshold <= 1 and config.alpha >= 0 and config.beta >= 0
        assert all(z.threshold is None or 0 < z.threshold <= 1 for z in config.zones)
    else:
        assert not applied and "\n" not in results[0]["error"] and len(results[0]["error"]) < 400


@SEEDED
@given(name=st.text(max_size=30))
def test_any_zone_name_is_refused_or_makes_one_topic_level(name: str) -> None:
    zones = [{"name": name, "polygon": [[0, 0], [1, 0], [1, 1]]}]
    try:
        config = build_config({"streams": [{"source": "demo:", "name": "door", "zones": zones}]})
    except ConfigError as exc:
        assert "\n" not in str(exc)
        return
    topic = Topics("t").events("door", config.streams[0].zones[0].name)
    assert topic.split("/") == ["t", "door", "zones", name, "events"] and not set("+#\0") & set(topic)


@SEEDED
@given(scheme=st.sampled_from(["rtsp", "rtsps", "http", "https", "udp", "rtmp", "file", "synthetic", "demo", "x"]),
       rest=st.text(max_size=60))  # fmt: skip
def test_any_source_uri_parses_or_is_one_line(scheme: str, rest: str) -> None:
    try:
        spec = parse_source(f"{scheme}://user:pa55word@{rest}")
    except SourceSpecError as exc:
        assert "\n" not in str(exc) and "pa55word" not in str(exc)  # one line, and never the password
        return
    assert ("/" not in spec.stream_id and rest not in spec.redacted) or "@" not in rest.split("/")[0]


async def test_randomly_mutated_media_is_analyzed_or_one_line_each(tmp_path: Path) -> None:
    """24 seeded mutations (cuts, bit flips, zeroed runs, spliced and deleted pieces) of three real encodes in
    one run beside a healthy stream: no traceback, at most one line a stream, the healthy stream's event found."""
    bases = [encode(tmp_path / f"base.{suffix}", fmt="mpegts" if suffix == "ts" else None)
             for suffix in ("mp4", "ts", "mkv")]  # fmt: skip
    rng = random.Random(20261206)
    args = []
    for i in range(24):
        base = bases[i % 3]
        path = tmp_path / f"m{i}{base.suffix}"
        path.write_bytes(mutate(base.read_bytes(), rng))
        args.append(f"m{i}={path}")
    out = tmp_path / "events.jsonl"
    proc = await start_streamer("run", f"healthy={encode(tmp_path / 'healthy.mp4')}", *args, "--mqtt", "none",
                                "--events-out", str(out), "-q")  # fmt: skip
    async with asyncio.timeout(150):
        _, err_bytes = await proc.communicate()
    err = err_bytes.decode()
    assert proc.returncode in (0, 3) and "Traceback" not in err, err[-4000:]
    for i in range(24):
        assert len([line for line in err.splitlines() if f"stream 'm{i}'" in line]) <= 1, err[-4000:]
    events = [json.loads(line) for line in out.read_text().splitlines()]
    assert [round(e["t"]) for e in events if e["stream"] == "healthy" and e["type"] == "start"] == [3]
