"""The default detector on a few real labeled recordings (``../shared/realworld``): a regression floor.

Files, decoded and scored by the model ``streamer run`` uses (``evaluate``'s extraction), on the CPU:
deterministic. The floor is below what the defaults reach on these clips (benchmarks/realworld.py has the whole
set), so it catches a regression, not noise.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from pipelines.config import EventOptions, ModelConfig
from pipelines.learn.evaluate import evaluate, fused_scores
from pipelines.learn.extract import extract
from pipelines.learn.labels import Dataset, load_dataset

DATA = Path(__file__).resolve().parents[2] / "shared" / "realworld" / "labels.csv"
# one clip per kind of trouble: a busy road with loud sounds, start-up hazards (a fade-in), audio alone over a
# running tap, a talking head, an empty room with an appliance's hum (nothing happens)
CLIPS = ("D2_road_wind", "D5_fadein1s", "D3_tap_audio", "D6_grid_bbaf2n", "D4_static_room")


@pytest.fixture(scope="module")
def dataset() -> Dataset:
    if not DATA.exists():
        pytest.skip(f"the real-world clips are not here ({DATA})")
    full = load_dataset(DATA)
    return Dataset(full.source, tuple(r for r in full.recordings if r.stream_id in CLIPS))


def test_default_settings_find_the_labeled_events_of_real_recordings(dataset: Dataset) -> None:
    recs, failed = asyncio.run(extract(dataset, ModelConfig(device="cpu"), {}))
    assert not failed and len(recs) == len(CLIPS)
    result = evaluate(recs, [fused_scores(rec, 0.5, 0.5) for rec in recs], EventOptions())
    per_clip = {r.stream_id: (r.counts.matched, r.counts.detected, r.counts.labeled) for r in result.recordings}
    assert result.counts.f1 >= 0.85, per_clip
    assert per_clip["D4_static_room"][1] == 0, per_clip  # nothing happens: no event
    assert per_clip["D5_fadein1s"][0] >= 10, per_clip  # of 11: the fade-in does not deafen the stream
