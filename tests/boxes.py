"""Checks on snapshots: the event's box drawn as a red rectangle (streamer.snapshot), or none."""

from __future__ import annotations

import cv2
import numpy as np
import numpy.typing as npt

from streamer.media import Box
from streamer.snapshot import box_pixels, box_thickness

RED = 80  # a pixel is the box's red when its red channel leads the others by this much (after JPEG)


def redness(jpeg: bytes) -> npt.NDArray[np.int_]:
    """Per pixel of the decoded JPEG: red minus the larger of green and blue."""
    decoded = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    assert decoded is not None
    image = decoded.astype(int)
    return np.asarray(image[..., 2] - np.maximum(image[..., 0], image[..., 1]))


def check_drawn(jpeg: bytes | None, box: Box) -> None:
    """Each side of the box is red all along, inside the box's pixels; the rest of the picture is not red."""
    assert jpeg is not None and jpeg[:3] == b"\xff\xd8\xff"
    red = redness(jpeg)
    height, width = red.shape
    left, top, right, bottom = box_pixels(box, height, width)
    t = box_thickness(height, width)
    sides = {  # each side's lines, averaged across them: every pixel along the side
        "top": red[top : top + t, left : right + 1].mean(axis=0),
        "bottom": red[bottom - t + 1 : bottom + 1, left : right + 1].mean(axis=0),
        "left": red[top : bottom + 1, left : left + t].mean(axis=1),
        "right": red[top : bottom + 1, right - t + 1 : right + 1].mean(axis=1),
    }
    for name, side in sides.items():
        assert side.min() > RED, (name, side)
    elsewhere = np.ones_like(red, dtype=bool)
    elsewhere[max(top - 2, 0) : bottom + 3, max(left - 2, 0) : right + 3] = False
    elsewhere[top + t + 2 : bottom - t - 1, left + t + 2 : right - t - 1] = True  # inside the box too
    assert (red[elsewhere] > RED).mean() < 0.001


def check_plain(jpeg: bytes | None) -> None:
    assert jpeg is not None and jpeg[:3] == b"\xff\xd8\xff"
    assert (redness(jpeg) > RED).mean() < 0.001
