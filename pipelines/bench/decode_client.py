"""The latency benchmark's floor: a decode-only client that reports when each impulse comes out of the decoder.

    python -m pipelines.bench.decode_client URL [--seconds S] [--hwaccel TYPE]

Reads the stream through the same ingest as the analyzer (:class:`streamer.source.Source`: demux, decode,
luma, resample; no sync, no model), decoding every picture in full (with the deblocking filter, which the
analyzer skips: plain decoding, the floor every peer pays), and prints one JSON line per impulse and modality
as soon as it is decoded: ``{"modality": "video", "wall": 1795401134.217, "t": 4.03}`` (``wall``: unix time
the frame left the decoder; ``t``: media time); first, once media flows, one line with ``"modality":
"online"``. A video impulse is a frame whose middle quarter's mean luma rises above ``FLASH_LUMA`` (a
whole-picture flash or the box of ``--impulse box``); an audio impulse an audio chunk whose RMS rises above
``TONE_DBFS`` (each counted once per rise).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import sys

import numpy as np

from streamer.media import AudioChunk, VideoFrame
from streamer.options import SourceOptions
from streamer.source import Source
from streamer.spec import parse_source

FLASH_LUMA = 128.0
TONE_DBFS = -30.0


async def watch(url: str, seconds: float | None, hwaccel: str | None = None) -> None:
    source = Source(parse_source(f"floor={url}"), SourceOptions(hwaccel=hwaccel, fast_decode=False))
    flashing = toning = False
    loop = asyncio.get_running_loop()
    deadline = None if seconds is None else loop.time() + seconds

    def emit(modality: str, wall: float, t: float) -> None:
        sys.stdout.write(json.dumps({"modality": modality, "wall": wall, "t": round(t, 4)}) + "\n")
        sys.stdout.flush()

    online = False
    async for item in source:
        if not online and isinstance(item, VideoFrame | AudioChunk):
            online = True  # media flows: the bench counts impulses from a grace period after every client's
            emit("online", item.wall_time, item.t)
        if isinstance(item, VideoFrame):
            h, w = item.luma.shape
            bright = float(item.luma[h // 4 : 3 * h // 4, w // 4 : 3 * w // 4].mean()) > FLASH_LUMA
            if bright and not flashing:
                emit("video", item.wall_time, item.t)
            flashing = bright
        elif isinstance(item, AudioChunk) and len(item.samples):
            rms = math.sqrt(float(np.mean(np.square(item.samples, dtype=np.float64))))
            loud = rms > 0 and 20 * math.log10(rms) > TONE_DBFS
            if loud and not toning:
                emit("audio", item.wall_time, item.t)
            toning = loud
        if deadline is not None and loop.time() > deadline:
            break


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("url")
    parser.add_argument("--seconds", type=float)
    parser.add_argument("--hwaccel", help="decode video on this hardware device (as streamer run --hwaccel)")
    args = parser.parse_args()
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(watch(args.url, args.seconds, args.hwaccel))
    return 0


if __name__ == "__main__":
    sys.exit(main())
