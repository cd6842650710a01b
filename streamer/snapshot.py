"""Event snapshots: the peak frame at full resolution as a JPEG (OpenCV), published retained per stream.

Where the picture changed unusually at the peak (the event's ``peak_box``: normalized x0, y0, x1, y1, y down) is
drawn on it as a rectangle (:data:`BOX_COLOUR`, :func:`box_thickness` pixels, inside the box) before encoding;
an event without one (sound only) gives the picture as it is."""

from __future__ import annotations

import math

import cv2
import numpy as np
import numpy.typing as npt

from .media import Box, FullFrame, VideoFrame

JPEG_QUALITY = 85
BOX_COLOUR = (0, 0, 255)  # BGR: red


def encode_jpeg(frame: VideoFrame, quality: int = JPEG_QUALITY, box: Box | None = None) -> bytes | None:
    """The frame's full-resolution picture as JPEG bytes, ``box`` drawn on it; None when the source kept no full
    frame."""
    return None if frame.full is None else encode_full(frame.full, quality, box)


def encode_full(full: FullFrame, quality: int = JPEG_QUALITY, box: Box | None = None) -> bytes:
    image = full.to_bgr()
    if box is not None:
        image = draw_box(image.copy(), box)  # a copy: a camera's frame is its own array, shared
    ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise ValueError("OpenCV could not encode the frame as JPEG")
    return bytes(data.tobytes())


def box_thickness(height: int, width: int) -> int:
    """The rectangle's lines: 2 px up to 480 lines, 3 from 720."""
    return max(2, min(3, round(min(height, width) / 240)))


def box_pixels(box: Box, height: int, width: int) -> tuple[int, int, int, int]:
    """The pixels the box covers, inclusive: left, top, right, bottom (clipped to the picture). A pixel it covers
    by less than a quarter does not count: the box as published (4 decimals) gives the same pixels."""
    x0, y0, x1, y1 = box
    left = min(max(math.floor(x0 * width + 0.25), 0), width - 1)
    top = min(max(math.floor(y0 * height + 0.25), 0), height - 1)
    right = min(max(math.ceil(x1 * width - 0.25) - 1, left), width - 1)
    bottom = min(max(math.ceil(y1 * height - 0.25) - 1, top), height - 1)
    return left, top, right, bottom


def draw_box(image: npt.NDArray[np.uint8], box: Box) -> npt.NDArray[np.uint8]:
    """Draw ``box`` on the (height, width, 3) BGR ``image`` in place: its outline, lines inside the box."""
    height, width = image.shape[:2]
    left, top, right, bottom = box_pixels(box, height, width)
    inset = box_thickness(height, width) - 1
    # cv2.rectangle centres a thick line on its corners: a filled rectangle per side keeps every line inside
    for (a, b), (c, d) in (
        ((left, top), (right, min(top + inset, bottom))),
        ((left, max(bottom - inset, top)), (right, bottom)),
        ((left, top), (min(left + inset, right), bottom)),
        ((max(right - inset, left), top), (right, bottom)),
    ):
        cv2.rectangle(image, (a, b), (c, d), BOX_COLOUR, thickness=cv2.FILLED)
    return image
