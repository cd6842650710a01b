"""``streamer probe`` as users run it: a real subprocess, JSON on stdout, one-line errors on stderr."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from .analyzer_run import STREAMER
from .media import make_clip


def probe(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*STREAMER, "probe", *args], capture_output=True, text=True, timeout=timeout)


def test_timeline_of_the_synthetic_source() -> None:
    result = probe("synthetic:?events=av@0.5&duration=1&realtime=0", "--timeline")
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    info, steps = lines[0], lines[1:]
    assert info["stream"] == "synthetic" and info["video"]["fps"] == 30.0 and info["audio"]["sample_rate"] == 16000
    assert [s["k"] for s in steps] == list(range(10))
    assert set(steps[0]) == {"k", "t", "frames", "samples", "luma", "rms_dbfs"}
    assert steps[0]["frames"] == 3 and steps[0]["samples"] == 1600
    assert steps[4]["rms_dbfs"] < -40 < steps[5]["rms_dbfs"]  # the tone starts at 0.5 s
    assert steps[5]["luma"] > steps[4]["luma"] + 5  # and the square with it


def test_file_description_and_seconds_and_hop(tmp_path: Path) -> None:
    clip = make_clip(tmp_path / "door.mkv", duration=2.0, width=320, height=240)
    result = probe(str(clip))
    info = json.loads(result.stdout)
    assert info["stream"] == "door" and info["kind"] == "file" and not info["live"]
    assert info["video"] == {"codec": "h264", "width": 320, "height": 240, "fps": 30.0, "hwaccel": None}
    assert info["audio"]["codec"] == "aac" and info["audio"]["sample_rate"] == 48000
    result = probe(f"front={clip}", "--timeline", "--seconds", "1", "--hop-ms", "250")
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert lines[0]["stream"] == "front"
    assert [(s["k"], s["t"], s["samples"]) for s in lines[1:]] == [(k, k * 0.25, 4000) for k in range(4)]


def test_errors_are_one_line_with_the_stream_and_an_exit_code(tmp_path: Path) -> None:
    result = probe(str(tmp_path / "gone.mp4"))
    assert result.returncode == 3
    assert result.stderr.strip().splitlines() == [
        f"streamer: error: stream 'gone': cannot open {tmp_path}/gone.mp4: no such file"
    ]
    result = probe("bad+name=synthetic:")
    assert result.returncode == 2 and "invalid stream name" in result.stderr and "Traceback" not in result.stderr
    result = probe("synthetic:?fps=zero")
    assert result.returncode == 2 and "fps='zero'" in result.stderr


def test_credentials_never_reach_the_output() -> None:
    result = probe("cam=rtsp://admin:hunter2@127.0.0.1:9/stream", "--timeline", timeout=30)
    assert result.returncode == 3
    assert "hunter2" not in result.stdout + result.stderr
    assert "rtsp://admin:***@127.0.0.1:9/stream" in result.stderr and "connection refused" in result.stderr.lower()


def test_probe_stays_light() -> None:
    code = "import sys, pipelines.cli.main, pipelines.cli.probe; sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], timeout=60).returncode == 0
