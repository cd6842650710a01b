"""Speech in an event's sound: silero-vad's voice activity model, batched over the events being tagged.

silero-vad (MIT licence) carries its weights in its wheel (a 2 MB TorchScript file): nothing is downloaded. It
scores each 32 ms chunk (512 samples at 16 kHz) of a clip with the probability that it is speech.

An event's *speech confidence* (:func:`speech_confidence`) is the share of its sound's chunks that are speech
(probability >= 0.5), less the share of the bed's: a word, a sentence or a talking head is mostly speech from its
first chunk to its last (0.65-0.94 of the chunks on the real recordings of ``../shared/realworld``), while a
knock, an alarm, an animal or a machine is almost never (at most 0.17: a chimpanzee); and a sound over a bed that is
itself a voice talking on (an announcement, a radio) is not the event's speech, so the bed's share is taken off.
"""

from __future__ import annotations

import importlib.util
import warnings
from pathlib import Path

import numpy as np
import numpy.typing as npt
import torch
from torch import Tensor

VAD_RATE = 16_000  # silero-vad's own rate (it also takes 8 kHz): not the analysis's sample_rate setting
CHUNK = 512  # samples silero-vad scores at once at 16 kHz (32 ms)
SPEECH_P = 0.5  # a chunk is speech at this probability (silero-vad's own default threshold)


def weights_path() -> Path:
    """silero-vad's TorchScript file in its installed package, found without importing the package (its
    ``__init__`` sets torch's thread count for the whole process)."""
    spec = importlib.util.find_spec("silero_vad")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("silero-vad is not installed (pip install silero-vad)")
    path = Path(next(iter(spec.submodule_search_locations))) / "data" / "silero_vad.jit"
    if not path.is_file():
        raise RuntimeError(f"silero-vad's weights are not where its package keeps them: {path}")
    return path


class SpeechDetector:
    """``probabilities(clips)``: each clip's ``(n_chunks,)`` speech probabilities, the clips (float32 mono at
    16 kHz, any lengths) scored in one batch, padded with silence to the longest. Not thread-safe (the model
    keeps its recurrent state between chunks): one thread uses it."""

    def __init__(self, device: str | torch.device = "cpu") -> None:
        self.device = torch.device(device)
        with warnings.catch_warnings():  # TorchScript is how silero-vad ships its weights
            warnings.simplefilter("ignore", DeprecationWarning)
            self._model = torch.jit.load(str(weights_path()), map_location=self.device)  # type: ignore[no-untyped-call]
        self._model.eval()

    @torch.inference_mode()
    def probabilities(self, clips: list[npt.NDArray[np.float32]]) -> list[npt.NDArray[np.float32]]:
        if not clips:
            return []
        chunks = [max(1, len(c) // CHUNK) for c in clips]
        batch = torch.zeros(len(clips), max(chunks) * CHUNK)
        for i, clip in enumerate(clips):
            n = min(len(clip), chunks[i] * CHUNK)
            batch[i, :n] = torch.from_numpy(np.ascontiguousarray(clip[:n], dtype=np.float32))
        probs: Tensor = self._model.audio_forward(batch.to(self.device), VAD_RATE)  # (B, chunks)
        out = probs.float().cpu().numpy()
        return [out[i, : chunks[i]] for i in range(len(clips))]


def resampled(clip: npt.NDArray[np.float32], rate: int, to: int) -> npt.NDArray[np.float32]:
    """A mono clip of ``rate`` samples a second at ``to``."""
    if rate == to:
        return clip
    import torchaudio.functional

    out: Tensor = torchaudio.functional.resample(torch.from_numpy(np.ascontiguousarray(clip, np.float32)), rate, to)
    return np.asarray(out.numpy(), dtype=np.float32)


def at_16k(clip: npt.NDArray[np.float32], rate: int) -> npt.NDArray[np.float32]:
    """A clip of ``rate`` samples a second at the 16 kHz silero-vad takes."""
    return resampled(clip, rate, VAD_RATE)


def speech_share(probabilities: npt.NDArray[np.float32]) -> float:
    """The share of a clip's chunks that are speech (0 for an empty clip)."""
    return float(np.mean(probabilities >= SPEECH_P)) if len(probabilities) else 0.0


def speech_confidence(sound: npt.NDArray[np.float32], bed: npt.NDArray[np.float32] | None) -> float:
    """How surely an event's sound is speech, 0..1: the share of its chunks that are speech less the share of
    its bed's (the audio before the event; None: not looked at)."""
    share = speech_share(sound)
    return max(0.0, share - (speech_share(bed) if bed is not None else 0.0))
