"""The model stage: one :class:`~models.fusion.FusionModel` per hop length, a slot per stream, off the loop.

Streams with the same hop share one model, so a batch of timesteps from many streams is one call (one
host-to-device copy, one device-to-host copy). The calls run on one worker thread, in batch order, so each
stream's adaptive state advances in media-time order while the event loop keeps serving sources and MQTT.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from models.device import resolve_device
from models.fusion import FusionModel
from models.heads import FusionHead
from models.plugins import load_module
from pipelines.config import ModelConfig, StreamConfig, load_model
from streamer.errors import ConfigError
from streamer.media import Timestep, VideoFrame

log = logging.getLogger("streamer")


@dataclass(frozen=True, slots=True)
class StreamSlot:
    hop: float
    slot: int


class ModelRunner:
    def __init__(self, config: ModelConfig) -> None:
        self.config = config
        try:
            self.device = resolve_device(config.device)
        except ValueError as exc:
            raise ConfigError(f"device.type: {exc}") from None
        self._models: dict[float, FusionModel] = {}
        self._slots: dict[str, StreamSlot] = {}
        self.head, self._extraction = self._learned_head(config)
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
            self._check_extraction(hop)
            _warm_up(model, hop)
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

    def add_stream(self, stream: StreamConfig) -> None:
        hop = stream.sync.hop
        slot = self._model(hop).add_stream(stream.alpha, stream.beta)
        self._slots[stream.stream_id] = StreamSlot(hop, slot)

    def release(self, stream_id: str) -> None:
        where = self._slots.pop(stream_id, None)
        if where is not None:
            self._models[where.hop].release(where.slot)

    def export_state(self, stream_id: str) -> dict[str, np.ndarray]:
        """The stream's learned state (``FusionModel.export_state``) as arrays; call it on the model's thread
        (:meth:`export_async`) so no batch is half-scored."""
        where = self._slots[stream_id]
        return {k: v.numpy() for k, v in self._models[where.hop].export_state(where.slot).items()}

    def import_state(self, stream_id: str, state: dict[str, np.ndarray]) -> None:
        """Continue the stream from an exported state; ``ValueError`` when it came from other model settings."""
        where = self._slots[stream_id]
        self._models[where.hop].import_state(where.slot, {k: torch.from_numpy(v) for k, v in state.items()})

    async def export_async(self, stream_ids: Sequence[str]) -> dict[str, dict[str, np.ndarray]]:
        def export() -> dict[str, dict[str, np.ndarray]]:
            return {sid: self.export_state(sid) for sid in stream_ids if sid in self._slots}

        return await asyncio.get_running_loop().run_in_executor(self._executor, export)

    async def import_async(self, stream_id: str, state: dict[str, np.ndarray]) -> None:
        await asyncio.get_running_loop().run_in_executor(self._executor, self.import_state, stream_id, state)

    def score(self, timesteps: Sequence[Timestep]) -> dict[str, np.ndarray]:
        """Score a batch (any mix of streams and hops); arrays of ``len(timesteps)`` per name, in order."""
        groups: dict[float, list[int]] = {}
        for i, ts in enumerate(timesteps):
            groups.setdefault(self._slots[ts.stream_id].hop, []).append(i)
        if len(groups) == 1:
            ((hop, _),) = groups.items()
            return self._models[hop].score(timesteps, [self._slots[ts.stream_id].slot for ts in timesteps])
        out: dict[str, np.ndarray] = {}
        for hop, index in groups.items():
            part = self._models[hop].score(
                [timesteps[i] for i in index], [self._slots[timesteps[i].stream_id].slot for i in index]
            )
            for name, values in part.items():
                if name not in out:
                    out[name] = np.zeros(len(timesteps), values.dtype)
                out[name][index] = values
        return out

    async def score_async(self, timesteps: Sequence[Timestep]) -> dict[str, np.ndarray]:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self.score, timesteps)

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)


def _warm_up(model: FusionModel, hop: float) -> None:
    """Score one blank timestep on a throwaway slot: the first call's one-off costs (allocations, kernel
    selection) are paid before any stream's first timestep, not in its latency."""
    width, height = model.luma_size
    blank = VideoFrame(t=0.0, luma=np.zeros((height, width), np.uint8))
    window = np.zeros(model.window, np.float32)
    context = model.window - model.hop_samples
    slot = model.add_stream()
    model.score([Timestep("warm-up", 0, 0.0, hop, (blank,), window, context)], [slot])
    model.release(slot)
