"""Masks and zones: a stream's polygons (normalized picture coordinates, :class:`pipelines.config.Zone`) on the
model's pixels and cells, and each zone's own events.

* A ``mask`` becomes an ignore picture (:func:`ignore_mask`): ``(H, W)`` bool at the model's luma size, True at
  the pixels whose centre lies inside a polygon. The model thread gives it to the stream's slot
  (:meth:`models.fusion.FusionModel.set_mask`, :mod:`pipelines.stages.inference`): the video activity never counts
  nor learns a change there.
* A zone becomes cell weights (:func:`cell_weights`): ``(C,)`` each cell's share of pixels inside its polygon, on
  the model's grid of cells (``model.video.grid``, ``(gw, gh)``, cell ``y * gw + x``). Each timestep, the zone's
  S_v is :func:`models.video.region_score` of the cells' unusual change (the model's ``video_unusual``) with
  those weights: one matrix-vector product for all of a stream's zones (:class:`ZoneEvents`); a stream without
  zones costs nothing here.
* Each zone has its own :class:`~pipelines.stages.events.EventDetector` on its S_v, with the stream's event
  options but the zone's threshold (its ``threshold``, else the stream's ``zone_threshold``). Its events carry the
  zone's name and the box of its unusual cells; they take no snapshot (the stream's own event, over the same
  moment, has it).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
import numpy.typing as npt

from models.video import box_of, region_score
from pipelines.config import EventOptions, Polygon, StreamConfig, Zone
from pipelines.stages.events import Ended, EndReason, Event, EventDetector, Scores
from streamer.media import Box

Size = tuple[int, int]  # (width, height) in pixels
Grid = tuple[int, int]  # (gw, gh) cells


def ignore_mask(polygons: Sequence[Polygon], size: Size) -> npt.NDArray[np.bool_]:
    """``(H, W)`` bool, True at the pixels whose centre lies inside any of ``polygons`` (``size``: (W, H)).

    The even-odd crossing test on the pixel centres, in numpy (an edge's crossings for all pixels at once): a
    polygon whose edges lie on pixel borders takes exactly the pixels between them, where ``cv2.fillPoly`` takes
    the pixels on both borders (a column or row more)."""
    width, height = size
    x = (np.arange(width) + 0.5) / width
    y = ((np.arange(height) + 0.5) / height)[:, None]
    picture = np.zeros((height, width), bool)
    for polygon in polygons:
        inside = np.zeros((height, width), bool)
        for (x0, y0), (x1, y1) in zip(polygon, (*polygon[1:], polygon[0]), strict=True):
            if y0 == y1:
                continue  # a horizontal edge crosses no row of centres
            spans = (y0 > y) != (y1 > y)  # (H, 1): the rows whose centres' line crosses the edge
            at = x0 + (y - y0) * (x1 - x0) / (y1 - y0)  # (H, 1): where it crosses
            inside ^= spans & (x < at)
        picture |= inside
    return picture


def cell_weights(polygon: Polygon, size: Size, grid: Grid) -> npt.NDArray[np.float64]:
    """``(C,)`` each cell's share of its pixels inside ``polygon``, on a grid ``(gw, gh)`` over a picture of
    ``size`` (W, H) (the cells as the model lays them out: row ``y * gh // H``, column ``x * gw // W``)."""
    width, height = size
    gw, gh = grid
    inside = ignore_mask([polygon], size)
    rows = np.arange(height) * gh // height
    cols = np.arange(width) * gw // width
    cell = (rows[:, None] * gw + cols[None, :]).ravel()
    pixels = np.bincount(cell, minlength=gw * gh)
    return np.bincount(cell, weights=inside.ravel(), minlength=gw * gh) / np.maximum(pixels, 1)


@dataclass(frozen=True, eq=False)
class Cells:
    """Where a stream's model measures the picture: its grid of cells and its S_v ``scale``, and the stream's
    zones on that grid (``weights (Z, C)``, in the order of the stream's ``zones``; Z = 0: none)."""

    grid: Grid
    scale: float
    weights: npt.NDArray[np.float64]

    @classmethod
    def of(cls, config: StreamConfig, size: Size, grid: Grid, scale: float) -> Cells:
        cells = grid[0] * grid[1]
        weights = np.stack([cell_weights(z.polygon, size, grid) for z in config.zones]) if config.zones else (
            np.zeros((0, cells)))  # fmt: skip
        return cls(grid, scale, weights)

    def box(self, unusual: npt.NDArray[np.floating]) -> Box | None:
        """Where the picture changed unusually (``unusual (C,)``, the model's ``video_unusual`` row)."""
        return box_of(unusual, self.grid)


def threshold(config: StreamConfig, zone: Zone) -> float:
    """The zone's S_v threshold: its own, else the stream's ``zone_threshold``."""
    return zone.threshold if zone.threshold is not None else config.zone_threshold


def zone_options(config: StreamConfig) -> list[EventOptions]:
    """Each zone's event options: the stream's, with the zone's threshold."""
    return [replace(config.events, threshold=threshold(config, zone)) for zone in config.zones]


class ZoneEvents:
    """A stream's zones' detectors, fed every timestep the zones' S_v (and the stream's S_a, shown alongside)."""

    def __init__(self, config: StreamConfig) -> None:
        # a zone's S is its S_v: the stream's alpha and beta play no part (None)
        self.detectors = [
            EventDetector(config.stream_id, options, None, None, zone=zone.name)
            for zone, options in zip(config.zones, zone_options(config), strict=True)
        ]

    def configure(self, config: StreamConfig) -> None:
        """The stream's settings changed while it runs (its zones the same, their thresholds maybe not)."""
        for detector, options in zip(self.detectors, zone_options(config), strict=True):
            detector.options = options

    def __bool__(self) -> bool:
        """Whether the stream has zones."""
        return bool(self.detectors)

    def update(
        self, stream: Scores, unusual: npt.NDArray[np.floating], cells: Cells, *, early: bool = False
    ) -> list[Event | Ended]:
        """One timestep of the stream (its scores and the model's ``video_unusual`` row ``(C,)``): each zone's;
        ``early``: a provisional score (:meth:`EventDetector.early`)."""
        s_v = region_score(unusual, cells.weights, cells.scale)  # (Z,)
        out: list[Event | Ended] = []
        for z, detector in enumerate(self.detectors):
            score = float(s_v[z])
            box = box_of(unusual, cells.grid, cells.weights[z]) if score > 0 else None
            zone = Scores(t=stream.t, hop=stream.hop, score=score, s_v=score, s_a=stream.s_a, has_v=stream.has_v,
                          has_a=stream.has_a, box=box)  # fmt: skip
            out += detector.early(zone) if early else detector.update(zone)
        return out

    def flush(self, reason: EndReason = "stream ended") -> list[Event | Ended]:
        """The stream ended or its source was lost: each zone's open event ends as the stream's does."""
        return [message for detector in self.detectors for message in detector.flush(reason)]
