"""A labeled data set for ``streamer calibrate``, ``train`` and ``evaluate``, generated in a temporary folder.

Clips rendered by :func:`tests.burst_clip.make_burst_clip` (the synthetic source's scene) with bursts of motion
and sound together (``av``), sound alone (``a``) and motion alone (``v``), over scenes with steady distractors: a
loud constant noise floor (a fan) and a noisy sensor. What counts as an event is the labeling's choice:
``"av"`` labels only the bursts seen *and* heard (someone at the door), ``"a"`` every burst with sound.
"""

from __future__ import annotations

from pathlib import Path

from .burst_clip import make_burst_clip

# name: (bursts, scene); bursts last `length` seconds (1 by default)
CLIPS: dict[str, tuple[str, dict[str, str]]] = {
    "porch": ("av@3,a@8,v@13", {}),
    "fan": ("v@3.5,av@8,a@12.5", {"noise_db": "-30", "seed": "1"}),
    "grainy": ("a@4,v@9,av@14", {"video_noise": "4", "seed": "2"}),
    "long": ("av@4,v@10", {"length": "1.5", "noise_db": "-35", "seed": "3"}),
    "loud_room": ("", {"noise_db": "-25", "video_noise": "3", "seed": "4"}),
    "twice": ("av@3,av@10,a@14", {"seed": "5"}),
}
DURATION = 17.0


def bursts(name: str) -> list[tuple[str, float, float]]:
    """(kind, start, end) of each burst of a clip."""
    events, scene = CLIPS[name]
    length = float(scene.get("length", 1.0))
    out = []
    for item in filter(None, events.split(",")):
        kind, _, at = item.partition("@")
        out.append((kind, float(at), float(at) + length))
    return out


def make_clips(folder: Path) -> dict[str, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    return {
        name: make_burst_clip(folder / f"{name}.mkv", events=events, duration=DURATION, scene=scene)
        for name, (events, scene) in CLIPS.items()
    }


def write_labels(folder: Path, kinds: str = "av", names: list[str] | None = None, file: str = "labels.csv") -> Path:
    """A labels file in ``folder`` (next to the clips): the bursts whose kind contains every letter of ``kinds``
    are events, labeled with their kind; clips without one are listed with no event."""
    lines = ["file,start,end,label"]
    for name in names or list(CLIPS):
        chosen = [(k, a, b) for k, a, b in bursts(name) if set(kinds) <= set(k)]
        lines += [f"{name}.mkv,{a:g},{b:g},{k}" for k, a, b in chosen] or [f"{name}.mkv,,,"]
    path = folder / file
    path.write_text("\n".join(lines) + "\n")
    return path
