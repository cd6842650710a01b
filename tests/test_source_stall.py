"""A live source's own stall check (``Source.__aiter__``): a connection that hands over nothing for ``stall_timeout``
(+1 s) fails and reconnects; one whose consumer is busy elsewhere while data keeps coming does not. RTSP relies on
it since it is read without PyAV's read timeout (``streamer.av_input.read_timeout``)."""

from __future__ import annotations

import asyncio
import time

import numpy as np

from streamer.media import AudioChunk, SourceState, StateChange, StreamInfo
from streamer.options import SourceOptions
from streamer.source import Source
from streamer.spec import parse_source
from streamer.worker import WorkerContext

CHUNK = 0.02  # seconds of audio a chunk


def _open(ctx: WorkerContext) -> None:
    ctx.opened(StreamInfo(ctx.spec.stream_id, ctx.spec.redacted, "network", True, None, None))


def _chunk(i: int) -> AudioChunk:
    return AudioChunk(t=i * CHUNK, samples=np.zeros(320, np.float32), wall_time=time.time())


def _falls_silent(ctx: WorkerContext) -> None:
    """Opens, sends 0.4 s of audio, then stays connected and sends nothing (a stalled camera)."""
    _open(ctx)
    for i in range(20):
        ctx.send(_chunk(i))
        time.sleep(CHUNK)
    ctx.quit.wait()


def _keeps_sending(ctx: WorkerContext) -> None:
    """Sends audio in real time until told to stop."""
    _open(ctx)
    i = 0
    while not ctx.quit.wait(CHUNK):
        ctx.send(_chunk(i))
        i += 1


def _run(source: Source, consume: float, pause_after: int | None = None, pause: float = 0.0) -> None:
    """Iterate ``source`` for ``consume`` seconds; after ``pause_after`` items, stop reading for ``pause``."""

    async def run() -> None:
        async def drain() -> None:
            n = 0
            async for _ in source:
                n += 1
                if n == pause_after:
                    await asyncio.sleep(pause)  # busy elsewhere: the source is not read meanwhile

        task = asyncio.create_task(drain())
        await asyncio.sleep(consume)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    asyncio.run(run())


def test_a_live_source_that_falls_silent_is_failed_as_stalled_and_reconnects() -> None:
    changes: list[StateChange] = []
    options = SourceOptions(stall_timeout=0.5, backoff_initial=0.05, backoff_max=0.1)
    source = Source(parse_source("rtsp://127.0.0.1:9/x"), options, on_state=changes.append, worker=_falls_silent)
    _run(source, consume=6.0)
    stalls = [c for c in changes if c.state is SourceState.RECONNECTING]
    assert stalls, [c.state for c in changes]
    assert stalls[0].detail == "stalled: no data for 2 s"  # stall_timeout + 1 s, rounded
    assert sum(c.state is SourceState.ONLINE for c in changes) >= 2, "it reconnects"


def test_a_consumer_busy_elsewhere_is_not_a_stall_while_data_keeps_coming() -> None:
    """The consumer stops reading for 3 s (three times the stall timeout + 1 s) while the worker keeps sending:
    the data waiting in the queue shows the source is alive."""
    changes: list[StateChange] = []
    options = SourceOptions(stall_timeout=0.5, backoff_initial=0.05, backoff_max=0.1)
    source = Source(parse_source("rtsp://127.0.0.1:9/x"), options, on_state=changes.append, worker=_keeps_sending)
    _run(source, consume=5.0, pause_after=5, pause=3.0)
    assert [c.state for c in changes] == [SourceState.CONNECTING, SourceState.ONLINE]
