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
    """Area-average down to ``size`` with OpenCV's fast paths only.

    OpenCV's ``INTER_AREA`` is fast for whole-number ratios (a 2x2 average: ~10 us at 320x240) and slow for the
    rest (it builds its tables on every call: 320x240 -> 160x90 costs 0.12-0.19 ms, 360x288 0.2-0.25 ms, more
    than decoding such a frame). So:

    * a reduction of 4x or more first samples a grid at twice the size, then averages 2x2: each output pixel
      averages 4 source pixels spread over its area (1280x720: 0.02 ms against 0.21 ms for a full average; in
      the decode benchmark the full average cost 13% of file throughput, this about 4%);
    * a reduction between 2x and 4x that is not exactly 2x, of a picture of even width and height, averages 2x2,
      then interpolates the rest (less than 2x, where bilinear weights still reach every pixel): 0.025 ms,
      within a grey level of the full average (``benchmarks/luma_resize.py``);
    * anything else (exactly 2x, up to 2x, odd sizes) is the full average.
    """
    width, height = size
    h, w = image.shape[:2]
    if w >= 4 * width and h >= 4 * height:
        image = cv2.resize(image, (2 * width, 2 * height), interpolation=cv2.INTER_NEAREST)
        return cv2.resize(image, size, interpolation=cv2.INTER_AREA)
    if w >= 2 * width and h >= 2 * height and (w, h) != (2 * width, 2 * height) and w % 2 == h % 2 == 0:
        half = cv2.resize(image, (w // 2, h // 2), interpolation=cv2.INTER_AREA)
        return cv2.resize(half, size, interpolation=cv2.INTER_LINEAR)
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA)


def luma_from_bgr(image: np.ndarray[Any, Any], size: tuple[int, int]) -> LumaImage:
    """OpenCV BGR ``(h, w, 3)`` -> luma ``(height, width)``, scaled first so the colour conversion is small."""
    small = _downscale(image, size)
    return np.asarray(cv2.cvtColor(small, cv2.COLOR_BGR2GRAY), dtype=np.uint8)
