"""Deciding on the frame on real recordings: each clip scored as a live stream would be, every provisional
timestep (``streamer/onsets.py``) scored before the next item arrives, against the same clip without them.

Counts the provisional rows the gate asks for (the extra model work), the events started by one, and any event
that exists only with them or only without them (deciding on the frame must not add or lose events: a
provisional score may only start, earlier, an event the timesteps also make).

    python benchmarks/early_realworld.py [../shared/realworld]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections import Counter
from pathlib import Path

from models import FusionModel
from pipelines.config import EventOptions, ModelConfig, StreamConfig
from pipelines.stages.events import Ended, EventDetector, Scores
from streamer.media import Timestep
from streamer.settings import default_of
from streamer.spec import parse_source
from streamer.stream import Stream

ALPHA, BETA = default_of(StreamConfig, "alpha"), default_of(StreamConfig, "beta")


async def timesteps(path: Path) -> list[Timestep]:
    """The clip's timesteps and, between them, its provisional ones, in the order a live stream sends them."""
    return [ts async for ts in Stream(parse_source(str(path)), early=True)]


def events(steps: list[Timestep], early: bool) -> tuple[list[tuple[float, float]], int]:
    """The events' (start, end) and how many started from a provisional score."""
    model = FusionModel(tau=default_of(ModelConfig, "tau"))
    slot = model.add_stream(ALPHA, BETA)
    detector = EventDetector("clip", EventOptions(), ALPHA, BETA)
    out: list[tuple[float, float]] = []
    started_early = 0
    for ts in steps:
        if ts.provisional and not early:
            continue
        r = model.score([ts], [slot])
        s = Scores(t=ts.t, hop=ts.hop, score=float(r["s"][0]), s_v=float(r["s_v"][0]), s_a=float(r["s_a"][0]),
                   has_v=bool(r["has_v"][0]), has_a=bool(r["has_a"][0]))  # fmt: skip
        messages = detector.early(s) if ts.provisional else detector.update(s)
        started_early += len(messages) if ts.provisional else 0
        out += [(m.event.start_t or 0.0, m.event.t) for m in messages if isinstance(m, Ended)]
    out += [(m.event.start_t or 0.0, m.event.t) for m in detector.flush() if isinstance(m, Ended)]
    return [(round(a, 3), round(b, 3)) for a, b in out], started_early


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", nargs="?", type=Path, default=Path("../shared/realworld"))
    args = parser.parse_args()
    clips = sorted(p for p in args.folder.iterdir() if p.suffix in (".mp4", ".m4a", ".mkv", ".wav"))
    total: Counter[str] = Counter()
    for clip in clips:
        steps = asyncio.run(timesteps(clip))
        provisional = sum(ts.provisional for ts in steps)
        plain, _ = events(steps, early=False)
        decided, started = events(steps, early=True)
        only_early = [e for e in decided if e not in plain]
        only_plain = [e for e in plain if e not in decided]
        total.update(provisional=provisional, timesteps=len(steps) - provisional, events=len(plain),
                     early_starts=started, only_early=len(only_early), only_plain=len(only_plain))  # fmt: skip
        print(f"{clip.name:30} provisional {provisional:5} / {len(steps) - provisional:5} timesteps, events "
              f"{len(plain)} -> {len(decided)}, {started} started early; only with it {only_early}, only "
              f"without {only_plain}", flush=True)  # fmt: skip
    print(f"all: {dict(total)}")
    return 0 if total["only_early"] == total["only_plain"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
