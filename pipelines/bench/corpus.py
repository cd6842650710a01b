"""A corpus of malformed media, made from real encodes (nothing committed): each case a file and what
``streamer run`` must do with it, analyze it as far as it goes or end its stream with one line naming the cause.

:func:`encode` writes a small real clip (H.264 and AAC by default, a dark picture with a white box and a beep at
``event``); :func:`build` derives the cases from such clips: truncations at many offsets, bit flips in the headers
and in the payload, a wrong extension, no bytes at all, absurd declared sizes and time scales, timestamps that
jump back or far ahead, decode timestamps that go back, a mid-stream change of resolution, of audio sample rate
and of channel layout (MPEG-TS segments one after another, as a camera's or a concatenation's), 8 kHz mono and
96 kHz 7.1 audio, and an audio track that ends early. :func:`mutate` is the random mutation the longer fuzz run
(``benchmarks/fuzz_media.py``) draws from.

Used by ``tests/test_corpus.py`` (every case with its expected outcome, in one run beside a healthy stream) and
``benchmarks/fuzz_media.py``.
"""

from __future__ import annotations

import random
import struct
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np

ANALYZED, FAILED, EITHER = "analyzed", "failed", "either"


@dataclass(frozen=True)
class Case:
    name: str  # the stream's name in the run
    path: Path
    expect: str  # ANALYZED, FAILED or EITHER (analyzed as far as it goes, or one line)
    min_t: float = 0.0  # ANALYZED: media seconds it must reach at least
    why: str = ""  # FAILED: words the line must hold


def encode(path: Path, *, seconds: float = 6.0, size: tuple[int, int] = (320, 240), fps: int = 30,
           rate: int = 48000, layout: str = "stereo", audio_codec: str = "aac", audio_seconds: float | None = None,
           event: float | None = 3.0, offset: float = 0.0, fmt: str | None = None) -> Path:  # fmt: skip
    """A real clip: H.264 (one key frame a second) over a dark picture and ``audio_codec`` noise, a white box
    and a beep at ``event`` s; timestamps start at ``offset`` s; ``audio_seconds``: an audio track shorter than
    the video. ``fmt``: the container when the suffix does not say it (``mpegts``)."""
    width, height = size
    with av.open(str(path), "w", format=fmt) as out:
        video = out.add_stream("libx264", rate=fps, options={"preset": "ultrafast", "g": str(fps), "bf": "0"})
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        audio: Any = out.add_stream(audio_codec, rate=rate, layout=layout)
        channels = av.AudioLayout(layout).nb_channels
        rng = np.random.default_rng(0)
        for i in range(int(seconds * fps)):
            t = i / fps
            image = np.full((height, width), 30, np.uint8)
            if event is not None and event <= t < event + 0.1:
                image[height // 4 : 3 * height // 4, width // 4 : 3 * width // 4] = 235
            frame = av.VideoFrame.from_ndarray(image, format="gray").reformat(format="yuv420p")
            frame.pts, frame.time_base = i + round(offset * fps), Fraction(1, fps)
            out.mux(video.encode(frame))
        n = 1024
        for j in range(int((audio_seconds if audio_seconds is not None else seconds) * rate / n)):
            times = (j * n + np.arange(n)) / rate
            sound = rng.normal(0, 0.003, n)
            if event is not None:
                beep = (times >= event) & (times < event + 0.2)
                sound = sound + np.where(beep, 0.5 * np.sin(2 * np.pi * 1000 * times), 0.0)
            # packed: PyAV gives a planar frame of more than 8 channels one plane too many
            packed = np.repeat(sound, channels).astype(np.float32)[None, :]
            chunk = av.AudioFrame.from_ndarray(packed, format="flt", layout=layout)
            chunk.sample_rate, chunk.pts, chunk.time_base = rate, j * n + round(offset * rate), Fraction(1, rate)
            out.mux(audio.encode(chunk))
        out.mux(video.encode())
        out.mux(audio.encode())
    return path


def _truncated(data: bytes, share: float) -> bytes:
    return data[: int(len(data) * share)]


def _flipped(data: bytes, start: float, end: float, flips: int, seed: int) -> bytes:
    rng = random.Random(seed)
    out = bytearray(data)
    lo, hi = int(len(out) * start), max(int(len(out) * start) + 1, int(len(out) * end))
    for _ in range(flips):
        out[rng.randrange(lo, hi)] ^= 1 << rng.randrange(8)
    return bytes(out)


def _patched_boxes(data: bytes, box: bytes, offset: int, value: bytes) -> bytes:
    """Every MP4 box named ``box`` with ``value`` written ``offset`` bytes after its name."""
    out = bytearray(data)
    at = out.find(box)
    while at >= 0:
        out[at + offset : at + offset + len(value)] = value
        at = out.find(box, at + 4)
    return bytes(out)


def build(folder: Path) -> list[Case]:
    """The corpus in ``folder``: each case and what a run must do with it."""
    folder.mkdir(parents=True, exist_ok=True)
    mp4 = encode(folder / "base.mp4")
    ts = encode(folder / "base.ts", fmt="mpegts")
    mkv = encode(folder / "base.mkv")
    data = {"mp4": mp4.read_bytes(), "ts": ts.read_bytes(), "mkv": mkv.read_bytes()}
    cases: list[Case] = []

    def write(name: str, suffix: str, content: bytes, expect: str, min_t: float = 0.0, why: str = "") -> None:
        path = folder / f"{name}.{suffix}"
        path.write_bytes(content)
        cases.append(Case(name, path, expect, min_t, why))

    # truncations: an MP4 without its index (written last) is not a media file; a stream cut anywhere plays
    # up to the cut
    for share in (0.001, 0.3, 0.7):
        write(f"mp4_cut_{round(share * 1000)}", "mp4", _truncated(data["mp4"], share), FAILED, why="cannot open")
    write("mp4_cut_999", "mp4", _truncated(data["mp4"], 0.999), EITHER)  # the index's last bytes
    for share, reach in ((0.05, 0.0), (0.3, 1.0), (0.6, 2.5), (0.9, 4.5)):
        write(f"ts_cut_{round(share * 100)}", "ts", _truncated(data["ts"], share), EITHER if reach == 0 else ANALYZED,
              min_t=reach)  # fmt: skip
    for share, reach in ((0.5, 2.0), (0.95, 4.5)):
        write(f"mkv_cut_{round(share * 100)}", "mkv", _truncated(data["mkv"], share), ANALYZED, min_t=reach)
    # bit flips: in the first kilobytes (headers) and in the payload
    for kind in ("mp4", "ts", "mkv"):
        head = 2048 / len(data[kind])
        write(f"{kind}_head_flips", kind, _flipped(data[kind], 0.0, head, 24, seed=1), EITHER)
        write(f"{kind}_body_flips", kind, _flipped(data[kind], 0.3, 0.9, 300, seed=2), EITHER)
    # a wrong extension: what is inside counts
    write("mkv_named_mp4", "mp4", data["mkv"], ANALYZED, min_t=5.0)
    write("ts_named_avi", "avi", data["ts"], ANALYZED, min_t=5.0)
    write("empty", "mp4", b"", FAILED, why="cannot open")
    write("random_bytes", "mp4", random.Random(3).randbytes(50_000), FAILED, why="cannot open")
    # absurd declared sizes and time scales (MP4 boxes: tkhd's width and height, mdhd's time scale)
    write("mp4_huge_size", "mp4", _patched_boxes(data["mp4"], b"tkhd", 80, struct.pack(">II", 0xFFFF0000, 0xFFFF0000)),
          ANALYZED, min_t=5.0)  # fmt: skip
    write("mp4_timescale_1", "mp4", _patched_boxes(data["mp4"], b"mdhd", 16, struct.pack(">I", 1)), EITHER)
    write("mp4_timescale_huge", "mp4", _patched_boxes(data["mp4"], b"mdhd", 16, struct.pack(">I", 0xFFFFFFFF)),
          EITHER)  # fmt: skip
    write("mp4_timescale_0", "mp4", _patched_boxes(data["mp4"], b"mdhd", 16, struct.pack(">I", 0)), EITHER)
    # timestamps: back to zero (two recordings one after another), far ahead, decode times that go back
    later = encode(folder / "later.ts", fmt="mpegts", offset=10_000.0).read_bytes()
    overlap = encode(folder / "overlap.ts", fmt="mpegts", offset=5.0).read_bytes()
    write("ts_jump_back", "ts", data["ts"] + data["ts"], ANALYZED, min_t=5.0)
    write("ts_jump_ahead", "ts", data["ts"] + later, ANALYZED, min_t=5.0)
    write("ts_dts_back", "ts", data["ts"] + overlap, ANALYZED, min_t=5.0)
    # mid-stream changes (MPEG-TS segments: the decoder meets new parameters in band)
    bigger = encode(folder / "bigger.ts", fmt="mpegts", size=(640, 360), offset=6.0).read_bytes()
    slower = encode(folder / "slower.ts", fmt="mpegts", rate=22050, offset=6.0).read_bytes()
    mono = encode(folder / "mono.ts", fmt="mpegts", layout="mono", offset=6.0).read_bytes()
    write("ts_resolution_change", "ts", data["ts"] + bigger, ANALYZED, min_t=10.0)
    write("ts_rate_change", "ts", data["ts"] + slower, ANALYZED, min_t=10.0)
    write("ts_layout_change", "ts", data["ts"] + mono, ANALYZED, min_t=10.0)
    # unusual audio, and a track that ends early
    encode(folder / "audio_8k_mono.mp4", rate=8000, layout="mono")
    cases.append(Case("audio_8k_mono", folder / "audio_8k_mono.mp4", ANALYZED, 5.0))
    encode(folder / "audio_96k_71.mkv", rate=96000, layout="7.1")
    cases.append(Case("audio_96k_71", folder / "audio_96k_71.mkv", ANALYZED, 5.0))
    encode(folder / "audio_ends_early.mkv", audio_seconds=2.0)
    cases.append(Case("audio_ends_early", folder / "audio_ends_early.mkv", ANALYZED, 5.0))
    for scratch in ("later.ts", "overlap.ts", "bigger.ts", "slower.ts", "mono.ts"):
        (folder / scratch).unlink()
    return cases


Mutation = Callable[[bytes, random.Random], bytes]


def mutate(data: bytes, rng: random.Random) -> bytes:
    """One random mutation of ``data`` (a few stacked at times), for the longer fuzz run."""

    def cut(d: bytes, r: random.Random) -> bytes:
        return d[: r.randrange(len(d) + 1)]

    def flips(d: bytes, r: random.Random) -> bytes:
        start = r.random() * 0.9
        return _flipped(d, start, min(1.0, start + r.random() * 0.2), r.randrange(1, 200), r.randrange(1 << 30))

    def zeros(d: bytes, r: random.Random) -> bytes:
        at, n = r.randrange(len(d)), r.randrange(1, 4096)
        return d[:at] + bytes(n) + d[at + n :]

    def splice(d: bytes, r: random.Random) -> bytes:  # a piece of the file again, elsewhere
        a, b = sorted(r.randrange(len(d)) for _ in range(2))
        at = r.randrange(len(d))
        return d[:at] + d[a:b] + d[at:]

    def delete(d: bytes, r: random.Random) -> bytes:
        a = r.randrange(len(d))
        return d[:a] + d[a + r.randrange(1, 8192) :]

    mutations: list[Mutation] = [cut, flips, zeros, splice, delete]
    for _ in range(1 + int(rng.random() < 0.3) + int(rng.random() < 0.1)):
        data = rng.choice(mutations)(data, rng) if data else data
    return data
