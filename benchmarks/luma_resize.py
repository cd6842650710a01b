"""The analysis image's cost: streamer's luma downscale against OpenCV's full area average, in the same run.

    .venv/bin/python benchmarks/luma_resize.py [--size 160x90] [--repeats 2000] [media files ...]

For common camera sizes (noise blurred over a few pixels: detail at about the scale of the result's pixels),
and for the first frame of each file given (real pictures), prints the time per frame of each, their ratio, and
how far the result lies from the full average (mean absolute difference in grey levels). The full average
(``cv2.INTER_AREA``) is the reference for quality; its cost depends on whether the ratio is a whole number (fast)
or not (slow: it builds its tables on every call).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from typing import Any

import av
import cv2
import numpy as np

from streamer.luma import _downscale

SIZES = ((320, 240), (352, 288), (360, 288), (640, 360), (640, 480), (704, 576), (1280, 720), (1920, 1080))


def per_call(fn: Callable[[], Any], repeats: int) -> float:
    fn()
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - start) / repeats


def row(name: str, image: np.ndarray[Any, Any], size: tuple[int, int], repeats: int) -> str:
    full = per_call(lambda: cv2.resize(image, size, interpolation=cv2.INTER_AREA), repeats)
    ours = per_call(lambda: _downscale(image, size), repeats)
    reference = cv2.resize(image, size, interpolation=cv2.INTER_AREA).astype(np.float64)
    error = float(np.abs(_downscale(image, size) - reference).mean())
    return f"| {name} | {full * 1e6:.0f} | {ours * 1e6:.0f} | {ours / full:.2f} | {error:.2f} |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="*")
    parser.add_argument("--size", default="160x90")
    parser.add_argument("--repeats", type=int, default=2000)
    args = parser.parse_args()
    width, height = (int(v) for v in args.size.split("x"))
    cv2.setNumThreads(1)  # as in an ingest process with many streams: no gain from threads on small pictures
    print("| picture | full average, us | streamer, us | ratio | mean abs. difference |")
    print("| --- | --- | --- | --- | --- |")
    rng = np.random.default_rng(0)
    for w, h in SIZES:
        noise = rng.integers(0, 256, (h, w), dtype=np.uint8)
        image = cv2.GaussianBlur(noise, (0, 0), w / width)
        image = cv2.normalize(image, None, 0, 255, cv2.NORM_MINMAX)
        print(row(f"{w}x{h} synthetic", image, (width, height), args.repeats))
    for path in args.files:
        with av.open(path) as container:
            frame = next(container.decode(video=0))
            image = frame.to_ndarray(format="gray")
        print(row(f"{path.rsplit('/', 1)[-1]} ({frame.width}x{frame.height})", image, (width, height), args.repeats))


if __name__ == "__main__":
    main()
