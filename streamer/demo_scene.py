"""The built-in synthetic source's default scene, which ``streamer demo`` analyzes: one home for its schedule.

A burst of motion and sound together at 4 s, sound alone at 9 s, motion alone at 14 s, in 20 s: the three cases
a fused score tells apart. :mod:`streamer.synthetic` takes these as its defaults (``synthetic:`` alone is this
scene); the command line shows :data:`DEMO_SOURCE` in its help. Light (no numpy, cv2, as the source module is):
``streamer --help`` imports it.
"""

from __future__ import annotations

DEMO_EVENTS = "av@4,a@9,v@14"  # KIND@SECONDS: av both, a sound, v motion
DEMO_DURATION_S = 20.0
DEMO_SOURCE = f"synthetic:?events={DEMO_EVENTS}&duration={DEMO_DURATION_S:g}"
