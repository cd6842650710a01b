"""The analysis image: the luma downscale stays an area average whatever the ratio, on OpenCV's fast paths."""

from __future__ import annotations

import av
import cv2
import numpy as np
import pytest

from streamer.luma import luma_from_av, luma_from_bgr


def _picture(width: int, height: int, detail: float) -> np.ndarray:
    """Smooth random grey picture with detail about ``detail`` pixels across."""
    noise = np.random.default_rng(width * height).integers(0, 256, (height, width), dtype=np.uint8)
    image = cv2.GaussianBlur(noise, (0, 0), detail)
    return cv2.normalize(image, None, 0, 255, cv2.NORM_MINMAX)


@pytest.mark.parametrize(
    ("width", "height"),
    [(320, 240), (352, 288), (360, 288), (333, 251), (480, 360), (320, 180), (640, 360), (1280, 720), (200, 120)],
)
def test_the_luma_image_is_the_area_average_within_a_grey_level_or_two(width: int, height: int) -> None:
    size = (160, 90)
    image = _picture(width, height, detail=width / size[0])
    frame = av.VideoFrame.from_ndarray(image, format="gray")
    luma = luma_from_av(frame, size)
    assert luma.shape == (90, 160) and luma.dtype == np.uint8
    reference = cv2.resize(image, size, interpolation=cv2.INTER_AREA).astype(np.float64)
    # (the 4x-and-more path samples a grid first: the further from 2x, the coarser)
    tolerance = 1.5 if width < 4 * size[0] else 6.0
    assert np.abs(luma - reference).mean() < tolerance
    # a brightness step moves the image by as much: the average is not biased
    brighter = luma_from_av(
        av.VideoFrame.from_ndarray(np.clip(image.astype(np.int16) + 20, 0, 255).astype(np.uint8), format="gray"), size
    )
    assert abs(float(brighter.mean()) - float(luma.mean()) - 20) < 2.0


def test_bgr_pictures_take_the_same_path() -> None:
    image = _picture(320, 240, detail=2.0)
    bgr = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    luma = luma_from_bgr(bgr, (160, 90))
    reference = cv2.resize(image, (160, 90), interpolation=cv2.INTER_AREA).astype(np.float64)
    assert luma.shape == (90, 160)
    assert np.abs(luma - reference).mean() < 1.5
