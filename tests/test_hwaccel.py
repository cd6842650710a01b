"""Hardware video decoding (``hwaccel``, :mod:`streamer.hwaccel`): asked for where no device opens, a stream
decodes in software with one warning; a setting this FFmpeg has no device type for is refused naming the key; on
a machine with an NVIDIA GPU (the device tool's), a stream decodes on it and reads the same pictures."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from streamer import hwaccel
from streamer.media import StreamInfo, Timestep
from streamer.options import SourceOptions
from streamer.spec import parse_source
from streamer.stream import Stream
from tests.helpers import collect
from tests.media import make_clip

CUDA_OPENS = "cuda" in hwaccel.device_types() and hwaccel._resolve("cuda")[0] is not None


async def _decode(clip: Path, setting: str | None, **options: Any) -> tuple[list[Timestep], list[StreamInfo]]:
    infos: list[StreamInfo] = []
    stream = Stream(parse_source(f"cam={clip}"), SourceOptions(hwaccel=setting, **options), on_info=infos.append)
    return await collect(stream), infos


@pytest.mark.skipif(CUDA_OPENS, reason="a CUDA device opens here: test_a_stream_decodes_on_the_gpu covers it")
@pytest.mark.parametrize("setting", ["cuda", "auto"])
async def test_a_device_that_does_not_open_leaves_the_stream_decoding_in_software(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, setting: str
) -> None:
    """The same timesteps as software decoding, the stream says it decodes in software, and why is said once
    (a warning for a device asked for by name, an info line for ``auto``) however often the stream opens."""
    clip = make_clip(tmp_path / "c.mp4", duration=2.0, flashes=[1.0])
    software, _ = await _decode(clip, None)
    caplog.set_level(logging.INFO, logger="streamer")
    steps, infos = await _decode(clip, setting)
    again, _ = await _decode(clip, setting)  # a second connection of the same stream: nothing said again
    assert infos and infos[0].video is not None and infos[0].video.hwaccel is None
    assert len(steps) == len(software) == len(again) > 0
    for ours, theirs in zip(steps, software, strict=True):
        assert [f.t for f in ours.frames] == [f.t for f in theirs.frames]
        assert all(np.array_equal(a.luma, b.luma) for a, b in zip(ours.frames, theirs.frames, strict=True))
    said = [r for r in caplog.records if "decoding in software" in r.getMessage()]
    assert len(said) == 1, [r.getMessage() for r in said]
    assert said[0].getMessage().startswith("stream 'cam': ")
    assert said[0].levelno == (logging.INFO if setting == "auto" else logging.WARNING)


@pytest.mark.skipif(CUDA_OPENS, reason="a CUDA device opens here")
def test_probe_says_where_a_stream_decodes_and_why_not_on_the_device(tmp_path: Path) -> None:
    """From the command line: the description says the CPU decodes it, stderr says why in one line, exit 0; a
    bench refuses a device type there is not in one line, exit 2."""
    clip = make_clip(tmp_path / "door.mp4", duration=1.0)
    done = subprocess.run([sys.executable, "-m", "pipelines.cli.main", "probe", str(clip), "--hwaccel", "cuda"],
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["video"]["hwaccel"] is None
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("streamer: stream 'door': hardware decoding on cuda is unavailable")
    refused = subprocess.run([sys.executable, "-m", "pipelines.cli.main", "bench", "capacity", "--hwaccel", "nosuch"],
                             capture_output=True, text=True, timeout=60)  # fmt: skip
    assert refused.returncode == 2
    assert refused.stderr.count("\n") == 1 and "error: bench capacity: --hwaccel: 'nosuch' is not" in refused.stderr


def test_the_settings_there_are() -> None:
    """``none`` is software, ``auto`` and each device type of this FFmpeg stay as they are, anything else is
    refused in one line naming what there is (the config file says which stream and key: test_config.py)."""
    types = hwaccel.device_types()
    for setting in ("none", "auto", *types, *(f"{kind}:1" for kind in types[:1])):
        assert hwaccel.check(setting) == (None if setting == "none" else setting)
    with pytest.raises(ValueError, match=r"^hwaccel: 'nosuch' is not a hardware device type .*; it has: ") as caught:
        SourceOptions(hwaccel="nosuch")
    assert "\n" not in str(caught.value)


@pytest.mark.skipif(not CUDA_OPENS, reason="needs an NVIDIA GPU and its driver (run on the device tool)")
async def test_a_stream_decodes_on_the_gpu(tmp_path: Path) -> None:
    """NVDEC decodes the clip; its pictures' luma is the software decoder's (H.264 decoding is exact, the
    copy back to memory is NV12 whose luma plane is read in place)."""
    clip = make_clip(tmp_path / "c.mp4", duration=2.0, flashes=[1.0])
    # both with the deblocking filter: skipping it (fast_decode, on for MP4 files) is the software decoder's option
    software, _ = await _decode(clip, None, fast_decode=False)
    steps, infos = await _decode(clip, "cuda", fast_decode=False)
    assert infos[0].video is not None and infos[0].video.hwaccel == "cuda"
    assert len(steps) == len(software)
    for ours, theirs in zip(steps, software, strict=True):
        for a, b in zip(ours.frames, theirs.frames, strict=True):
            assert np.abs(a.luma.astype(int) - b.luma.astype(int)).mean() < 1.0
