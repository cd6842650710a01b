"""The model stage: one :class:`~models.fusion.FusionModel` per hop length, a slot per stream, off the loop.

Streams with the same hop share one model, so a batch of timesteps from many streams is one call (one
host-to-device copy, one device-to-host copy). The calls run on one worker thread, in batch order, so each
stream's adaptive state advances in media-time order while the event loop keeps serving sources and MQTT.
Everything else that touches the models (a stream joining or leaving, its weights, its mask, its state carried
over) runs on that thread too, queued between the batches: see :class:`ModelRunner`.

A stream's ``mask`` (:mod:`pipelines.stages.zones`) is given to its slot when the stream joins; being a setting of
the slot, not something it learned, it stays over a reconnect and is not part of a carried-over state. Its
``zones`` need the model's cells (``video_unusual``); a video encoder that gives none is refused, with them,
when the stream joins.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import numpy as np
import torch

from models.device import resolve_device
from models.fusion import FusionModel
from models.heads import FusionHead
from models.plugins import load_module
from pipelines.config import ModelConfig, StreamConfig, load_model
from pipelines.stages.zones import Cells, ignore_mask
from streamer.errors import ConfigError
from streamer.media import Timestep, VideoFrame

log = logging.getLogger("streamer")

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class StreamSlot:
    hop: float
    slot: int


class Queued(Generic[T]):
    """Work queued on the model thread. ``await`` it on the event loop, or call :meth:`result` where no event loop
    waits on the model (building an analyzer, a tool, a test); left alone it still runs, and whatever is queued
    after it runs after it (its failure is then seen by no one: await what can fail)."""

    __slots__ = ("_future",)

    def __init__(self, future: concurrent.futures.Future[T]) -> None:
        self._future = future

    def __await__(self) -> Generator[Any, None, T]:
        return asyncio.wrap_future(self._future).__await__()

    def result(self, timeout: float | None = None) -> T:
        """Wait for it (blocking the calling thread) and return its result or raise its exception."""
        return self._future.result(timeout)


class ModelRunner:
    """The fusion models (one per hop) and the streams' slots in them, behind one worker thread.

    **Model state is touched only on the model thread.** Every batch updates the streams' state in place, and a
    stream joining may replace every state tensor by a larger one (the ninth, seventeenth, ... slot) or build and
    warm up a model for a new hop. So every call that reads or changes the models or the slots (add, release, set
    weights, export, import, score) runs on the runner's single worker thread, in the order the calls were made,
    and the models refuse any other thread (:meth:`FusionModel.confine`). A stream added while a batch is being
    scored joins after that batch; one released right after its last batch was queued leaves once that batch is
    scored; a state exported or imported is never half a batch's.

    From the event loop, every call queues its work at once and returns a :class:`Queued` to await:
    ``await runner.add_stream(sc)`` (a model for a new hop is built and warmed up there, not on the loop),
    ``await runner.score_async(batch)``, :meth:`export_async`, :meth:`import_async`; ``release`` and
    ``set_weights`` need no await (what is queued after them runs after them). Where no event loop runs (building
    an analyzer, a tool, a test): ``runner.add_stream(sc).result()``, and :meth:`export_state` and
    :meth:`import_state`, which block until the model thread has done them.
    """

    def __init__(self, config: ModelConfig) -> None:
        self.config = config
        try:
            self.device = resolve_device(config.device)
        except ValueError as exc:
            raise ConfigError(f"device.type: {exc}") from None
        # the models and the slots: read and changed on the model thread only
        self._models: dict[float, FusionModel] = {}
        self._slots: dict[str, StreamSlot] = {}
        self._outputs: dict[float, frozenset[str]] = {}  # what each hop's model gives (its warm-up's result)
        # Each stream's cells (its model's grid, its zones' weights): written on the model thread when the stream
        # joins, before its add is awaited; read by the scoring task for the stream's results, which come after.
        self._cells: dict[str, Cells] = {}
        self.head, self._extraction = self._learned_head(config)
        self._closed = False
        self._executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="model")
        if self.device.type == "cpu":
            # The model's tensors are small and the capture threads keep the cores busy decoding: more intra-op
            # threads only contend with them (measured: one thread halves the model's time inside the analyzer).
            torch.set_num_threads(config.threads)

    @staticmethod
    def _learned_head(config: ModelConfig) -> tuple[FusionHead | None, dict[str, object]]:
        """The head of ``--model`` that computes S (None for the weighted sum), and its extraction settings."""
        if config.checkpoint is None:
            return None, {}
        checkpoint = load_model(config.checkpoint)
        return checkpoint.learned_head, checkpoint.extraction

    @property
    def learned(self) -> str | None:
        """The kind of learned fusion head computing S, or None for alpha * S_v + beta * S_a."""
        return self.head.kind if self.head is not None else None

    @property
    def device_name(self) -> str:
        if self.device.type == "cuda":
            return f"{self.device} ({torch.cuda.get_device_name(self.device)})"
        return str(self.device)

    # -- the model thread ---------------------------------------------------------------------------------

    def _queue(self, work: Callable[..., T], *args: Any) -> Queued[T]:
        """Run ``work(*args)`` on the model thread after everything queued before it."""
        if self._closed:
            raise RuntimeError("the model runner is closed")
        return Queued(self._executor.submit(work, *args))

    def _model(self, hop: float) -> FusionModel:
        model = self._models.get(hop)
        if model is None:
            c = self.config
            try:
                video = load_module(c.video, c.video_weights) if c.video else None
                audio = load_module(c.audio, c.audio_weights) if c.audio else None
            except ValueError as exc:
                raise ConfigError(f"model: {exc}") from None
            try:
                model = FusionModel(
                    luma_size=c.luma_size, sample_rate=c.sample_rate, hop=hop, context=c.context_ms / 1000,
                    tau=c.tau, video=video, audio=audio, autocast=c.autocast, head=self.head,
                ).to(self.device)  # fmt: skip
            except ValueError as exc:
                raise ConfigError(f"hop_ms ({hop * 1000:g}) + context_ms ({c.context_ms:g}): {exc}") from None
            model.confine()
            self._check_extraction(hop)
            self._outputs[hop] = _warm_up(model, hop)
            self._models[hop] = model
        return model

    def _check_extraction(self, hop: float) -> None:
        """A model learned on features extracted otherwise sees other values: say so once per hop."""
        c = self.config
        now = {"hop_ms": round(hop * 1000, 3), "tau": c.tau, "luma_size": list(c.luma_size),
               "sample_rate": c.sample_rate, "context_ms": c.context_ms}  # fmt: skip
        differ = [f"{k} {v} (trained with {self._extraction[k]})" for k, v in now.items()
                  if k in self._extraction and self._extraction[k] != v]  # fmt: skip
        if differ:
            log.warning("model %s: features extracted with other settings: %s", c.checkpoint, ", ".join(differ))

    def _add(self, stream: StreamConfig) -> None:
        sid = stream.stream_id
        if sid in self._slots:
            raise ValueError(f"stream '{sid}' already has a slot in the model")
        hop = stream.sync.hop
        model = self._model(hop)
        cells = self._cells_of(stream, model)
        mask = torch.from_numpy(ignore_mask(stream.mask, model.luma_size)) if stream.mask else None
        if mask is not None and getattr(model.video, "set_mask", None) is None:
            raise ConfigError(f"stream '{sid}': mask: the video encoder {type(model.video).__name__} takes no mask")
        slot = model.add_stream(stream.alpha, stream.beta)
        self._slots[sid] = StreamSlot(hop, slot)
        if mask is not None:
            model.set_mask(slot, mask)
        if cells is not None:
            self._cells[sid] = cells

    def _cells_of(self, stream: StreamConfig, model: FusionModel) -> Cells | None:
        """The stream's cells on the model's grid; None where the video encoder has none (no boxes then), and a
        stream with zones is refused there."""
        grid = getattr(model.video, "grid", None)
        if grid is not None and "video_unusual" in self._outputs[stream.sync.hop]:
            return Cells.of(stream, model.luma_size, grid, float(getattr(model.video, "scale", 0.01)))
        if stream.zones:
            raise ConfigError(
                f"stream '{stream.stream_id}': zones need the video model's cells (video_unusual): the video encoder "
                f"{type(model.video).__name__} gives none"
            )
        return None

    def _release(self, stream_id: str) -> None:
        where = self._slots.pop(stream_id, None)
        self._cells.pop(stream_id, None)
        if where is not None:
            self._models[where.hop].release(where.slot)  # its next stream's add_stream resets the mask too

    def _set_weights(self, stream_id: str, alpha: float, beta: float) -> None:
        if alpha < 0 or beta < 0:
            raise ValueError(f"stream '{stream_id}': alpha and beta must be >= 0, got {alpha} and {beta}")
        where = self._slots[stream_id]
        self._models[where.hop].set_weights(where.slot, alpha, beta)

    def _export(self, stream_ids: Sequence[str]) -> dict[str, dict[str, np.ndarray]]:
        out: dict[str, dict[str, np.ndarray]] = {}
        for sid in stream_ids:
            where = self._slots.get(sid)
            if where is not None:
                out[sid] = {k: v.numpy() for k, v in self._models[where.hop].export_state(where.slot).items()}
        return out

    def _import(self, stream_id: str, state: dict[str, np.ndarray]) -> None:
        where = self._slots[stream_id]
        self._models[where.hop].import_state(where.slot, {k: torch.from_numpy(v) for k, v in state.items()})

    def _score(self, timesteps: Sequence[Timestep]) -> dict[str, np.ndarray]:
        groups: dict[float, list[int]] = {}
        for i, ts in enumerate(timesteps):
            groups.setdefault(self._slots[ts.stream_id].hop, []).append(i)
        if len(groups) == 1:
            ((hop, _),) = groups.items()
            return self._score_on(hop, timesteps)
        out: dict[str, np.ndarray] = {}
        for hop, index in groups.items():
            part = self._score_on(hop, [timesteps[i] for i in index])
            for name, values in part.items():
                if name not in out:
                    out[name] = np.zeros((len(timesteps), *values.shape[1:]), values.dtype)
                out[name][index] = values
        return out

    def _score_on(self, hop: float, timesteps: Sequence[Timestep]) -> dict[str, np.ndarray]:
        return self._models[hop].score(timesteps, [self._slots[ts.stream_id].slot for ts in timesteps])

    # -- what callers use -----------------------------------------------------------------------------------

    def add_stream(self, stream: StreamConfig) -> Queued[None]:
        """Give the stream a slot (fresh state, its alpha and beta, its mask) in its hop's model, built and warmed
        up first if it is the hop's first stream; ``ConfigError`` when that model cannot be built, or cannot take
        the stream's mask or zones."""
        return self._queue(self._add, stream)

    def cells(self, stream_id: str) -> Cells | None:
        """The stream's cells (its model's grid, its zones' weights) for its results, once its add is done; None
        where the video encoder gives no cells (no boxes, no zones)."""
        return self._cells.get(stream_id)

    def release(self, stream_id: str) -> Queued[None]:
        """Free the stream's slot for another (nothing once the runner is closed)."""
        if self._closed:
            done: concurrent.futures.Future[None] = concurrent.futures.Future()
            done.set_result(None)
            return Queued(done)
        return self._queue(self._release, stream_id)

    def set_weights(self, stream_id: str, alpha: float, beta: float) -> Queued[None]:
        """The stream's alpha and beta from its next batch on (they play no part with a learned head)."""
        return self._queue(self._set_weights, stream_id, alpha, beta)

    def export_state(self, stream_id: str) -> dict[str, np.ndarray]:
        """The stream's learned state (``FusionModel.export_state``) as arrays, between two batches (blocks: on the
        event loop use :meth:`export_async`); ``KeyError`` for a stream without a slot."""
        return self._queue(self._export, [stream_id]).result()[stream_id]

    def import_state(self, stream_id: str, state: dict[str, np.ndarray]) -> None:
        """Continue the stream from an exported state (blocks: on the event loop use :meth:`import_async`);
        ``ValueError`` when it came from other model settings."""
        self._queue(self._import, stream_id, state).result()

    def export_async(self, stream_ids: Sequence[str]) -> Queued[dict[str, dict[str, np.ndarray]]]:
        """The learned state of those of ``stream_ids`` that have a slot (queued now: await it)."""
        return self._queue(self._export, list(stream_ids))

    def import_async(self, stream_id: str, state: dict[str, np.ndarray]) -> Queued[None]:
        """:meth:`import_state`, queued now: await it."""
        return self._queue(self._import, stream_id, state)

    def score_async(self, timesteps: Sequence[Timestep]) -> Queued[dict[str, np.ndarray]]:
        """Score a batch (any mix of streams and hops): arrays of ``len(timesteps)`` per name, in order; queued now
        (after whatever was queued before it, before whatever comes after): await it."""
        return self._queue(self._score, timesteps)

    def close(self) -> None:
        """Stop the model thread once its current call is done; what is still queued is cancelled."""
        self._closed = True
        self._executor.shutdown(wait=False, cancel_futures=True)


def _warm_up(model: FusionModel, hop: float) -> frozenset[str]:
    """Score one blank timestep on a throwaway slot: the first call's one-off costs (allocations, kernel
    selection) are paid before any stream's first timestep, not in its latency. Returns what the model gives."""
    width, height = model.luma_size
    blank = VideoFrame(t=0.0, luma=np.zeros((height, width), np.uint8))
    window = np.zeros(model.window, np.float32)
    context = model.window - model.hop_samples
    slot = model.add_stream(alpha=1.0, beta=1.0)  # any weights: its scores are thrown away
    result = model.score([Timestep("warm-up", 0, 0.0, hop, (blank,), window, context)], [slot])
    model.release(slot)
    return frozenset(result)
