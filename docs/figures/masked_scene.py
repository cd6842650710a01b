"""The picture of a masked scene in docs/zones.md: a frame of a real recording with a stream's ``mask`` shaded, a
zone outlined with its name, and an event's box drawn as the snapshot draws it.

Run by hand (never at install or test time), from the repository root::

    python docs/figures/masked_scene.py                 # writes docs/figures/masked_scene.jpg
    python docs/figures/masked_scene.py --toml          # prints the stream's settings the picture shows

The recording (``../shared/realworld/D8_crossroads_traffic.mp4``: a CCTV camera over a crossroads with steady
traffic, 640x480) is not in the repository; ``--clip`` and ``--at`` pick another frame. The mask and the zone are
:data:`SETTINGS`, as a config file holds them; the event's box is the cells (16x9 grid) where a pedestrian walks
on the corner's pavement at 8 s."""

from __future__ import annotations

import argparse
import sys
import tomllib
from pathlib import Path
from typing import Any

import av
import cv2
import numpy as np
import numpy.typing as npt

from streamer.snapshot import draw_box

HERE = Path(__file__).resolve().parent
CLIP = HERE.parents[1] / ".." / "shared" / "realworld" / "D8_crossroads_traffic.mp4"
OUT = HERE / "masked_scene.jpg"
AT = 8.0  # seconds: a pedestrian on the corner's pavement, cars on the road
MAX_BYTES = 120_000

# What the picture shows, as a stream's settings in a config file: the road's lanes and the burnt-in clock are
# busy in their usual way (masked); the corner's pavement is a zone with events of its own.
SETTINGS = """\
[[streams]]
name = "crossroads"
source = "rtsp://cam.local/crossroads"
mask = [
  [[0, 0], [0.42, 0], [0.42, 0.06], [0, 0.06]],
  [[0, 0.23], [0.27, 0.22], [0.92, 0.33], [1, 0.33], [1, 0.52], [0.94, 0.52], [0.73, 0.64], [0.47, 0.5],
   [0.09, 0.34], [0, 0.33]],
]

[[streams.zones]]
name = "pavement"
polygon = [[0.56, 1], [0.62, 0.8], [0.67, 0.62], [1, 0.58], [1, 1]]
"""
GRID = (16, 9)  # the video model's cells
EVENT_CELLS = (11, 6, 12, 7)  # first and last cell (x, y) that changed unusually: the pedestrian

MASK_COLOUR = (40, 40, 40)  # BGR
ZONE_COLOUR = (0, 215, 255)  # BGR: amber


def frame_at(clip: Path, at: float) -> npt.NDArray[np.uint8]:
    """The first frame at or after ``at`` seconds, BGR."""
    with av.open(str(clip)) as container:
        stream = container.streams.video[0]
        assert stream.time_base is not None
        container.seek(int(max(at - 1.0, 0.0) / stream.time_base), stream=stream, backward=True)
        for frame in container.decode(stream):
            if frame.time is not None and frame.time >= at - 1e-6:
                return np.asarray(frame.to_ndarray(format="bgr24"), np.uint8)
    raise SystemExit(f"{clip}: no frame at {at} s")


def pixels(polygon: list[list[float]], width: int, height: int) -> npt.NDArray[np.int32]:
    return np.array([[round(x * (width - 1)), round(y * (height - 1))] for x, y in polygon], np.int32)


def label(image: npt.NDArray[np.uint8], text: str, at: tuple[int, int], colour: tuple[int, int, int]) -> None:
    """``text`` on a dark band, its top left at ``at`` (kept inside the picture)."""
    font, scale, thick = cv2.FONT_HERSHEY_SIMPLEX, 0.5, 1
    (w, h), base = cv2.getTextSize(text, font, scale, thick)
    x = min(max(at[0], 0), image.shape[1] - w - 6)
    y = min(max(at[1], 0), image.shape[0] - h - base - 4)
    cv2.rectangle(image, (x, y), (x + w + 6, y + h + base + 4), (20, 20, 20), cv2.FILLED)
    cv2.putText(image, text, (x + 3, y + h + 2), font, scale, colour, thick, cv2.LINE_AA)


def draw(image: npt.NDArray[np.uint8], stream: dict[str, Any]) -> npt.NDArray[np.uint8]:
    height, width = image.shape[:2]
    shaded = image.copy()
    masks = [pixels(polygon, width, height) for polygon in stream.get("mask", [])]
    cv2.fillPoly(shaded, masks, MASK_COLOUR)
    out = np.asarray(cv2.addWeighted(image, 0.35, shaded, 0.65, 0.0), np.uint8)
    for pts in masks:
        cv2.polylines(out, [pts], True, (200, 200, 200), 1, cv2.LINE_AA)
    road = max(masks, key=lambda p: cv2.contourArea(p))
    x, y, w, h = cv2.boundingRect(road)
    label(out, "mask: ignored", (x + w // 2 - 50, y + h // 2 - 8), (230, 230, 230))

    for zone in stream.get("zones", []):
        pts = pixels(zone["polygon"], width, height)
        cv2.polylines(out, [pts], True, ZONE_COLOUR, 2, cv2.LINE_AA)
        x, y, w, h = cv2.boundingRect(pts)
        label(out, f"zone: {zone['name']}", (x + w - 120, y + h - 24), ZONE_COLOUR)

    gw, gh = GRID
    x0, y0, x1, y1 = EVENT_CELLS
    box = (x0 / gw, y0 / gh, (x1 + 1) / gw, (y1 + 1) / gh)
    draw_box(out, box)  # as streamer.snapshot draws it on an event's snapshot
    label(out, "event", (round(box[0] * width), round(box[1] * height) - 20), (80, 80, 255))
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clip", type=Path, default=CLIP, help="the recording (default: %(default)s)")
    parser.add_argument("--at", type=float, default=AT, help="seconds into it (default: %(default)s)")
    parser.add_argument("--out", type=Path, default=OUT, help="the JPEG written (default: %(default)s)")
    parser.add_argument("--toml", action="store_true", help="print the stream's settings the picture shows")
    args = parser.parse_args()
    if args.toml:
        print(SETTINGS, end="")
        return 0
    stream = tomllib.loads(SETTINGS)["streams"][0]
    picture = draw(frame_at(args.clip.resolve(), args.at), stream)
    for quality in (90, 85, 80, 75, 70, 60):
        ok, data = cv2.imencode(".jpg", picture, [cv2.IMWRITE_JPEG_QUALITY, quality, cv2.IMWRITE_JPEG_OPTIMIZE, 1])
        if ok and len(data) < MAX_BYTES:
            args.out.write_bytes(data.tobytes())
            print(f"{args.out}: {picture.shape[1]}x{picture.shape[0]}, quality {quality}, {len(data)} bytes")
            return 0
    print(f"{args.out}: not written: over {MAX_BYTES} bytes at quality 60", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
