"""Soak with faults: live streams for an hour while the broker restarts every 5 minutes and the RTSP server every
7, with clips, the web view and a looping file with a zone (pipelines/bench/soak.py says what is measured).

    .venv/bin/python benchmarks/soak.py [--streams 32] [--minutes 60] [--warmup 120] [--broker-every 300]
        [--rtsp-every 420] [--down 5] [--interval 10] [--json soak.json]

Prints one line of figures (memory growth after warm-up, descriptors, threads, events detected and delivered,
duplicates, starts without an end, statuses through the outages, latency); exit 1 when the analyzer did not stay
up, lost an event or grew by 5% or more. A benchmark, not a CI test (tests/test_soak.py is its short version).
"""

from __future__ import annotations

import sys

from pipelines.bench.soak import main

if __name__ == "__main__":
    sys.exit(main())
