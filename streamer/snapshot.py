"""Event snapshots: the peak frame at full resolution as a JPEG (OpenCV), published retained per stream."""

from __future__ import annotations

import cv2

from .media import FullFrame, VideoFrame

JPEG_QUALITY = 85


def encode_jpeg(frame: VideoFrame, quality: int = JPEG_QUALITY) -> bytes | None:
    """The frame's full-resolution picture as JPEG bytes; None when the source kept no full frame."""
    return None if frame.full is None else encode_full(frame.full, quality)


def encode_full(full: FullFrame, quality: int = JPEG_QUALITY) -> bytes:
    ok, data = cv2.imencode(".jpg", full.to_bgr(), [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise ValueError("OpenCV could not encode the frame as JPEG")
    return bytes(data.tobytes())
