"""Models a user brings as ONNX files, which name what an event heard and saw: an audio tagger (YAMNet, PANNs or
CED exported to ONNX) and an object detector (a YOLO-family export), run with onnxruntime (the ``onnx`` extra:
``pip install 'streamer[onnx]'``; CUDA where the model's device is a GPU and the CUDA provider is installed).

What each must look like (``docs/tags.md`` says it for users):

* **Audio tagger**: input float32 ``(batch, samples)`` or ``(samples,)`` (YAMNet's export), mono -1..1 at the
  ``audio_rate`` the user gives (16 kHz for YAMNet and CED, 32 kHz for PANNs); output ``(batch, classes)``,
  ``(frames, classes)`` or ``(batch, frames, classes)`` (the largest over the frames is taken), scores 0..1 (where
  any score lies outside 0..1 they are logits: a sigmoid is applied). ``classes`` = the labels file's length.
* **Object detector**: input float32 ``(1, 3, H, W)``, RGB 0..1, the picture letterboxed into ``H x W`` (grey
  114 around it, as Ultralytics exports expect; a dynamic size is taken as 640); output ``(1, 4 + classes, N)``
  (YOLOv8 and later: boxes as centre x, centre y, width, height in input pixels, then one score per class), its
  transpose ``(1, N, 4 + classes)``, or ``(1, N, 5 + classes)`` (YOLOv5/v7: an objectness score before the classes).
* **Labels**: a text file, one label a line, in the model's class order, or a CSV with a ``display_name`` column
  (AudioSet's ``class_labels_indices.csv``, YAMNet's ``yamnet_class_map.csv``). Labels are used as
  :func:`label_slug` gives them: ``Dog`` -> ``dog``, ``Glass, shatter`` -> ``glass_shatter``.

A file that is missing, not ONNX, or of another input or output shape is refused at start in one line naming
the setting (:class:`streamer.errors.ConfigError`).
"""

from __future__ import annotations

import csv
import re
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt

from streamer.errors import ConfigError

LETTERBOX_GREY = 114
DYNAMIC_SIZE = 640  # a detector input whose size is not fixed gets this
NMS_IOU = 0.5


def label_slug(name: str) -> str:
    """A label as tags, filters and topics use it: lower case, runs of anything but ``a-z0-9`` as ``_``."""
    return re.sub(r"[^a-z0-9]+", "_", name.strip().lower()).strip("_")


def load_labels(path: Path, setting: str) -> tuple[str, ...]:
    """The labels file (one a line, or a CSV with ``display_name``), as slugs, in class order."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{setting}: cannot read {str(path)!r}: {exc.strerror or exc}") from None
    lines = [line for line in text.splitlines() if line.strip()]
    if lines and "display_name" in lines[0].split(","):
        names = [row["display_name"] for row in csv.DictReader(lines)]
    else:
        names = lines
    labels = tuple(label_slug(n) for n in names)
    if not labels or not all(labels):
        raise ConfigError(f"{setting}: {str(path)!r} holds no labels (one a line, or a CSV with display_name)")
    return labels


class OnnxModel:
    """An onnxruntime session on one thread (the tagging thread's budget counts it), refused in one line."""

    def __init__(self, path: Path, setting: str, device: str = "cpu") -> None:
        try:
            import onnxruntime as ort  # type: ignore[import-untyped]
        except ImportError:
            raise ConfigError(f"{setting}: needs onnxruntime (pip install 'streamer[onnx]')") from None
        if not path.is_file():
            raise ConfigError(f"{setting}: no such file: {str(path)!r}")
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        providers = ["CPUExecutionProvider"]
        if device.startswith("cuda") and "CUDAExecutionProvider" in ort.get_available_providers():
            providers.insert(0, "CUDAExecutionProvider")
        try:
            self.session = ort.InferenceSession(str(path), options, providers=providers)
        except Exception as exc:
            reason = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else type(exc).__name__
            raise ConfigError(f"{setting}: not an ONNX model onnxruntime can run: {str(path)!r} ({reason})") from None
        self.setting = setting
        self.input = self.session.get_inputs()[0]
        if "float" not in self.input.type:
            raise ConfigError(f"{setting}: expected a float32 input, got {self.input.type}")

    def run(self, x: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        out: Any = self.session.run(None, {self.input.name: x})[0]
        return np.asarray(out, dtype=np.float32)


def _sigmoid_if_logits(scores: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    if scores.size and (scores.min() < 0 or scores.max() > 1):
        return np.asarray(1 / (1 + np.exp(-scores)), dtype=np.float32)
    return scores


class OnnxAudioTagger:
    """``scores(clips)``: ``(len(clips), classes)`` for mono clips at ``rate``."""

    def __init__(self, path: Path, labels: tuple[str, ...], rate: int, device: str = "cpu") -> None:
        setting = "tags.audio_model"
        self.model = OnnxModel(path, setting, device)
        self.labels, self.rate = labels, rate
        shape = self.model.input.shape
        if len(shape) not in (1, 2):
            raise ConfigError(f"{setting}: expected a waveform input (samples) or (batch, samples), got {shape}")
        self.batched = len(shape) == 2
        self.fixed_batch = self.batched and isinstance(shape[0], int)
        self.fixed_samples = shape[-1] if isinstance(shape[-1], int) else None
        try:
            probe = self.scores([np.zeros(rate, np.float32)])
        except ConfigError:
            raise
        except Exception as exc:
            raise ConfigError(f"{setting}: the model does not run on 1 s of audio ({str(exc)[:160]})") from None
        if probe.shape != (1, len(labels)):
            raise ConfigError(f"{setting}: the model gives {probe.shape[-1]} scores a clip, the labels file "
                              f"(tags.audio_labels) has {len(labels)}")  # fmt: skip

    def _fit(self, clip: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        if self.fixed_samples is None:
            return clip
        out = np.zeros(self.fixed_samples, np.float32)
        out[: min(len(clip), self.fixed_samples)] = clip[: self.fixed_samples]
        return out

    def scores(self, clips: list[npt.NDArray[np.float32]]) -> npt.NDArray[np.float32]:
        if not self.batched or self.fixed_batch:  # one clip a run
            return np.stack([self._one(self._fit(c)) for c in clips])
        n = self.fixed_samples or max(len(c) for c in clips)
        batch = np.zeros((len(clips), n), np.float32)
        for i, c in enumerate(clips):
            batch[i, : min(len(c), n)] = c[:n]
        out = self.model.run(batch)
        if out.ndim == 3:  # (batch, frames, classes)
            out = out.max(axis=1)
        return _sigmoid_if_logits(out.reshape(len(clips), -1))

    def _one(self, clip: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        out = self.model.run(clip[None, :] if self.batched else clip)
        if out.ndim == 3:
            out = out[0]
        if out.ndim == 2:  # (frames, classes) or (1, classes)
            out = out.max(axis=0)
        return _sigmoid_if_logits(out.reshape(-1))


class OnnxDetector:
    """``detect(picture)``: ``[(label, confidence, box)]`` for an RGB ``(H, W, 3)`` uint8 picture, the best box
    of each label (boxes normalized to the picture, x0 y0 x1 y1)."""

    def __init__(self, path: Path, labels: tuple[str, ...], min_confidence: float, device: str = "cpu") -> None:
        setting = "tags.detector_model"
        self.model = OnnxModel(path, setting, device)
        self.labels, self.min_confidence = labels, min_confidence
        shape = self.model.input.shape
        if len(shape) != 4 or shape[1] != 3:
            raise ConfigError(f"{setting}: expected a picture input (1, 3, H, W), got {shape}")
        h, w = shape[2], shape[3]
        self.size = (w if isinstance(w, int) else DYNAMIC_SIZE, h if isinstance(h, int) else DYNAMIC_SIZE)
        try:
            out = self.model.run(np.zeros((1, 3, self.size[1], self.size[0]), np.float32))
        except Exception as exc:
            raise ConfigError(f"{setting}: the model does not run on a {self.size[0]}x{self.size[1]} picture "
                              f"({str(exc)[:160]})") from None  # fmt: skip
        c = len(labels)
        if out.ndim == 3 and out.shape[1] == 4 + c:
            self.layout = "v8"
        elif out.ndim == 3 and out.shape[2] == 4 + c:
            self.layout = "v8t"
        elif out.ndim == 3 and out.shape[2] == 5 + c:
            self.layout = "v5"
        else:
            raise ConfigError(f"{setting}: expected an output (1, 4 + classes, N) or (1, N, 5 + classes) with "
                              f"{c} classes (tags.detector_labels), got {list(out.shape)}")  # fmt: skip

    def _letterbox(self, picture: npt.NDArray[np.uint8]) -> tuple[npt.NDArray[np.float32], float, int, int]:
        w, h = self.size
        scale = min(w / picture.shape[1], h / picture.shape[0])
        nw, nh = max(1, round(picture.shape[1] * scale)), max(1, round(picture.shape[0] * scale))
        canvas = np.full((h, w, 3), LETTERBOX_GREY, np.uint8)
        left, top = (w - nw) // 2, (h - nh) // 2
        canvas[top : top + nh, left : left + nw] = cv2.resize(picture, (nw, nh), interpolation=cv2.INTER_LINEAR)
        x = canvas.transpose(2, 0, 1)[None].astype(np.float32) / 255.0
        return x, scale, left, top

    def detect(self, picture: npt.NDArray[np.uint8]) -> list[tuple[str, float, tuple[float, float, float, float]]]:
        x, scale, left, top = self._letterbox(picture)
        out = self.model.run(x)[0]
        rows = out.T if self.layout == "v8" else out  # (N, 4 + C) or (N, 5 + C)
        scores = rows[:, 5:] * rows[:, 4:5] if self.layout == "v5" else rows[:, 4:]  # v5: objectness x class
        best = scores.argmax(axis=1)
        conf = scores[np.arange(len(rows)), best]
        keep = conf >= self.min_confidence
        if not keep.any():
            return []
        boxes, conf, best = rows[keep, :4], conf[keep], best[keep]
        xywh = np.stack([boxes[:, 0] - boxes[:, 2] / 2, boxes[:, 1] - boxes[:, 3] / 2, boxes[:, 2], boxes[:, 3]], 1)
        chosen = cv2.dnn.NMSBoxesBatched(xywh.tolist(), conf.tolist(), best.tolist(), self.min_confidence, NMS_IOU)
        found: dict[str, tuple[str, float, tuple[float, float, float, float]]] = {}
        ph, pw = picture.shape[:2]
        for i in np.asarray(chosen, dtype=np.int64).reshape(-1):
            label = self.labels[int(best[i])]
            x0 = float(np.clip((xywh[i, 0] - left) / scale / pw, 0, 1))
            y0 = float(np.clip((xywh[i, 1] - top) / scale / ph, 0, 1))
            x1 = float(np.clip((xywh[i, 0] + xywh[i, 2] - left) / scale / pw, 0, 1))
            y1 = float(np.clip((xywh[i, 1] + xywh[i, 3] - top) / scale / ph, 0, 1))
            if label not in found or conf[i] > found[label][1]:
                found[label] = (label, float(conf[i]), (x0, y0, x1, y1))
        return sorted(found.values(), key=lambda f: -f[1])
