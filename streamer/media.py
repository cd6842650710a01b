"""The values that flow from a source to the analyzer: frames, audio chunks, timesteps and stream info.

Times named ``t`` are media time: seconds on the stream's own timeline (pts x time_base, rebased so the stream
starts at 0 and never goes backwards across reconnects). ``wall_time`` (unix seconds) is metadata for events
and latency figures, never a clock for synchronization.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

import numpy as np
import numpy.typing as npt

LumaImage = npt.NDArray[np.uint8]  # (height, width), 0-255
Samples = npt.NDArray[np.float32]  # (n,), mono, -1..1
Box = tuple[float, float, float, float]  # where in a picture: x0, y0, x1, y1, normalized (0..1, y down)


class FullFrame(Protocol):
    """The full-resolution picture behind a frame, converted only when asked (e.g. for a snapshot)."""

    # whether it holds the decoded picture in memory (about 1.4 MB at 720p), or can make it again when asked
    resident: ClassVar[bool]

    def to_bgr(self) -> npt.NDArray[np.uint8]:
        """(height, width, 3) BGR, as OpenCV expects."""
        ...


@dataclass(frozen=True, slots=True)
class AvFullFrame:
    """Keeps the decoded ``av.VideoFrame``; converting it costs a swscale pass, paid only on demand."""

    resident: ClassVar[bool] = True
    frame: Any  # av.VideoFrame

    def to_bgr(self) -> npt.NDArray[np.uint8]:
        image: npt.NDArray[np.uint8] = self.frame.to_ndarray(format="bgr24")
        return image


@dataclass(frozen=True, slots=True)
class ArrayFullFrame:
    """A full-resolution BGR image already in memory (camera capture)."""

    resident: ClassVar[bool] = True
    image: npt.NDArray[np.uint8]

    def to_bgr(self) -> npt.NDArray[np.uint8]:
        return self.image


@dataclass(frozen=True, slots=True)
class VideoFrame:
    t: float
    luma: LumaImage
    full: FullFrame | None = field(default=None, repr=False, compare=False)
    duration: float | None = None  # seconds until the next frame, when the source knows it
    wall_time: float = 0.0
    onset: bool = False  # it changed the picture suddenly (streamer.onsets; live streams that decide early)


@dataclass(frozen=True, slots=True)
class AudioChunk:
    t: float  # time of samples[0]
    samples: Samples
    wall_time: float = 0.0
    onset: bool = False  # suddenly louder than the stream's recent audio (streamer.onsets)

    def end(self, sample_rate: int) -> float:
        return self.t + len(self.samples) / sample_rate


@dataclass(frozen=True, slots=True)
class Discontinuity:
    """The stream's timeline restarts at ``t`` (reconnect, loop, camera restart, timestamp jump)."""

    t: float
    reason: str


class SourceState(enum.StrEnum):
    CONNECTING = "connecting"
    ONLINE = "online"
    RECONNECTING = "reconnecting"
    OFFLINE = "offline"
    ENDED = "ended"


@dataclass(frozen=True, slots=True)
class VideoInfo:
    codec: str
    width: int
    height: int
    fps: float | None
    hwaccel: str | None = None  # the hardware device type decoding it ("cuda"), None: software (streamer.hwaccel)


@dataclass(frozen=True, slots=True)
class AudioInfo:
    codec: str
    sample_rate: int
    channels: int


@dataclass(frozen=True, slots=True)
class StreamInfo:
    """What an opened source carries. ``uri`` is already redacted."""

    stream_id: str
    uri: str
    kind: str
    live: bool
    video: VideoInfo | None
    audio: AudioInfo | None
    duration: float | None = None  # seconds, for files that declare it

    def as_dict(self) -> dict[str, Any]:
        def part(info: VideoInfo | AudioInfo | None) -> dict[str, Any] | None:
            if info is None:
                return None
            return {name: getattr(info, name) for name in info.__slots__}

        return {
            "stream": self.stream_id,
            "uri": self.uri,
            "kind": self.kind,
            "live": self.live,
            "duration": self.duration,
            "video": part(self.video),
            "audio": part(self.audio),
        }


@dataclass(frozen=True, slots=True)
class StateChange:
    stream_id: str
    state: SourceState
    detail: str = ""
    retry_in: float | None = None
    wall_time: float = 0.0


@dataclass(frozen=True, slots=True)
class Timestep:
    """Everything one stream captured during ``[t, t + hop)``, timestep ``k = round(t / hop)``.

    ``wall_time`` is when the timestep was cut (unix seconds): metadata for latency figures.

    ``frames`` are the video frames whose time falls in the interval; when none does, the latest earlier frame,
    with ``video_repeated`` set. ``audio_window`` holds ``context`` look-back samples followed by the interval's
    samples (:attr:`audio`); missing audio is zeros. ``*_missing`` says a modality had no data at all (absent from
    the source, or stalled past the sync wait).
    """

    stream_id: str
    k: int
    t: float
    hop: float
    frames: tuple[VideoFrame, ...]
    audio_window: Samples
    context: int
    video_repeated: bool = False
    video_missing: bool = False
    audio_missing: bool = False
    wall_time: float = 0.0
    reset: bool = False  # the first timestep after a discontinuity (a reconnect): the stream starts afresh
    provisional: bool = False  # the open timestep so far, scored before it closes (streamer.sync): never learned

    @property
    def audio(self) -> Samples:
        """The interval's samples, shape ``(round(hop * sample_rate),)`` (the last timestep may be shorter)."""
        return self.audio_window[self.context :]

    @property
    def end(self) -> float:
        return self.t + self.hop
