"""Detection quality on real recordings: event precision, recall and F1 per scenario, with default settings.

    .venv/bin/python benchmarks/realworld.py [../shared/realworld/labels.csv] [--json realworld.json]
        [--device cpu]

Scores every clip of the labeled set with the model ``streamer run`` uses (``streamer evaluate``'s extraction),
finds events with the default detector (alpha, beta, threshold, min_gap: no calibration) and reports, per
scenario of ``labels_detail.csv`` and overall: precision, recall, F1 (IoU >= 0.3 matching, as ``evaluate``),
events per labeled event and false events a minute, and false events a minute on the clips where nothing happens
(those without a labeled event, whatever their scenario). Then the same after
``streamer calibrate`` on half of the clips (every other clip in file order), evaluated on the other half, and the
other way round. Deterministic on the CPU.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import sys
from collections import defaultdict
from dataclasses import replace
from pathlib import Path
from typing import Any

from pipelines.config import EventOptions, ModelConfig
from pipelines.learn.calibrate import calibrate
from pipelines.learn.evaluate import Evaluation, counts_dict, evaluate, fused_scores
from pipelines.learn.extract import RecordingScores, extract
from pipelines.learn.labels import load_dataset
from pipelines.learn.metrics import EventCounts

DEFAULT_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "realworld" / "labels.csv"


def scenarios(labels: Path) -> dict[str, str]:
    """stream id (file stem) -> scenario, from labels_detail.csv next to the labels (else one scenario)."""
    detail = labels.with_name("labels_detail.csv")
    if not detail.exists():
        return {}
    return {Path(row["file"]).stem: row["scenario"] for row in csv.DictReader(detail.open())}


def evaluated(recs: list[RecordingScores], alpha: float, beta: float, options: EventOptions) -> Evaluation:
    """``streamer evaluate``'s metrics of S = alpha S_v + beta S_a with these event options."""
    return evaluate(recs, [fused_scores(r, alpha, beta) for r in recs], options)


def counts_of(recs: list[RecordingScores], alpha: float, beta: float, options: EventOptions) -> dict[str, Any]:
    """stream id -> (its event counts, its length in seconds)."""
    results = evaluated(recs, alpha, beta, options).recordings
    return {r.stream_id: (r.counts, rec.t[-1] + rec.hop) for r, rec in zip(results, recs, strict=True)}


def row(c: EventCounts) -> dict[str, Any]:
    per_label = round(c.detected / c.labeled, 2) if c.labeled else None
    return counts_dict(c) | {"events_per_label": per_label}


def false_per_minute(clips: list[tuple[EventCounts, float]]) -> float | None:
    """False events (detected, not matched to a label) a minute over these clips."""
    minutes = sum(seconds for _, seconds in clips) / 60
    return round(float(sum(c.detected - c.matched for c, _ in clips) / minutes), 2) if minutes else None


def summary(per_clip: dict[str, Any], scenario_of: dict[str, str]) -> dict[str, Any]:
    """Counts per scenario and overall, each with its false events a minute; and the false events a minute on the
    clips where nothing happens (no labeled event: the set's quiet beds, and the busy scenes and changing beds of
    scenarios 8 and 9 with nothing placed in them), per scenario and together."""
    by: dict[str, list[tuple[EventCounts, float]]] = defaultdict(list)
    for name, clip in per_clip.items():
        by[scenario_of.get(name, "all")].append(clip)

    def totals(clips: list[tuple[EventCounts, float]]) -> dict[str, Any]:
        return row(sum((c for c, _ in clips), EventCounts())) | {"false_per_min": false_per_minute(clips)}

    rows = {s: totals(clips) for s, clips in sorted(by.items())}
    overall = totals([clip for clips in by.values() for clip in clips])
    nothing = {s: [clip for clip in clips if clip[0].labeled == 0] for s, clips in sorted(by.items())}
    nothing_rates = {s: false_per_minute(clips) for s, clips in nothing.items() if clips}
    nothing_rates["all"] = false_per_minute([clip for clips in nothing.values() for clip in clips])
    return {"overall": overall, "scenarios": rows, "false_events_per_minute": nothing_rates}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("labels", nargs="?", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    dataset = load_dataset(args.labels)
    scenario_of = scenarios(args.labels)
    recs, failed = asyncio.run(extract(dataset, ModelConfig(device=args.device), {}))
    for error in failed:
        print(f"failed: {error}", file=sys.stderr)
    defaults = EventOptions()
    per_clip = counts_of(recs, 0.5, 0.5, defaults)
    report: dict[str, Any] = {"defaults": summary(per_clip, scenario_of), "failed": [str(e) for e in failed]}
    report["defaults"]["clips"] = {n: row(c) for n, (c, _) in per_clip.items()}

    halves = [recs[0::2], recs[1::2]]
    cross = EventCounts()
    settings = []
    for fit, test in (halves, halves[::-1]):
        cal = calibrate(fit, defaults)
        options = replace(defaults, threshold=cal.threshold)
        settings.append({"alpha": cal.alpha, "beta": cal.beta, "threshold": cal.threshold})
        cross += evaluated(test, cal.alpha, cal.beta, options).counts
    report["calibrated_on_half"] = {"overall": row(cross), "settings": settings}

    print(f"{'scenario':<10} {'P':>5} {'R':>5} {'F1':>5} {'det':>4} {'lab':>4} {'ev/lab':>6} {'fp/min':>6}")
    for name, r in [*report["defaults"]["scenarios"].items(), ("overall", report["defaults"]["overall"])]:
        per = "-" if r["events_per_label"] is None else f"{r['events_per_label']:.2f}"
        print(f"{name:<10} {r['precision']:5.2f} {r['recall']:5.2f} {r['f1']:5.2f} {r['detected']:4d} "
              f"{r['labeled']:4d} {per:>6} {r['false_per_min']:6.2f}")  # fmt: skip
    print(
        "false events per minute on the clips where nothing happens, by scenario: "
        f"{report['defaults']['false_events_per_minute']}"
    )
    c = report["calibrated_on_half"]["overall"]
    print(f"calibrated on one half, tested on the other: P {c['precision']:.2f} R {c['recall']:.2f} F1 {c['f1']:.2f}"
          f" ({settings})")  # fmt: skip
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
