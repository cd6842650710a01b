"""Events on S(t): a per-stream detector with a threshold, hysteresis and a minimum duration.

* An event *starts* at the first timestep with ``S >= threshold``. Its start is reported once the event has
  lasted ``min_duration`` (0.2 s: two timesteps; shorter blips are never reported), or at once when a
  timestep of it is *clear*: one sense alone at ``clear`` (S_v or S_a >= 0.97), so a clear event waits for
  nothing. Its ``t`` is the first timestep's either way.
* **Deciding on the frame**: a live stream's sudden change is scored before its timestep closes (a
  *provisional* score, :meth:`EventDetector.early`). When it is above the threshold and clear, the event starts
  then, with the same ``t`` (its timestep's), instead of when the timestep closes; nothing else follows from a
  provisional score (marginal evidence waits for the timestep), and the timestep's own score carries the event
  on as usual.
* It *ends* when S has stayed below the threshold for ``min_gap`` seconds; the end's ``t`` is the start of
  the first timestep below the threshold, so the gap shows in latency, not in the reported times.
* At the end of a stream an open event ends with the last timestep (``reason`` ``"stream ended"``); when its
  source is lost (reconnecting, offline) it ends with the last timestep before the outage (``"source lost"``);
  when detection is switched off over MQTT (:mod:`pipelines.stages.control`) it ends then (``"disabled"``);
  otherwise its ``reason`` is ``"quiet"``.

:func:`event_intervals` gives the same events from whole arrays of scores (calibration and evaluation).

Each event has an id (stable from start to end, unique across runs) and records its peak (the timestep with
the highest S) and the per-modality contributions (``alpha * mean S_v`` and ``beta * mean S_a`` over the event).
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, replace
from typing import Any, Literal, overload

import numpy as np
import numpy.typing as npt

from pipelines.config import EventOptions
from streamer.media import Box, VideoFrame

Intervals = list[tuple[float, float]]
EndReason = Literal["quiet", "source lost", "stream ended", "disabled"]


@dataclass(frozen=True, slots=True)
class Scores:
    """One scored timestep of one stream."""

    t: float
    hop: float
    score: float
    s_v: float
    s_a: float
    has_v: bool = True
    has_a: bool = True
    box: Box | None = None  # where the picture changed unusually at t (None: nowhere, or no video)

    @property
    def shown_v(self) -> float | None:
        """S_v as published: None (JSON null) when the stream had no video at t."""
        return self.s_v if self.has_v else None

    @property
    def shown_a(self) -> float | None:
        """S_a as published: None when the stream had no audio at t (no track, a stall, digital silence)."""
        return self.s_a if self.has_a else None

    def as_dict(self) -> dict[str, Any]:
        return {
            "t": round(self.t, 4),
            "score": rounded(self.score),
            "s_v": rounded(self.shown_v),
            "s_a": rounded(self.shown_a),
        }


@dataclass(frozen=True, slots=True)
class Peak:
    t: float
    score: float
    s_v: float | None  # None: the modality was absent
    s_a: float | None


@dataclass(frozen=True, slots=True)
class Event:
    """An event message: ``type`` start or end. Times ``t``/``start_t`` are media seconds, ``wall_time`` unix."""

    type: Literal["start", "end"]
    id: str
    stream: str
    t: float
    wall_time: float
    score: float
    s_v: float | None  # None: the modality was absent
    s_a: float | None
    alpha: float | None  # None when a learned fusion head computes S
    beta: float | None
    start_t: float | None = None  # end only
    duration: float | None = None
    peak: Peak | None = None
    contributions: tuple[float, float] | None = None  # end only: (video, audio)
    reason: EndReason | None = None  # end only: why it ended
    box: Box | None = None  # start: where at the start; end: every unusual place over the event (their union)
    peak_box: Box | None = None  # end only: where at the peak (drawn on the snapshot)
    zone: str | None = None  # a zone's event (pipelines.stages.zones); None: the whole picture's

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "type": self.type,
            "id": self.id,
            "stream": self.stream,
            "t": round(self.t, 4),
            "wall_time": round(self.wall_time, 3),
            "score": rounded(self.score),
            "s_v": rounded(self.s_v),
            "s_a": rounded(self.s_a),
            "alpha": self.alpha,
            "beta": self.beta,
            "box": _box(self.box),
        }
        if self.zone is not None:
            out["zone"] = self.zone
        if self.type == "end":
            assert self.start_t is not None and self.duration is not None and self.peak is not None
            out["start_t"] = round(self.start_t, 4)
            out["duration"] = round(self.duration, 4)
            peak = self.peak
            out["peak"] = {
                "t": round(peak.t, 4),
                "score": rounded(peak.score),
                "s_v": rounded(peak.s_v),
                "s_a": rounded(peak.s_a),
                "box": _box(self.peak_box),
            }
            if self.contributions is not None:
                out["contributions"] = {
                    "video": rounded(self.contributions[0]),
                    "audio": rounded(self.contributions[1]),
                }
            out["reason"] = self.reason
        return out


@overload
def rounded(x: float) -> float: ...
@overload
def rounded(x: float | None) -> float | None: ...
def rounded(x: float | None) -> float | None:
    """A score as messages carry it (events, levels, the web view, reports): 4 decimals; None stays None."""
    return None if x is None else round(float(x), 4)


def _box(box: Box | None) -> list[float] | None:
    return None if box is None else [round(float(v), 4) for v in box]


def union(a: Box | None, b: Box | None) -> Box | None:
    """The smallest box holding both (None: neither)."""
    if a is None or b is None:
        return a or b
    return (min(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3]))


@dataclass
class _Open:
    id: str
    start: Scores
    peak: Scores
    peak_frame: VideoFrame | None
    started: bool = False  # the start message went out
    clear: bool = False  # a timestep of it had one sense at the clear level
    below_since: float | None = None  # start of the first timestep of the current run below the threshold
    sum_v: float = 0.0
    sum_a: float = 0.0
    n: int = 0
    box: Box | None = None  # the union of the boxes over the event
    scored: bool = True  # a timestep of it has been scored (False: started by a provisional score only)


@dataclass(frozen=True, slots=True)
class Ended:
    """An end message with the frame of its peak (for the snapshot)."""

    event: Event
    peak_frame: VideoFrame | None

    @property
    def peak_box(self) -> Box | None:
        """Where the picture changed at the peak: the box to draw on the snapshot."""
        return self.event.peak_box


class EventDetector:
    """``zone``: the detector of one of the stream's zones (its events carry the zone's name)."""

    def __init__(
        self, stream_id: str, options: EventOptions, alpha: float | None, beta: float | None, zone: str | None = None
    ) -> None:
        self.stream_id = stream_id
        self.zone = zone
        self.options = options
        self.alpha = alpha
        self.beta = beta
        self._open: _Open | None = None
        self._last: Scores | None = None
        self.count = 0  # events ended

    @property
    def active(self) -> bool:
        return self._open is not None and self._open.started

    @property
    def peak_frame(self) -> VideoFrame | None:
        """The open event's peak frame so far (None when no event is open)."""
        return self._open.peak_frame if self._open is not None else None

    def update(self, s: Scores, frame: VideoFrame | None = None) -> list[Event | Ended]:
        """Feed one timestep (in order); returns the start/end messages it causes."""
        out: list[Event | Ended] = []
        self._last = s
        o = self._open
        above = s.score >= self.options.threshold
        if o is None:
            if not above:
                return out
            o = self._open = _Open(id=uuid.uuid4().hex, start=s, peak=s, peak_frame=frame)
        elif above:
            o.below_since = None
        else:
            if o.below_since is None:
                o.below_since = s.t
            if s.t + s.hop - o.below_since >= self.options.min_gap - 1e-9:
                out += self._close(o.below_since, "quiet")
                return out
        if not o.scored:  # the first timestep of an event a provisional score started: its peak so far
            o.scored, o.peak, o.peak_frame = True, s, frame if frame is not None else o.peak_frame
        if o.below_since is None:
            o.sum_v += s.s_v
            o.sum_a += s.s_a
            o.n += 1
            o.box = union(o.box, s.box)
            if s.score > o.peak.score:
                o.peak, o.peak_frame = s, frame if frame is not None else o.peak_frame
        if above and self._clear(s):
            o.clear = True
        if not o.started and above and (o.clear or s.t + s.hop - o.start.t >= self.options.min_duration - 1e-9):
            o.started = True
            out.append(self._start(o))
        return out

    def early(self, s: Scores, frame: VideoFrame | None = None) -> list[Event | Ended]:
        """A provisional score of the open timestep (before it closes): a clear one above the threshold starts
        the event now (its ``t`` that timestep's; ``frame`` its picture until a timestep of it is scored);
        anything else waits for the timestep's own score."""
        o = self._open
        if s.score < self.options.threshold or not self._clear(s) or (o is not None and o.started):
            return []
        if o is None:
            o = self._open = _Open(id=uuid.uuid4().hex, start=s, peak=s, peak_frame=frame, scored=False)
        o.clear = o.started = True
        self._last = s  # a stream that stops now ends its event with this timestep
        return [self._start(o)]

    def _clear(self, s: Scores) -> bool:
        return (s.has_v and s.s_v >= self.options.clear) or (s.has_a and s.s_a >= self.options.clear)

    def checkpoint(self) -> dict[str, Any] | None:
        """The open event, if its start went out, for a checkpoint (its peak frame stays behind)."""
        o = self._open
        if o is None or not o.started or self._last is None:
            return None
        return {"open": replace(o, peak_frame=None), "last": self._last}

    def resume(self, checkpoint: dict[str, Any]) -> list[Event | Ended]:
        """The stream moved here (its worker was lost) with an event open: end it where it was last seen, as
        when a source is lost, so every start a subscriber saw gets its end."""
        self._open, self._last = checkpoint["open"], checkpoint["last"]
        return self.flush("source lost")

    def flush(self, reason: EndReason = "stream ended") -> list[Event | Ended]:
        """The stream ended (or its source was lost): close an open event at the end of the last timestep."""
        o, last = self._open, self._last
        if o is None or last is None:
            return []
        return self._close(o.below_since if o.below_since is not None else last.t + last.hop, reason)

    def _close(self, end_t: float, reason: EndReason) -> list[Event | Ended]:
        o, self._open = self._open, None
        assert o is not None
        if not o.started:  # shorter than min_duration
            return []
        self.count += 1
        n = max(o.n, 1)
        event = Event(
            type="end", id=o.id, stream=self.stream_id, t=end_t, wall_time=time.time(), score=o.peak.score,
            s_v=o.peak.shown_v, s_a=o.peak.shown_a, alpha=self.alpha, beta=self.beta, start_t=o.start.t,
            duration=end_t - o.start.t, peak=Peak(o.peak.t, o.peak.score, o.peak.shown_v, o.peak.shown_a),
            contributions=None if self.alpha is None or self.beta is None else (
                self.alpha * o.sum_v / n, self.beta * o.sum_a / n), reason=reason, box=o.box, peak_box=o.peak.box,
            zone=self.zone,
        )  # fmt: skip
        return [Ended(event, o.peak_frame)]

    def _start(self, o: _Open) -> Event:
        s = o.start
        return Event(
            type="start", id=o.id, stream=self.stream_id, t=s.t, wall_time=time.time(), score=s.score, s_v=s.shown_v,
            s_a=s.shown_a, alpha=self.alpha, beta=self.beta, box=s.box, zone=self.zone,
        )  # fmt: skip


def event_intervals(
    t: npt.ArrayLike, scores: npt.ArrayLike, hop: float, options: EventOptions, clear: npt.ArrayLike | None = None
) -> Intervals:
    """The ``(start_t, end_t)`` of the events :class:`EventDetector` reports for these timesteps (``t`` rising,
    one stream, then flushed), computed over whole arrays: for calibration, which tries thousands of settings.
    ``clear``: the timesteps where one sense is at the clear level (:func:`clear_steps`); None: none."""
    s = np.asarray(scores, dtype=np.float64)
    times = np.asarray(t, dtype=np.float64)
    above = s >= options.threshold
    at_once = above & (np.zeros(len(s), bool) if clear is None else np.asarray(clear, bool))
    if not above.any():
        return []
    edges = np.flatnonzero(np.diff(np.concatenate([[False], above, [False]]).astype(np.int8)))
    runs = edges.reshape(-1, 2)  # [first, last + 1) of each run of timesteps at or above the threshold
    out: Intervals = []
    n = len(s)
    i = 0
    while i < len(runs):
        first, stop = int(runs[i][0]), int(runs[i][1])
        reported = times[stop - 1] + hop - times[first] >= options.min_duration - 1e-9 or at_once[first:stop].any()
        # a dip ends the event once a timestep below has reached min_gap after the drop; else it is bridged
        while i + 1 < len(runs) and times[runs[i + 1][0] - 1] + hop - times[stop] < options.min_gap - 1e-9:
            i += 1
            stop = int(runs[i][1])
            reported = reported or times[stop - 1] + hop - times[first] >= options.min_duration - 1e-9
            reported = reported or bool(at_once[runs[i][0] : stop].any())
        if reported:
            out.append((float(times[first]), float(times[stop]) if stop < n else float(times[-1] + hop)))
        i += 1
    return out


def clear_steps(
    s_v: npt.ArrayLike, s_a: npt.ArrayLike, has_v: npt.ArrayLike, has_a: npt.ArrayLike, options: EventOptions
) -> npt.NDArray[np.bool_]:
    """Which timesteps have one sense at the clear level (present and ``>= options.clear``), for
    :func:`event_intervals`."""
    v = np.asarray(has_v, bool) & (np.asarray(s_v, np.float64) >= options.clear)
    return v | (np.asarray(has_a, bool) & (np.asarray(s_a, np.float64) >= options.clear))
