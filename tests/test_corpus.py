"""Malformed media (:mod:`pipelines.bench.corpus`, made here from real encodes) through one real ``streamer run``
with a real mosquitto, beside a healthy stream: each case is analyzed as far as it goes or ends in one line naming
its stream and the cause, the healthy stream's event is found, the run ends in bounded time with no process left
behind and bounded memory."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import psutil

from pipelines.bench.corpus import ANALYZED, EITHER, FAILED, build, encode
from tests.analyzer_run import start_streamer, subscribe

RSS_LIMIT_MB = 4096  # the whole tree: the analyzer (torch) and its ingest processes, about 1.5 GB usually


async def test_every_malformed_case_is_analyzed_or_one_line_and_the_others_go_on(
    tmp_path: Path, mqtt_broker: Any
) -> None:
    cases = build(tmp_path / "corpus")
    healthy = encode(tmp_path / "healthy.mp4", event=3.0)
    broker = mqtt_broker()
    tree: dict[int, psutil.Process] = {}
    peak_mb = 0.0
    async with subscribe(broker.host, broker.port, "test/#") as got:
        proc = await start_streamer("run", f"healthy={healthy}", *(f"{c.name}={c.path}" for c in cases), "--mqtt",
                                    broker.url, "--prefix", "test", "--stats-interval", "0.5", "-q")  # fmt: skip
        async with asyncio.timeout(150):
            while proc.returncode is None:
                try:
                    root = psutil.Process(proc.pid)
                    for p in [root, *root.children(recursive=True)]:
                        tree.setdefault(p.pid, p)
                    peak_mb = max(peak_mb, sum(p.memory_info().rss for p in tree.values() if p.is_running()) / 2**20)
                except psutil.Error:
                    pass
                await asyncio.sleep(0.2)
            _, err_bytes = await proc.communicate()
        await asyncio.sleep(0.5)
    err = err_bytes.decode()
    assert proc.returncode == 3, err[-3000:]  # some streams failed, the run did not
    assert "Traceback" not in err, err[-4000:]
    assert not [p for p in tree.values() if p.is_running() and p.status() != psutil.STATUS_ZOMBIE], "left behind"
    assert peak_mb < RSS_LIMIT_MB, peak_mb
    reached: dict[str, float] = {}
    for message in got.on("test/stats"):
        for stream, figures in message.json()["streams"].items():
            reached[stream] = max(reached.get(stream, 0.0), figures.get("media_t") or 0.0)
    starts = [m.json() for m in got.on("test/healthy/events") if m.json()["type"] == "start"]
    assert [round(s["t"]) for s in starts] == [3], json.dumps(starts)  # the healthy stream, untouched
    outcomes: dict[str, str] = {}
    for case in cases:
        lines = [line for line in err.splitlines() if f"stream '{case.name}'" in line]
        failed = len(lines) == 1
        assert len(lines) <= 1, (case.name, lines)  # never more than one line a stream
        outcomes[case.name] = f"{'failed: ' + lines[0] if failed else 'analyzed'} to {reached.get(case.name)}"
        if case.expect == FAILED:
            assert failed and case.why in lines[0], (case.name, outcomes[case.name])
        elif case.expect == ANALYZED:  # as far as it goes: a file cut short says so, in its one line
            assert reached.get(case.name, 0.0) >= case.min_t, (case.name, outcomes[case.name])
            cut = case.name.startswith(("ts_cut", "mkv_cut"))
            assert not failed or (cut and "file is truncated" in lines[0]), (case.name, outcomes[case.name])
        else:
            assert case.expect == EITHER
        statuses = [m.payload.decode() for m in got.on(f"test/{case.name}/status")]
        assert statuses[-1:] == ["ended"] or failed, (case.name, statuses)
