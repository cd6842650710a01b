"""The small luma image the analysis reads, taken from a decoded frame as cheaply as possible.

For planar YUV and NV12/NV21 frames, plane 0 already is the luma: it is read in place (a strided view, no
copy) and area-averaged down to the analysis size by OpenCV; other pixel formats go through swscale.
"""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np

from .media import LumaImage

# 8-bit pixel formats whose first plane is the luma (Y) plane.
_Y_PLANE_FORMATS = frozenset(
    {
        "yuv420p", "yuvj420p", "yuv422p", "yuvj422p", "yuv444p", "yuvj444p", "yuv440p", "yuvj440p",
        "yuv411p", "yuv410p", "yuva420p", "nv12", "nv21", "nv16", "gray",
    }
)  # fmt: skip


def luma_from_av(frame: Any, size: tuple[int, int]) -> LumaImage:
    """``av.VideoFrame`` -> ``(height, width)`` uint8 luma at ``size = (width, height)``."""
    width, height = size
    if frame.format.name in _Y_PLANE_FORMATS:
        plane = frame.planes[0]
        rows = np.frombuffer(plane, np.uint8).reshape(-1, plane.line_size)
        y = rows[: frame.height, : frame.width]
        if (frame.width, frame.height) == size:
            return y.copy()
        return np.asarray(cv2.resize(y, size, interpolation=cv2.INTER_AREA), dtype=np.uint8)
    converted: LumaImage = frame.reformat(width=width, height=height, format="gray").to_ndarray()
    return np.ascontiguousarray(converted.reshape(height, -1)[:, :width])


def luma_from_bgr(image: np.ndarray[Any, Any], size: tuple[int, int]) -> LumaImage:
    """OpenCV BGR ``(h, w, 3)`` -> luma ``(height, width)``, scaled first so the colour conversion is small."""
    small = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
    return np.asarray(cv2.cvtColor(small, cv2.COLOR_BGR2GRAY), dtype=np.uint8)
