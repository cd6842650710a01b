"""S_v, S_a and the raw features of every timestep of labeled recordings, by the model ``streamer run`` uses.

Recordings are decoded as fast as possible, ``parallel`` at a time (one capture thread each), cut into timesteps
by the same sync and scored by the same :class:`~pipelines.inference.ModelRunner` (batched across recordings, on
the configured device). The scores of the modalities do not depend on alpha and beta, so one extraction serves
every setting that calibration tries, and the learned fusion heads train on exactly what they see at run time.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np
import numpy.typing as npt

from pipelines.config import ModelConfig, StreamConfig, stream_config
from pipelines.learn.labels import Dataset, Recording
from pipelines.learn.metrics import timestep_labels
from pipelines.learn.options import LearnOptions
from pipelines.stages.batcher import Batcher, Lane
from pipelines.stages.inference import ModelRunner
from streamer.errors import SourceError
from streamer.media import Timestep
from streamer.settings import default_of
from streamer.spec import SourceKind, SourceSpec
from streamer.stream import Stream

log = logging.getLogger("streamer")

Array = npt.NDArray[np.float64]
LANE = 64  # timesteps a recording may have waiting for the model


@dataclass(frozen=True)
class RecordingScores:
    """One recording's timesteps: ``t (T,)`` media seconds and ``values`` name -> ``(T,)``: ``s_v``, ``s_a``,
    ``has_v``, ``has_a`` (0/1) and the encoders' raw features (``video_changed``, ``audio_excess``, ...)."""

    recording: Recording
    hop: float
    t: Array
    values: Mapping[str, Array] = field(repr=False)

    def __len__(self) -> int:
        return len(self.t)

    @property
    def labels(self) -> npt.NDArray[np.bool_]:
        """Which timesteps lie in a labeled event (by their midpoint)."""
        return timestep_labels(self.t, self.hop, self.recording.intervals)

    def table(self, names: Sequence[str]) -> npt.NDArray[np.float32]:
        """``(T, len(names))`` float32: the columns a fusion head reads (see :mod:`models.heads`)."""
        missing = [n for n in names if n not in self.values]
        if missing:
            raise KeyError(f"the model gives no {', '.join(missing)} (it gives {', '.join(self.values)})")
        return np.stack([self.values[n] for n in names], axis=1).astype(np.float32)


async def extract(
    dataset: Dataset,
    model: ModelConfig,
    stream_values: Mapping[str, Any],
    *,
    parallel: int = default_of(LearnOptions, "parallel"),
    on_start: Callable[[str], None] | None = None,
    on_done: Callable[[RecordingScores], None] | None = None,
) -> tuple[list[RecordingScores], list[SourceError]]:
    """Score every recording of ``dataset``; ``stream_values`` are per-stream settings (``hop_ms``...) as in
    :data:`pipelines.config.STREAM_KEYS`. Returns the scores, in the dataset's order, and the recordings that
    failed (each a one-line :class:`SourceError`); a failed recording does not stop the others. ``on_start``
    gets the device's name, ``on_done`` each recording's scores as they are ready."""
    runner = ModelRunner(replace(model, checkpoint=None))  # the heads' inputs: the modalities' own scores
    if on_start is not None:
        on_start(runner.device_name)
    done: dict[str, RecordingScores] = {}
    failed: list[SourceError] = []
    try:
        for first in range(0, len(dataset.recordings), max(1, parallel)):
            group = dataset.recordings[first : first + max(1, parallel)]
            # no snapshots here: the decoded pictures need not outlive their luma image
            configs = [
                _without_pictures(stream_config(file_spec(r.stream_id, r.path), stream_values, model)) for r in group
            ]
            scored, errors = await _extract_group(runner, model, list(zip(group, configs, strict=True)))
            failed += errors
            for result in scored:
                done[result.recording.stream_id] = result
                if on_done is not None:
                    on_done(result)
    finally:
        runner.close()
    return [done[r.stream_id] for r in dataset.recordings if r.stream_id in done], failed


def _without_pictures(config: StreamConfig) -> StreamConfig:
    return replace(config, source=replace(config.source, keep_full_frames=False))


def file_spec(stream_id: str, path: Path | str) -> SourceSpec:
    """A recording's source, as a file given on ``streamer run``'s command line becomes."""
    return SourceSpec(stream_id, str(path), SourceKind.FILE, MappingProxyType({"path": str(path)}))


@dataclass(eq=False)
class _Collected:
    recording: Recording
    config: StreamConfig
    lane: Lane[Timestep]
    t: list[float] = field(default_factory=list)
    rows: list[dict[str, float]] = field(default_factory=list)
    error: SourceError | None = None


async def _extract_group(
    runner: ModelRunner, model: ModelConfig, group: list[tuple[Recording, StreamConfig]]
) -> tuple[list[RecordingScores], list[SourceError]]:
    batcher: Batcher[Timestep] = Batcher(model.max_batch, model.max_wait_ms / 1000)
    streams: dict[str, _Collected] = {}
    for recording, config in group:
        await runner.add_stream(config)
        streams[recording.stream_id] = _Collected(recording, config, batcher.add_lane(
            recording.stream_id, LANE, drop_oldest=False))  # fmt: skip

    async def read(c: _Collected) -> None:
        stream = Stream(c.config.spec, c.config.source, c.config.sync)
        try:
            async with contextlib.aclosing(stream.__aiter__()) as timesteps:  # type: ignore[type-var]
                async for ts in timesteps:
                    await batcher.put(c.lane, ts)
        except SourceError as exc:
            c.error = exc
            log.error("error: %s", exc)
        finally:
            batcher.close_lane(c.lane)

    async def score() -> None:
        while batch := await batcher.next_batch():
            timesteps = [ts for _, ts in batch]
            result = await runner.score_async(timesteps)
            for i, ts in enumerate(timesteps):
                c = streams[ts.stream_id]
                c.t.append(ts.t)
                c.rows.append({name: float(values[i]) for name, values in result.items() if values.ndim == 1})

    try:
        async with asyncio.TaskGroup() as tg:
            for c in streams.values():
                tg.create_task(read(c), name=f"source-{c.recording.stream_id}")
            tg.create_task(score(), name="model")
    finally:
        for stream_id in streams:
            runner.release(stream_id)
    out: list[RecordingScores] = []
    for c in streams.values():
        if c.error is not None:
            continue
        names = list(c.rows[0]) if c.rows else ["s", "s_v", "s_a", "has_v", "has_a"]
        values = {name: np.array([row[name] for row in c.rows], dtype=np.float64) for name in names if name != "s"}
        out.append(RecordingScores(c.recording, c.config.sync.hop, np.array(c.t, dtype=np.float64), values))
    return out, [c.error for c in streams.values() if c.error is not None]
