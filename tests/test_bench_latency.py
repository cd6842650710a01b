"""``streamer bench latency``: the matching on hand-made observations, and a short real run end to end."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from pipelines.bench.latency import Impulse, Observations, analyze, format_report
from pipelines.bench.options import LatencyOptions

from .analyzer_run import STREAMER

# `make test` runs these alone, after the others: an analyzer timed against the wall clock starves when another
# heavy test file shares the 2 cores (two of five parallel runs missed impulses)
pytestmark = pytest.mark.live_heavy


def test_matching_impulses_to_decodes_and_events() -> None:
    obs = Observations(
        impulses=[Impulse(0, 100.000, 100.001), Impulse(1, 102.000, 102.000), Impulse(2, 104.0, 104.0)],
        decoded=[("video", 100.040), ("audio", 100.006), ("video", 102.050), ("audio", 102.010), ("audio", 104.01)],
        events=[
            ("s0", 100.100, {"type": "start"}),
            ("s0", 100.900, {"type": "end"}),
            ("s0", 102.120, {"type": "start"}),
            ("s0", 103.000, {"type": "start"}),  # the second: spurious
        ],
        stats={"device": "cpu", "latency_ms": {"model": {"p50": 1.0, "p99": 2.0}}},
    )
    report = analyze(LatencyOptions(streams=1, impulses=3), obs, start=99.0)
    assert report["counts"] == {"impulses": 3, "events": 2, "missed": 1, "spurious": 1}
    assert report["samples"]["event_ms"] == pytest.approx([100.0, 120.0])
    assert report["samples"]["video_ms"] == pytest.approx([40.0, 50.0])
    assert report["samples"]["audio_ms"] == pytest.approx([5.0, 10.0, 10.0])
    assert report["samples"]["added_ms"] == pytest.approx([60.0, 70.0])  # minus the later modality's decode
    assert report["analyzer_added_ms"]["p50"] == pytest.approx(65.0)
    assert report["targets"] == {"added_p50_ms": 65.0, "added_p99_ms": 140.0}
    table = format_report(report)
    assert "added by the analyzer" in table and "targets: added p50 <= 65 ms met" in table


@pytest.mark.timeout(240)
def test_a_short_real_run_gives_a_well_formed_report(tmp_path: Path, rtsp_server: Any, mqtt_broker: Any) -> None:
    """Real processes (the fixtures only make sure the Debian packages are there): 4 impulses, 1.5 s apart (with the
    0.5 s jitter, at least 1 s: more than the default min_gap, so each impulse is its own event)."""
    out, plot = tmp_path / "latency.json", tmp_path / "latency.png"
    result = subprocess.run(
        [*STREAMER, "bench", "latency", "--impulses", "4", "--interval", "1.5",
         "--device", "cpu", "--json", str(out), "--plot", str(plot), "--workdir", str(tmp_path / "work")],
        capture_output=True, text=True, timeout=200,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(out.read_text())
    assert report["counts"]["impulses"] == 4
    # Every impulse is its own event (one miss allowed for a starved machine). With a faint pure tone between
    # impulses, about 1 run in 4 caught 0-2: Opus switched the noise in the tone's empty bands on and off, heard
    # as sounds, and one such event swallowed impulses (the server now sends pink noise; the model's audibility
    # floor, tests/test_detection_quality.py, keeps such codec noise from being heard).
    assert report["counts"]["events"] >= 3 and report["counts"]["spurious"] == 0, report["samples"]
    for key in ("event_latency_ms", "decode_video_ms", "decode_audio_ms", "floor_ms", "analyzer_added_ms"):
        assert set(report[key]) == {"n", "p50", "p95", "p99", "max"}, key
    assert report["event_latency_ms"]["p50"] > 0
    assert {"sync", "batch", "model", "publish"} <= set(report["stages_ms"])
    cpu = report["cpu_ms_per_media_s"]  # the analyzer's process and its ingest process, apart
    assert cpu["analyzer"] > 0 and cpu["ingest"] > 0, cpu
    assert cpu["total"] == pytest.approx(cpu["analyzer"] + cpu["ingest"], abs=0.02)
    assert "CPU per stream, ms a second of media: analyzer" in result.stdout
    assert "glass to event" in result.stdout and plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.timeout(240)
def test_av_box_impulses_at_a_high_threshold_are_each_one_event(tmp_path: Path, rtsp_server: Any,
                                                                 mqtt_broker: Any) -> None:  # fmt: skip
    """Issue 13: a white box over a quarter of the picture with a tone, at alpha = beta = 0.5 and threshold 0.6:
    S reaches it only when motion and sound count together, whatever the impulse's phase against the timestep
    grid (the jitter spreads them over it). Six impulses, of which four must start an event: a stream whose
    first seconds held several impulses (the server sends them from its start, every 1.5 s) may take them for its
    usual sound and miss the first two counted (2 of 4 in about one run in five, on the code before and after
    2026-12-06); from the third on each is caught."""
    out = tmp_path / "latency.json"
    result = subprocess.run(
        [*STREAMER, "bench", "latency", "--impulses", "6", "--interval", "1.5",
         "--impulse", "box", "--threshold", "0.6", "--device", "cpu", "--json", str(out), "--workdir",
         str(tmp_path / "work")],
        capture_output=True, text=True, timeout=200,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(out.read_text())
    assert report["options"]["impulse"] == "box" and report["counts"]["impulses"] == 6
    assert report["counts"]["events"] >= 4 and report["counts"]["spurious"] == 0, report["counts"]
    # decided on the frame: a box and its tone start their event before their timestep closes (issue 30)
    assert report["early"]["early_starts"] >= 1 and report["early"]["provisional"] >= 1, report["early"]
