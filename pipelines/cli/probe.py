"""``streamer probe``: what a source carries and, with ``--timeline``, one JSON line per timestep.

The first line describes the source (stream id, redacted uri, codecs, sizes, rates). Each timeline line reads
``{"k": 0, "t": 0.0, "frames": 3, "samples": 1600, "luma": 41.2, "rms_dbfs": -48.1}``: the timestep's index and
start (media seconds), its video frames and audio samples, their mean luma (0-255) and RMS level (dBFS);
``null`` where a modality is missing, plus ``"repeated": true`` when the previous frame stands in.
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Callable
from typing import Any, TextIO

import numpy as np

from streamer.media import StateChange, StreamInfo, Timestep
from streamer.options import SourceOptions
from streamer.source import Source, first_info
from streamer.spec import SourceSpec
from streamer.stream import Stream
from streamer.sync import SyncOptions

SILENCE_DBFS = -120.0  # what digital silence reads as


def timestep_summary(ts: Timestep) -> dict[str, Any]:
    samples = ts.audio
    line: dict[str, Any] = {
        "k": ts.k,
        "t": round(ts.t, 6),
        "frames": 0 if ts.video_repeated else len(ts.frames),
        "samples": 0 if ts.audio_missing else len(samples),
        "luma": round(float(np.mean([f.luma.mean() for f in ts.frames])), 1) if ts.frames else None,
        "rms_dbfs": None,
    }
    if not ts.audio_missing and len(samples):
        rms = math.sqrt(float(np.mean(np.square(samples, dtype=np.float64))))
        line["rms_dbfs"] = round(max(SILENCE_DBFS, 20 * math.log10(rms)) if rms > 0 else SILENCE_DBFS, 1)
    if ts.video_repeated:
        line["repeated"] = True
    return line


async def probe(
    spec: SourceSpec,
    options: SourceOptions,
    sync: SyncOptions,
    *,
    timeline: bool,
    seconds: float | None,
    out: TextIO = sys.stdout,
    on_state: Callable[[StateChange], None] | None = None,
) -> None:
    def emit(obj: dict[str, Any]) -> None:
        out.write(json.dumps(obj) + "\n")
        out.flush()

    if not timeline:
        info = await first_info(Source(spec, options, on_state=on_state))
        emit(info.as_dict())
        return
    infos: list[StreamInfo] = []

    def on_info(info: StreamInfo) -> None:
        if not infos:
            emit(info.as_dict())
        infos.append(info)

    async for ts in Stream(spec, options, sync, on_state=on_state, on_info=on_info):
        if seconds is not None and ts.t >= seconds - 1e-9:
            break
        emit(timestep_summary(ts))
