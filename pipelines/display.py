"""How events read in a terminal: one aligned line per start and end, for ``streamer run`` and ``demo``."""

from __future__ import annotations

import time
from typing import Any


def format_event(event: dict[str, Any], stream_width: int = 12) -> str:
    """``14:03:07  front        START  t=   4.00 s  S=0.97  S_v=0.95  S_a=0.99`` (and END with duration, peak)."""
    clock = time.strftime("%H:%M:%S", time.localtime(float(event.get("wall_time", time.time()))))
    kind = str(event.get("type", "?")).upper()
    stream = str(event.get("stream", "?"))
    score, s_v, s_a = (float(event.get(name, 0)) for name in ("score", "s_v", "s_a"))
    line = f"{clock}  {stream:<{stream_width}} {kind:<5}  t={float(event.get('t', 0)):7.2f} s  "
    line += f"S={score:.2f}  S_v={s_v:.2f}  S_a={s_a:.2f}"
    if event.get("type") == "end":
        peak = event.get("peak") or {}
        line += f"  lasted {float(event.get('duration', 0)):.2f} s, peak S={float(peak.get('score', 0)):.2f}"
        line += f" at {float(peak.get('t', 0)):.2f} s"
    return line
