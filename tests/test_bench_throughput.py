"""`streamer bench throughput` engine: a short run on a small clip gives a well-formed report (no timing asserts)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipelines.bench.options import ThroughputOptions
from pipelines.bench.throughput import Progress, format_table, make_clip, media_duration, run_throughput, worker


@pytest.fixture(scope="module")
def small_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_clip(tmp_path_factory.mktemp("clip") / "small.mp4", 2.0, width=320, height=180, fps=30)


def test_clip_and_decode_worker(small_clip: Path) -> None:
    assert media_duration(small_clip) == pytest.approx(2.0, abs=0.1)
    m = worker("decode", 2, [small_clip])
    assert m["mode"] == "decode" and m["streams"] == 2
    assert m["media_s"] == pytest.approx(2 * media_duration(small_clip))
    assert m["timesteps"] == 2 * round(media_duration(small_clip) / 0.1)
    assert m["frames"] > 2 * 60  # every video frame and the audio frames of both streams
    assert m["wall_s"] > 0 and m["cpu_s"] >= 0 and m["max_rss_mb"] > 0
    json.dumps(m)


def test_short_run_report(small_clip: Path) -> None:
    seen: list[Progress] = []
    options = ThroughputOptions(streams=(1, 2), repeats=1, device="cpu")
    report = run_throughput([small_clip], options, on_progress=seen.append)

    assert [(p.mode, p.streams) for p in seen] == [("decode", 1), ("analyze", 1), ("decode", 2), ("analyze", 2)]
    assert all(str(p).startswith(f"[{p.step}/4]") for p in seen)
    assert set(report["machine"]) >= {"cpus", "platform", "python", "torch", "av", "date"}
    assert report["machine"]["cpus"] >= 1
    assert [Path(m["path"]) for m in report["media"]] == [small_clip]
    assert [r["streams"] for r in report["results"]] == [1, 2]
    for r in report["results"]:
        n = r["streams"]
        for mode in ("decode", "analyze"):
            m = r[mode]
            for key in ("wall_s", "max_rss_mb", "media_s", "timesteps_per_s", "realtime_factor"):
                assert m[key] > 0, (mode, key, m)
            assert m["cpu_s"] >= 0 and m["cpu_share"] >= 0
            assert m["media_s"] == pytest.approx(n * media_duration(small_clip), rel=1e-3)
            assert len(m["runs_wall_s"]) == 1
            # CPU per media second, the measuring process's own and its ingest processes' apart
            parts = m["own_cpu_ms_per_media_s"] + m["ingest_cpu_ms_per_media_s"]
            assert m["cpu_ms_per_media_s"] == pytest.approx(parts, rel=1e-3, abs=1e-3)
        assert r["decode"]["ingest_cpu_ms_per_media_s"] == 0  # plain decoding: threads of its own process
        assert r["analyze"]["ingest_cpu_ms_per_media_s"] > 0  # the analyzer decodes in ingest processes
        assert r["decode"]["media_s"] == r["analyze"]["media_s"]  # same media, same N
        # every timestep of every stream scored (the last may be partial), as many as decode-only counts
        assert abs(r["analyze"]["timesteps"] - r["decode"]["timesteps"]) <= n
        assert r["analyze"]["device"] == "cpu"
        assert r["analyze"]["import_s"] > 0
        assert r["ratio"] > 0
        for key in ("timesteps_per_s", "realtime_factor", "cpu_share", "max_rss_mb"):
            assert r[key] == r["analyze"][key]
    json.dumps(report)

    table = format_table(report)
    rows = [line.split() for line in table.splitlines()]
    assert rows[0][0] == "streams"
    for r in report["results"]:
        assert sum(1 for row in rows if row and row[0] == str(r["streams"])) == 1, table
        row = next(row for row in rows if row and row[0] == str(r["streams"]))
        assert f"{r['ratio']:.3f}" in row


def test_several_media_round_robin(small_clip: Path, tmp_path: Path) -> None:
    other = make_clip(tmp_path / "other.mp4", 1.0, width=160, height=90, fps=15)
    m = worker("decode", 3, [small_clip, other])
    assert m["media_s"] == pytest.approx(2 * media_duration(small_clip) + media_duration(other))


def test_bad_arguments(small_clip: Path) -> None:
    with pytest.raises(ValueError):
        run_throughput([small_clip], ThroughputOptions(streams=(0,)))
    with pytest.raises(ValueError):
        run_throughput([small_clip], ThroughputOptions(streams=(1,), repeats=0))
    with pytest.raises(FileNotFoundError):
        run_throughput([small_clip.with_name("missing.mp4")], ThroughputOptions(streams=(1,)))
