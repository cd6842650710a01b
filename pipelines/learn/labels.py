"""Labeled recordings: which intervals of which files are events.

``DATA`` is a labels file, or a directory holding ``labels.csv`` or ``labels.jsonl``. Each row names a recording
(a path relative to the labels file) and one event interval in media seconds of that recording; a recording with
no event is listed once without ``start`` and ``end``. Only the recordings the file names are used.

CSV, with a header (``label`` is optional; lines starting with ``#`` are comments)::

    file,start,end,label
    door.mp4,4.0,5.2,door
    door.mp4,9.5,10.0,knock
    quiet.mp4,,,

JSON lines, the same fields::

    {"file": "door.mp4", "start": 4.0, "end": 5.2, "label": "door"}
    {"file": "quiet.mp4"}

Mistakes are :class:`~streamer.errors.ConfigError` naming the file and line.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from streamer.errors import ConfigError
from streamer.spec import sanitize_stream_id

LABEL_FILES = ("labels.csv", "labels.jsonl")


@dataclass(frozen=True, slots=True)
class LabeledEvent:
    start: float  # media seconds
    end: float
    label: str = ""


@dataclass(frozen=True)
class Recording:
    path: Path
    stream_id: str  # unique within the data set; names the recording in messages and reports
    events: tuple[LabeledEvent, ...]

    @property
    def intervals(self) -> list[tuple[float, float]]:
        return [(e.start, e.end) for e in self.events]


@dataclass(frozen=True)
class Dataset:
    source: Path  # the labels file
    recordings: tuple[Recording, ...]

    @property
    def n_events(self) -> int:
        return sum(len(r.events) for r in self.recordings)

    @property
    def labels(self) -> list[str]:
        return sorted({e.label for r in self.recordings for e in r.events})

    def only(self, labels: Iterable[str]) -> Dataset:
        """Keep only the events with these labels (the others become ordinary background)."""
        keep = set(labels)
        return replace(self, recordings=tuple(
            replace(r, events=tuple(e for e in r.events if e.label in keep)) for r in self.recordings
        ))  # fmt: skip


def load_dataset(data: Path) -> Dataset:
    """Read ``data`` (a labels file or a directory with one); raises ConfigError on any mistake."""
    path = _labels_file(data)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"labels {str(path)!r}: cannot read: {exc}") from None
    rows = _jsonl_rows(path, text) if path.suffix == ".jsonl" else _csv_rows(path, text)
    by_file: dict[Path, list[LabeledEvent]] = {}
    for where, row in rows:
        file, event = _parse_row(where, row, path.parent)
        by_file.setdefault(file, [])
        if event is not None:
            by_file[file].append(event)
    if not by_file:
        raise ConfigError(f"labels {str(path)!r}: no recordings listed")
    ids: set[str] = set()
    recordings = []
    for file, events in by_file.items():
        stream_id = base = sanitize_stream_id(file.stem)
        n = 1
        while stream_id in ids:
            n += 1
            stream_id = f"{base[:60]}_{n}"
        ids.add(stream_id)
        recordings.append(Recording(file, stream_id, tuple(sorted(events, key=lambda e: (e.start, e.end)))))
    return Dataset(path, tuple(recordings))


def _labels_file(data: Path) -> Path:
    if data.is_dir():
        for name in LABEL_FILES:
            if (data / name).is_file():
                return data / name
        raise ConfigError(f"data {str(data)!r}: a directory without {' or '.join(LABEL_FILES)}")
    if not data.is_file():
        raise ConfigError(f"data {str(data)!r}: no such file or directory")
    if data.suffix not in (".csv", ".jsonl"):
        raise ConfigError(f"labels {str(data)!r}: expected a .csv or .jsonl file")
    return data


def _csv_rows(path: Path, text: str) -> Iterator[tuple[str, dict[str, Any]]]:
    lines = [(n, line) for n, line in enumerate(text.splitlines(), 1) if line.strip() and not line.startswith("#")]
    if not lines:
        return
    header = [h.strip() for h in next(csv.reader([lines[0][1]]))]
    if "file" not in header or not {"start", "end"} <= set(header):
        raise ConfigError(f"{path}:{lines[0][0]}: the header must name file, start, end (and label), got {header}")
    for n, values in zip((n for n, _ in lines[1:]), csv.reader(line for _, line in lines[1:]), strict=True):
        if len(values) > len(header):
            raise ConfigError(f"{path}:{n}: {len(values)} fields, the header has {len(header)}")
        row = {key: value.strip() for key, value in zip(header, values, strict=False)}
        yield f"{path}:{n}", {k: (v if v != "" else None) for k, v in row.items()}


def _jsonl_rows(path: Path, text: str) -> Iterator[tuple[str, dict[str, Any]]]:
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{path}:{n}: not JSON: {exc.msg}") from None
        if not isinstance(row, dict):
            raise ConfigError(f"{path}:{n}: expected an object with file, start, end, label")
        yield f"{path}:{n}", row


def _parse_row(where: str, row: dict[str, Any], base: Path) -> tuple[Path, LabeledEvent | None]:
    unknown = set(row) - {"file", "start", "end", "label"}
    if unknown:
        raise ConfigError(f"{where}: unknown field {sorted(unknown)[0]!r} (allowed: file, start, end, label)")
    file = row.get("file")
    if not isinstance(file, str) or not file.strip():
        raise ConfigError(f"{where}: 'file' must name a recording")
    path = Path(file.strip()).expanduser()
    path = path if path.is_absolute() else base / path
    start, end = row.get("start"), row.get("end")
    if start is None and end is None:
        return path, None
    a, b = _seconds(where, "start", start), _seconds(where, "end", end)
    if not b > a:
        raise ConfigError(f"{where}: end ({b:g}) must be after start ({a:g})")
    label = row.get("label")
    if label is not None and not isinstance(label, str):
        raise ConfigError(f"{where}: 'label' must be text, got {label!r}")
    return path, LabeledEvent(a, b, (label or "").strip())


def _seconds(where: str, name: str, value: Any) -> float:
    try:
        seconds = float(value) if not isinstance(value, bool) else math.nan
    except (TypeError, ValueError):
        seconds = math.nan
    if not (seconds >= 0 and math.isfinite(seconds)):
        raise ConfigError(f"{where}: '{name}' must be a number of seconds >= 0, got {value!r}")
    return seconds
