"""``streamer bench capacity``: the search over stream counts and what a probe passing means."""

from __future__ import annotations

from typing import Any

import pytest

from pipelines.bench.capacity import passed, search


@pytest.mark.parametrize(("capacity", "start", "limit", "step", "expected"), [
    (24, 8, 128, 4, 24),  # 8, 16, 32 (fails), then 24, 28 (fails): 24
    (27, 8, 128, 4, 24),  # within a step below the true figure
    (5, 8, 128, 2, 4),  # the start fails: bisect below it
    (0, 8, 128, 4, 0),  # nothing passes
    (500, 8, 64, 4, 64),  # everything passes: the limit
])  # fmt: skip
async def test_the_search_doubles_then_bisects_to_the_step(
    capacity: int, start: int, limit: int, step: int, expected: int
) -> None:
    tried: list[int] = []

    async def probe(n: int) -> bool:
        tried.append(n)
        return n <= capacity

    found = await search(probe, start, limit, step)
    assert found == expected, tried
    assert found == 0 or found <= capacity < found + step or found == limit, tried
    assert len(tried) == len(set(tried)), tried  # no count probed twice


def _report(missed: int, p99: float | None, *, decode: bool) -> dict[str, Any]:
    figures = {"n": 1, "p50": p99, "p95": p99, "p99": p99, "max": p99}
    if decode:
        return {"options": {"hop_ms": 100.0}, "decoders": {"missed": missed, "floor_ms": figures}}
    return {"options": {"hop_ms": 100.0}, "counts": {"missed": missed}, "analyzer_added_ms": figures}


def test_a_probe_passes_when_every_impulse_is_caught_within_hop_plus_80_ms() -> None:
    for decode in (True, False):
        assert passed(_report(0, 179.0, decode=decode), decode_only=decode)
        assert not passed(_report(0, 181.0, decode=decode), decode_only=decode)
        assert not passed(_report(1, 100.0, decode=decode), decode_only=decode)
        assert not passed(_report(0, None, decode=decode), decode_only=decode)


def test_the_table_gives_each_probes_cpu_a_stream_the_analyzers_process_and_ingest_apart() -> None:
    from pipelines.bench.capacity import format_capacity

    def probe(mode: str, n: int, cpu: dict[str, float] | None) -> dict[str, Any]:
        return {"mode": mode, "streams": n, "passed": True, "missed": 0, "p50_ms": 50.0, "p99_ms": 90.0,
                "dropped": 0, "cpu_ms_per_media_s": cpu}  # fmt: skip

    report = {
        "options": {"width": 640, "height": 360, "fps": 30, "audio_frame_ms": 10, "impulses": 6},
        "budget_ms": 180.0, "decode_only_streams": 16, "analyzer_streams": 16, "ratio": 1.0,
        "probes": [probe("decode-only", 16, {"decode_only": 31.25}),
                   probe("analyzer", 16, {"analyzer": 4.5, "ingest": 33.0, "total": 37.5}),
                   probe("analyzer", 24, None)],
    }  # fmt: skip
    lines = format_capacity(report).splitlines()
    assert lines[1].endswith("CPU ms/s a stream")
    assert lines[2].endswith("  31.2") and lines[3].endswith("  37.5 (4.5 + 33.0)") and lines[4].endswith("  -")
