"""What an event heard: tags (a label and a confidence) for each event, found after its start, never delaying it.

The stage keeps each stream's last few seconds of scored audio (:class:`AudioTail`, the timesteps' own samples).
An event's *sound* is the audio of its timesteps where the audio model heard something (S_a > ``SOUND_S_A``): a
word, a bark, a knock, not the quiet around them (an A+V event that lasts as long as a person walking gets the
sound, not the walk). Its sound goes to the taggers:

* when it holds ``FIRST_S`` (1 s) of sound, or the event ends with less;
* again every ``AGAIN_S`` (2 s) of new sound while it lasts, up to ``WINDOW_S`` (4 s) of sound;
* and at its end, when there is sound not heard yet.

A tagging that finds something new (a label, or a confidence 0.1 higher) is published as the event's ``update``
message; the end message carries the tags known by then (a short event's tags follow its end). The speech tagger
(:mod:`models.speech`) compares the sound with its bed: the last ``BED_S`` (2 s) of quiet audio (no sound of its
own) before the event.

**Budget.** Tagging runs on one thread of its own, at the lowest scheduling priority (it takes only CPU the
capture, the model and the event loop leave), on at most ``budget`` of a core on average (a token bucket of CPU
seconds, ``budget`` a second, up to ``BURST_S`` seconds' worth), so that a box at its capacity of live streams
stays there. Requests wait in a bounded queue (``QUEUE``): a newer request of the same event replaces its older
one (it holds more sound); when the queue is full the oldest request is dropped, and so is one that waited past
``MAX_WAIT_S`` for the budget (both counted as ``tag_drops``): the event keeps the tags it has. A run of files
alone (no stream in real time) has no budget, no waiting limit and no lowered priority: nothing live can fall
behind, and every event of a file gets its tags (with the budget, a file analyzed 20 times faster than real time
lost the tags of 2 of its 18 speech events).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import os
import threading
import time
from collections.abc import Awaitable, Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from models.speech import VAD_RATE
from pipelines.config import TagsConfig
from pipelines.stages.events import Event, Scores, rounded
from streamer.media import Box, Timestep

if TYPE_CHECKING:
    from models.onnx_models import OnnxAudioTagger, OnnxDetector

log = logging.getLogger("streamer")

SOUND_S_A = 0.1  # a timestep is part of an event's sound where S_a exceeds this
FIRST_S = 1.0  # seconds of sound before an event's first tagging
AGAIN_S = 2.0  # seconds of new sound before it is tagged again
WINDOW_S = 4.0  # the most sound of one event tagged
BED_S = 2.0  # the audio before an event taken as its bed
TAIL_S = WINDOW_S + BED_S  # how much scored audio each stream keeps
QUEUE = 64  # requests waiting for the tagger at most
MAX_WAIT_S = 30.0  # a request older than this is dropped
BURST_S = 10.0  # the budget saved up while idle: this many seconds' worth
NICE = 19  # the tagging thread's scheduling priority: it takes only what the analysis leaves
NEWER = 0.1  # a confidence this much higher than the one told is told again


@dataclass(frozen=True, slots=True)
class Tag:
    label: str
    confidence: float
    modality: str  # "audio" or "video": what was tagged

    def as_dict(self) -> dict[str, Any]:
        return {"label": self.label, "confidence": rounded(self.confidence), "modality": self.modality}


def tags_payload(tags: dict[str, Tag]) -> list[dict[str, Any]]:
    """Tags as messages carry them: the most confident first."""
    return [t.as_dict() for t in sorted(tags.values(), key=lambda t: (-t.confidence, t.label))]


def filtered(tags: dict[str, Tag], only: tuple[str, ...], ignore: tuple[str, ...]) -> bool | None:
    """Whether a stream's filters set an event aside: its tags are all ``ignore``d (and it has some), or ``only``
    is given and none of its tags is in it (yet: a tag that comes later can take the event back); None: the stream
    has no filters."""
    if not only and not ignore:
        return None
    labels = set(tags)
    if only and not labels & set(only):
        return True
    return bool(labels) and labels <= set(ignore)


class AudioTail:
    """A stream's last ``TAIL_S`` seconds of scored timesteps: ``(t, samples, S_a)``, oldest first, at ``rate``
    samples a second."""

    def __init__(self, rate: int) -> None:
        self.rate = rate
        self._steps: collections.deque[tuple[float, npt.NDArray[np.float32], float]] = collections.deque()

    def add(self, t: float, audio: npt.NDArray[np.float32], s_a: float) -> None:
        self._steps.append((t, audio, s_a))
        while self._steps and self._steps[0][0] < t - TAIL_S:
            self._steps.popleft()

    def since(self, t: float) -> list[tuple[float, npt.NDArray[np.float32], float]]:
        return [step for step in self._steps if step[0] >= t - 1e-6]

    def bed(self, t: float, seconds: float) -> npt.NDArray[np.float32]:
        """The latest ``seconds`` of quiet audio (S_a <= ``SOUND_S_A``: no sound of its own) before ``t``."""
        parts: list[npt.NDArray[np.float32]] = []
        held = 0.0
        for ts, audio, s_a in reversed(self._steps):
            if held >= seconds:
                break
            if ts < t - 1e-6 and s_a <= SOUND_S_A:
                parts.append(audio)
                held += len(audio) / self.rate
        return np.concatenate(parts[::-1]) if parts else np.zeros(0, np.float32)


@dataclass(eq=False)
class _Tagged:
    """An event being tagged."""

    event: Event
    bed: npt.NDArray[np.float32]
    rate: int
    sound: list[npt.NDArray[np.float32]] = field(default_factory=list)
    sound_s: float = 0.0
    asked_s: float = 0.0  # the sound seconds the latest request held
    ended: bool = False
    tags: dict[str, Tag] = field(default_factory=dict)
    seen_t: float = -1.0  # the last timestep of it taken
    pictures: int = 0  # its pictures being encoded


@dataclass(frozen=True, slots=True)
class Request:
    """What one event has to be tagged on: its sound (empty: none new) and bed, and its best picture (a JPEG at
    full resolution, None: none new) with where it changed (``box``, normalized; None: anywhere)."""

    stream_id: str
    event_id: str
    sound: npt.NDArray[np.float32]
    bed: npt.NDArray[np.float32]
    rate: int  # the audio's sample rate
    asked: float  # monotonic time
    picture: bytes | None = None
    box: Box | None = None


class Tagger:
    """What the tagging thread runs: tags for a batch of requests (one list per request)."""

    def tag(self, requests: list[Request]) -> list[list[Tag]]:
        raise NotImplementedError


class SpeechTagger(Tagger):
    """``speech`` (:mod:`models.speech`), at ``min_confidence`` or more."""

    def __init__(self, min_confidence: float, device: str = "cpu") -> None:
        from models.speech import SpeechDetector

        self.min_confidence = min_confidence
        self._vad = SpeechDetector(device)

    def tag(self, requests: list[Request]) -> list[list[Tag]]:
        from models.speech import at_16k, speech_confidence, speech_share

        sounds = self._vad.probabilities([at_16k(r.sound, r.rate) if len(r.sound) else r.sound for r in requests])
        # the bed only where the sound could be speech: most events' sounds are not, and the bed costs as much
        maybe = [i for i, p in enumerate(sounds) if speech_share(p) >= self.min_confidence and len(requests[i].bed)]
        beds = self._vad.probabilities([at_16k(requests[i].bed, requests[i].rate) for i in maybe])
        bed_of = dict(zip(maybe, beds, strict=True))
        out: list[list[Tag]] = []
        for i, p in enumerate(sounds):
            confidence = speech_confidence(p, bed_of.get(i)) if len(requests[i].sound) else 0.0
            out.append([Tag("speech", confidence, "audio")] if confidence >= self.min_confidence else [])
        return out


class SoundTagger(Tagger):
    """A user's ONNX audio tagger (:class:`models.onnx_models.OnnxAudioTagger`): its ``top`` labels at
    ``min_confidence`` or more."""

    def __init__(self, model: OnnxAudioTagger, min_confidence: float, top: int) -> None:
        self.model, self.min_confidence, self.top = model, min_confidence, top

    def tag(self, requests: list[Request]) -> list[list[Tag]]:
        from models.speech import resampled

        heard = [i for i, r in enumerate(requests) if len(r.sound)]
        out: list[list[Tag]] = [[] for _ in requests]
        if not heard:
            return out
        scores = self.model.scores([resampled(requests[i].sound, requests[i].rate, self.model.rate) for i in heard])
        for i, row in zip(heard, scores, strict=True):
            best = np.argsort(-row)[: self.top]
            out[i] = [Tag(self.model.labels[j], float(row[j]), "audio") for j in best if row[j] >= self.min_confidence]
        return out


class PictureTagger(Tagger):
    """A user's ONNX object detector (:class:`models.onnx_models.OnnxDetector`) on the event's best picture,
    cropped around where it changed (the box, widened to at least a third of the picture each way)."""

    def __init__(self, model: OnnxDetector, top: int) -> None:
        self.model, self.top = model, top

    def tag(self, requests: list[Request]) -> list[list[Tag]]:
        out: list[list[Tag]] = []
        for r in requests:
            picture = _decoded(r.picture) if r.picture is not None else None
            if picture is None:
                out.append([])
                continue
            found = self.model.detect(_around(picture, r.box))
            out.append([Tag(label, confidence, "video") for label, confidence, _ in found[: self.top]])
        return out


def _decoded(jpeg: bytes) -> npt.NDArray[np.uint8] | None:
    import cv2

    bgr = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    return None if bgr is None else np.ascontiguousarray(bgr[:, :, ::-1])


def _around(picture: npt.NDArray[np.uint8], box: Box | None) -> npt.NDArray[np.uint8]:
    """The part of ``picture`` around ``box`` (normalized): the box and half its size again each side, at least a
    third of the picture each way; the whole picture without a box."""
    if box is None:
        return picture
    h, w = picture.shape[:2]
    x0, y0, x1, y1 = box
    bw, bh = max(x1 - x0, 1 / 3), max(y1 - y0, 1 / 3)
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    left, right = max(0.0, cx - bw), min(1.0, cx + bw)
    top, bottom = max(0.0, cy - bh), min(1.0, cy + bh)
    y0, x0 = int(top * h), int(left * w)
    return picture[y0 : max(y0 + 1, int(bottom * h)), x0 : max(x0 + 1, int(right * w))]


Tell = Callable[[Event, dict[str, Tag]], None]


def _yield_to_the_analysis() -> None:
    """The tagging thread runs at the lowest priority (Linux schedules threads apart): it never takes a core from
    the capture, the model or the event loop, only what they leave; its budget bounds it over time."""
    with contextlib.suppress(AttributeError, OSError):  # another system: the budget alone bounds it
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), NICE)


class Tagging:
    """The stage: :meth:`observe` each scored timestep, :meth:`started` / :meth:`ended` each event of a stream
    (not a zone's); :meth:`run` is its task. ``tell(event, tags)``: an event's tags changed (Publishing)."""

    def __init__(
        self, config: TagsConfig, taggers: list[Tagger], tell: Tell, *, pictures: bool = False, live: bool = True
    ) -> None:
        self.config = config
        self.taggers = taggers
        self.tell = tell
        self.pictures = pictures  # a tagger looks at pictures: each event's best picture is asked for
        self.live = live  # the run has streams that come in real time: the budget and the low priority hold
        self.drops = 0  # requests dropped (queue full, or waited too long for the budget)
        self.tagged = 0  # requests tagged
        self.cpu_s = 0.0  # CPU seconds the taggers took
        self._tails: dict[str, AudioTail] = {}
        self._open: dict[str, _Tagged] = {}  # event id -> event being tagged
        self._hearing: dict[str, list[_Tagged]] = {}  # stream id -> its events still open (their sound grows)
        self._queue: collections.OrderedDict[str, Request] = collections.OrderedDict()  # by event id
        self._busy: set[str] = set()  # event ids being tagged now
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()  # nothing queued, nothing being tagged
        self._idle.set()
        self._tokens = config.budget * BURST_S
        self._refilled = time.monotonic()
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="tagger",
                                            initializer=_yield_to_the_analysis if live else None)  # fmt: skip

    # -- the scoring side (event loop) ---------------------------------------------------------------------------

    def observe(self, ts: Timestep, scores: Scores, rate: int) -> None:
        """A scored timestep of a stream (after its events were told; ``rate`` its audio's sample rate): its
        audio joins the stream's tail and the sound of its open events."""
        if ts.audio_missing:
            return
        audio = np.array(ts.audio, dtype=np.float32)  # its own samples: a view would keep the whole window alive
        s_a = scores.s_a if scores.has_a else 0.0
        tail = self._tails.get(ts.stream_id)
        if tail is None or tail.rate != rate:
            tail = self._tails[ts.stream_id] = AudioTail(rate)
        tail.add(ts.t, audio, s_a)
        for tagged in self._hearing.get(ts.stream_id, ()):
            if ts.t > tagged.seen_t:
                self._hear(tagged, [(ts.t, audio, s_a)])

    def started(self, event: Event) -> None:
        """An event started: its sound so far (from its first timestep) and its bed, from the stream's tail."""
        tail = self._tails.get(event.stream)
        if tail is None:
            tagged = _Tagged(event, np.zeros(0, np.float32), VAD_RATE)  # no audio heard yet: none will be tagged
        else:
            tagged = _Tagged(event, tail.bed(event.t, BED_S), tail.rate)
        self._open[event.id] = tagged
        self._hearing.setdefault(event.stream, []).append(tagged)
        if tail is not None:
            self._hear(tagged, tail.since(event.t))

    def ended(self, event: Event) -> dict[str, Tag]:
        """An event ended: its last sound is tagged (when there is any not heard yet); the tags known now."""
        tagged = self._open.get(event.id)
        if tagged is None:
            return {}
        tagged.ended = True
        hearing = self._hearing.get(event.stream, [])
        if tagged in hearing:
            hearing.remove(tagged)
        if tagged.sound_s > tagged.asked_s:
            self._ask(tagged)
        else:
            self._settle(event.id)
        return dict(tagged.tags)

    def is_open(self, event_id: str) -> bool:
        tagged = self._open.get(event_id)
        return tagged is not None and not tagged.ended

    def forget(self, stream_id: str) -> None:
        """A stream has ended: its tail (its events ended through :meth:`ended` first)."""
        self._tails.pop(stream_id, None)
        self._hearing.pop(stream_id, None)

    def _hear(self, tagged: _Tagged, steps: list[tuple[float, npt.NDArray[np.float32], float]]) -> None:
        for t, audio, s_a in steps:
            tagged.seen_t = max(tagged.seen_t, t)
            if s_a > SOUND_S_A and tagged.sound_s < WINDOW_S:
                tagged.sound.append(audio)
                tagged.sound_s += len(audio) / tagged.rate
        due = FIRST_S if tagged.asked_s == 0 else tagged.asked_s + AGAIN_S
        if tagged.sound_s >= min(due, WINDOW_S) and tagged.sound_s > tagged.asked_s:
            self._ask(tagged)

    def picture(self, event: Event, jpeg: Awaitable[bytes | None], box: Box | None) -> Coroutine[Any, Any, None] | None:
        """An event's best picture so far (at its start; its peak's at its end), being encoded: what to await
        (in a task) for its request; None for an event not being tagged. Ask before :meth:`ended`."""
        tagged = self._open.get(event.id)
        if tagged is None:
            return None
        tagged.pictures += 1
        self._idle.clear()
        return self._picture(tagged, jpeg, box)

    async def _picture(self, tagged: _Tagged, jpeg: Awaitable[bytes | None], box: Box | None) -> None:
        event = tagged.event
        try:
            picture = await jpeg
        except Exception as exc:  # a picture is a nicety: the event goes on without its tags
            log.warning("stream '%s': tags: no picture: %s", event.stream, exc)
            picture = None
        finally:
            tagged.pictures -= 1
        if picture is not None and event.id in self._open:
            self._ask(tagged, picture=picture, box=box)
        else:
            self._settle(event.id)
            self._check_idle()

    def _ask(self, tagged: _Tagged, *, picture: bytes | None = None, box: Box | None = None) -> None:
        """Queue the event's request: its sound so far when asked for it, else what a queued one holds; a picture
        when given, else a queued one's."""
        event_id = tagged.event.id
        queued = self._queue.pop(event_id, None)  # a newer request of the same event replaces the older
        if picture is None:
            tagged.asked_s = tagged.sound_s
            sound = np.concatenate(tagged.sound) if tagged.sound else np.zeros(0, np.float32)
            picture, box = (queued.picture, queued.box) if queued is not None else (None, None)
        else:
            sound = queued.sound if queued is not None else np.zeros(0, np.float32)
        self._queue[event_id] = Request(tagged.event.stream, event_id, sound, tagged.bed, tagged.rate,
                                        time.monotonic(), picture, box)  # fmt: skip
        while len(self._queue) > QUEUE:
            dropped, _ = self._queue.popitem(last=False)
            self.drops += 1
            self._settle(dropped)
        self._idle.clear()
        self._wake.set()

    def _settle(self, event_id: str) -> None:
        """An ended event with nothing left to tag is let go."""
        tagged = self._open.get(event_id)
        if (tagged is not None and tagged.ended and event_id not in self._queue and event_id not in self._busy
                and not tagged.pictures):  # fmt: skip
            del self._open[event_id]

    def _check_idle(self) -> None:
        """Nothing queued, being tagged, or being encoded (an event waiting for its picture stays open)."""
        if not self._queue and not self._busy and not any(t.pictures for t in self._open.values()):
            self._idle.set()

    async def drain(self, seconds: float) -> None:
        """Wait until every request is tagged and every picture asked for is in (the end of a run), ``seconds`` at
        most."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._idle.wait()

    # -- the tagging thread ----------------------------------------------------------------------------------------

    async def run(self) -> None:
        """Until cancelled: requests to the tagging thread, in batches, within the budget."""
        loop = asyncio.get_running_loop()
        try:
            while True:
                await self._wake.wait()
                self._wake.clear()
                while self._queue:
                    await self._within_budget()
                    batch = self._take()
                    if not batch:
                        break
                    self._busy = {r.event_id for r in batch}
                    try:
                        results, cpu = await loop.run_in_executor(self._executor, self._tag, batch)
                    finally:
                        self._busy = set()
                    self._tokens -= cpu
                    self.cpu_s += cpu
                    self.tagged += len(batch)
                    for request, tags in zip(batch, results, strict=True):
                        self._merge(request.event_id, tags)
                self._check_idle()
        finally:
            self._executor.shutdown(wait=False, cancel_futures=True)

    async def _within_budget(self) -> None:
        if not self.live:  # files alone: their analysis waits for nothing live, and every event gets its tags
            return
        now = time.monotonic()
        budget = self.config.budget
        self._tokens = min(budget * BURST_S, self._tokens + (now - self._refilled) * budget)
        self._refilled = now
        if self._tokens < 0:
            await asyncio.sleep(-self._tokens / budget)

    def _take(self) -> list[Request]:
        """The queued requests (the oldest first) that did not wait too long."""
        now, batch = time.monotonic(), []
        while self._queue:
            event_id, request = self._queue.popitem(last=False)
            if self.live and now - request.asked > MAX_WAIT_S:
                self.drops += 1
                self._settle(event_id)
                continue
            batch.append(request)
        return batch

    def _tag(self, batch: list[Request]) -> tuple[list[list[Tag]], float]:
        started = time.thread_time()
        results: list[list[Tag]] = [[] for _ in batch]
        for tagger in self.taggers:
            try:
                for found, tags in zip(results, tagger.tag(batch), strict=True):
                    found.extend(tags)
            except Exception as exc:  # a tagger that fails costs its tags, never the analysis
                log.warning("tags: %s failed: %s", type(tagger).__name__, exc)
        return results, time.thread_time() - started

    def _merge(self, event_id: str, tags: list[Tag]) -> None:
        tagged = self._open.get(event_id)
        if tagged is None:
            return
        changed = False
        for tag in tags:
            known = tagged.tags.get(tag.label)
            if known is None or tag.confidence >= known.confidence + NEWER:
                tagged.tags[tag.label] = tag
                changed = True
        if changed:
            self.tell(tagged.event, dict(tagged.tags))
        self._settle(event_id)
