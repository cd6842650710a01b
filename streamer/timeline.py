"""One timeline per stream: raw source timestamps (pts x time_base, seconds) mapped to stream seconds.

A stream is a series of *segments*: one per connection (reconnects), per pass over a file (``--loop``), or
after a timestamp jump. Each segment is anchored at a stream time where it starts; inside a segment, audio and
video share one raw origin, so their relative timing (A/V sync) is exactly the source's. The stream timeline
never goes backwards:

* first segment: the raw origin is the container's start time (the earliest stream's first timestamp) or else
  the first timestamp seen, anchored at 0. Anything before it (encoder priming, negative start times) is trimmed;
* later segments are anchored at a time the caller chooses (end of data for loops, elapsed wall time for live
  reconnects, so an outage shows as a gap);
* a timestamp *jump* re-anchors the segment's shared origin so that the jumping timestamp continues at the end
  of the data seen so far (counted in :attr:`Timeline.jumps`). Both tracks keep one offset: whatever one track
  does, the other one is mapped by the same origin, so a jump never leaves the tracks apart. A jump is a
  timestamp that goes back by more than ``max_back``, forward by more than ``max_jump``, or, while the other
  track is present, leaps ahead of it by more than ``max_skew`` in one step (one track's stray pts, a pts
  wrap-around seen on one track first, the re-synchronization an RTSP client applies once RTCP arrives). A track
  that leaps ahead alone is re-anchored; when the other track's timestamps then look late against the new
  origin, they are re-anchored in turn, and both continue together from the end of the timeline.
"""

from __future__ import annotations

from typing import Literal

Modality = Literal["video", "audio"]
_OTHER: dict[Modality, Modality] = {"video": "audio", "audio": "video"}


class Timeline:
    def __init__(self, *, max_back: float = 0.5, max_jump: float = 10.0, max_skew: float = 2.0) -> None:
        self.max_back = max_back
        self.max_jump = max_jump
        self.max_skew = max_skew
        self.end = 0.0  # the latest stream time any data reached
        self.jumps = 0
        self.segments = 0
        self._anchor = 0.0
        self._origin: float | None = None
        self._offset: float | None = None  # stream time - raw time, shared by both tracks
        self._last: dict[Modality, float] = {}

    @property
    def segment_start(self) -> float:
        return self._anchor

    def start_segment(self, anchor: float, raw_origin: float | None = None) -> None:
        """Begin a segment whose raw time ``raw_origin`` (``None``: its first timestamp) maps to ``anchor``."""
        if anchor < self.end:
            raise ValueError(f"segment anchor {anchor} is before the end of the timeline {self.end}")
        self.segments += 1
        self._anchor = anchor
        self._origin = raw_origin
        self._offset = None
        self._last.clear()

    def to_stream_time(self, modality: Modality, raw: float) -> float:
        """Stream time of a raw timestamp. Results below :attr:`segment_start` are to be trimmed by the caller."""
        if self._offset is None:
            if self._origin is None:
                self._origin = raw
            self._offset = self._anchor - self._origin
        t = raw + self._offset
        last = self._last.get(modality)
        if last is not None and self._jumped(modality, t, last):
            self.jumps += 1
            restart = max(self.end, last)
            self._offset = restart - raw
            t = restart
        self._last[modality] = t
        return t

    def _jumped(self, modality: Modality, t: float, last: float) -> bool:
        if t < last - self.max_back or t > last + self.max_jump:
            return True
        other = self._last.get(_OTHER[modality])
        return other is not None and t - last > self.max_skew and t > other + self.max_skew

    def reached(self, t: float) -> None:
        """Record that data extends to stream time ``t`` (end of a frame or of an audio chunk)."""
        if t > self.end:
            self.end = t
