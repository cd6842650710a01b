"""How events read in a terminal: one aligned line per start and end, for ``streamer run`` and ``demo``."""

from __future__ import annotations

import time
from typing import Any


def format_event(event: dict[str, Any], stream_width: int = 12) -> str:
    """``14:03:07  front        START  t=   4.00 s  S=0.97  S_v=0.95  S_a=0.99`` (and END with duration, peak)."""
    clock = time.strftime("%H:%M:%S", time.localtime(float(event.get("wall_time", time.time()))))
    kind = str(event.get("type", "?")).upper()
    stream = str(event.get("stream", "?")) + (f"/{event['zone']}" if event.get("zone") else "")
    line = f"{clock}  {stream:<{stream_width}} {kind:<5}  t={float(event.get('t', 0)):7.2f} s  "
    line += f"S={_value(event.get('score', 0))}  S_v={_value(event.get('s_v'))}  S_a={_value(event.get('s_a'))}"
    if event.get("type") == "end":
        peak = event.get("peak") or {}
        line += f"  lasted {float(event.get('duration', 0)):.2f} s, peak S={float(peak.get('score', 0)):.2f}"
        line += f" at {float(peak.get('t', 0)):.2f} s"
    return line


def _value(x: Any) -> str:
    """A score with two decimals; ``-`` for an absent modality (null)."""
    return "   -" if x is None else f"{float(x):.2f}"
