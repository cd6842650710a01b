"""Speech tags on real recordings: ``python benchmarks/speech_tags.py ../shared/realworld``.

Runs ``streamer run`` (default settings, speech tags on) over every clip of the real-world set with
``--events-out``, matches each event to the labeled interval it overlaps most, and counts:

* speech events: events matched to a label with speech in it (``speech``, the GRID ``talking`` heads, a word said
  in a room), and how many of them are tagged ``speech`` (recall);
* events tagged ``speech``, and how many of them are speech events (precision);
* non-speech sound events (knocks, barks, alarms, animals, machines...) tagged ``speech``.

Events that match no label (false events) are left out of all three. Figures in benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import csv
import json
import re
import subprocess
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

SPEECH = re.compile(r"speech|talking")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("folder", type=Path, help="the real-world set (labels_detail.csv and the clips)")
    parser.add_argument("--json", type=Path, help="write the figures here")
    args = parser.parse_args()
    rows = list(csv.DictReader((args.folder / "labels_detail.csv").open()))
    labels: dict[str, list[tuple[float, float, str, str]]] = defaultdict(list)
    files: dict[str, Path] = {}
    for row in rows:
        name = re.sub(r"[^A-Za-z0-9_-]", "_", Path(row["file"]).stem)
        files[name] = args.folder / row["file"]
        if row["start"]:
            labels[name].append((float(row["start"]), float(row["end"]), row["label"], row["modality"]))
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "events.jsonl"
        sources = [f"{name}={path}" for name, path in sorted(files.items())]
        cmd = [sys.executable, "-m", "pipelines.cli.main", "run", *sources, "--mqtt", "none", "--events-out", str(out),
               "-q"]  # fmt: skip
        subprocess.run(cmd, check=True)
        messages = [json.loads(line) for line in out.read_text().splitlines()]
    events: dict[str, dict[str, object]] = {}
    tags: dict[str, set[str]] = defaultdict(set)
    for m in messages:
        if m.get("zone"):
            continue
        if m["type"] == "end":
            events[m["id"]] = m
        for tag in m.get("tags") or []:
            tags[m["id"]].add(tag["label"])
    speech_events = speech_tagged = tagged = tagged_right = other_sound = other_tagged = 0
    lines = []
    for eid, e in events.items():
        start, end = float(e["start_t"]), float(e["t"])  # type: ignore[arg-type]
        best, overlap = None, 0.0
        for lo, hi, label, modality in labels[str(e["stream"])]:
            o = min(hi, end) - max(lo, start)
            if o > overlap:
                best, overlap = (label, modality), o
        is_speech = "speech" in tags[eid]
        if best is None:
            continue
        label, modality = best
        if SPEECH.search(label):
            speech_events += 1
            speech_tagged += is_speech
        elif modality != "video":
            other_sound += 1
            other_tagged += is_speech
        if is_speech:
            tagged += 1
            tagged_right += bool(SPEECH.search(label))
        lines.append(f"{e['stream']:28s} {start:7.2f}-{end:7.2f} {label:22s} {'speech' if is_speech else ''}")
    figures = {
        "speech_events": speech_events, "speech_tagged": speech_tagged,
        "recall": speech_tagged / speech_events if speech_events else None,
        "tagged_speech": tagged, "precision": tagged_right / tagged if tagged else None,
        "non_speech_sound_events": other_sound, "non_speech_tagged_speech": other_tagged,
        "non_speech_rate": other_tagged / other_sound if other_sound else None,
    }  # fmt: skip
    print("\n".join(sorted(lines)))
    print(json.dumps(figures, indent=1))
    if args.json:
        args.json.write_text(json.dumps(figures, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
