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
        return np.asarray(_downscale(y, size), dtype=np.uint8)
    converted: LumaImage = frame.reformat(width=width, height=height, format="gray").to_ndarray()
    return np.ascontiguousarray(converted.reshape(height, -1)[:, :width])


def _downscale(image: np.ndarray[Any, Any], size: tuple[int, int]) -> np.ndarray[Any, Any]:
    """Area-average down to ``size``; a large reduction first samples a grid at twice the size.

    Each output pixel then averages 4 source pixels spread over its area. On 1280x720 -> 160x90 a full
    INTER_AREA costs 0.21 ms a frame, a bilinear first step 0.045 ms, this 0.02 ms; in the decode benchmark
    (benchmarks/README.md) the full average cost 13% of file throughput, this about 4%.
    """
    width, height = size
    if image.shape[1] >= 4 * width and image.shape[0] >= 4 * height:
        image = cv2.resize(image, (2 * width, 2 * height), interpolation=cv2.INTER_NEAREST)
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA)


def luma_from_bgr(image: np.ndarray[Any, Any], size: tuple[int, int]) -> LumaImage:
    """OpenCV BGR ``(h, w, 3)`` -> luma ``(height, width)``, scaled first so the colour conversion is small."""
    small = _downscale(image, size)
    return np.asarray(cv2.cvtColor(small, cv2.COLOR_BGR2GRAY), dtype=np.uint8)
