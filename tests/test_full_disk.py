"""A full disk under the clips and the events-out file, with a real (small) file system: one line per stream
and cause, every event still published to a real mosquitto, the file holding whole lines only, and the run
ending as usual."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.analyzer_run import start_streamer, subscribe
from tests.test_clips import IMPULSES, impulse_clip


@contextlib.contextmanager
def small_disk(folder: Path, size_kb: int) -> Iterator[Path]:
    """A tmpfs of ``size_kb`` mounted at ``folder`` (needs root, as CI's machines run the tests)."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small file system needs root")
    folder.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_kb}k", "tmpfs", str(folder)], check=True,
                   capture_output=True, timeout=30)  # fmt: skip
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False, capture_output=True, timeout=30)


def fill(folder: Path, leave: int) -> None:
    """Write a filler file until only about ``leave`` bytes are free."""
    stat = os.statvfs(folder)
    free = stat.f_bavail * stat.f_frsize
    with (folder / "filler").open("wb") as f:
        f.write(b"\0" * max(0, free - leave))


async def test_a_full_disk_is_one_line_per_stream_and_cause_and_every_event_is_published(
    tmp_path: Path, mqtt_broker: Any
) -> None:
    sources = [impulse_clip(tmp_path / f"{name}.mp4") for name in ("door", "yard")]
    broker = mqtt_broker()
    with small_disk(tmp_path / "disk", 512) as disk, small_disk(tmp_path / "lines", 64) as lines:
        fill(disk, 16384)  # no room for a clip
        fill(lines, 4096)  # room for a few event lines: a page
        out = lines / "events.jsonl"
        earlier = [json.dumps({"type": "start", "earlier": "x" * 460}) for _ in range(6)]  # a run before
        out.write_text("".join(line + "\n" for line in earlier))  # 2.9 KB of the page: a few lines fit after
        async with subscribe(broker.host, broker.port, "test/+/events") as got:
            proc = await start_streamer("run", f"door={sources[0]}", f"yard={sources[1]}", "--mqtt", broker.url,
                                        "--prefix", "test", "--events-out", str(out), "--clips", str(disk / "clips"),
                                        "-q")  # fmt: skip
            _, err_bytes = await proc.communicate()
        err = err_bytes.decode()
        assert proc.returncode == 0, err[-3000:]
        for stream in ("door", "yard"):  # every event, start and end, published
            kinds = [m.json()["type"] for m in got.on(f"test/{stream}/events")]
            assert kinds.count("start") == kinds.count("end") == len(IMPULSES), (stream, kinds)
            lines = [line for line in err.splitlines() if f"stream '{stream}': no clip" in line]
            assert len(lines) == 1 and "no space left on device" in lines[0].lower(), err[-3000:]
        said = [line for line in err.splitlines() if "events-out" in line]
        assert len(said) == 2 and "no space left on device" in said[0], err[-3000:]
        assert "line(s) could not be written" in said[1]  # and how many, at the end
        written = out.read_text().splitlines()
        assert written[: len(earlier)] == earlier
        assert len(earlier) < len(written) < len(earlier) + 4 * len(IMPULSES)  # some went in before it filled
        assert all(json.loads(line)["type"] in ("start", "end", "update") for line in written)  # whole lines only
        assert not [p for p in (disk / "clips").rglob("*") if p.is_file() and p.stat().st_size]  # no clip half-kept
    assert "Traceback" not in err, err[-3000:]
