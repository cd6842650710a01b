"""``streamer bench capacity``: how many live streams this machine analyzes, next to how many it merely decodes.

Both are measured in the same run with the latency benchmark's real processes (:mod:`pipelines.bench.latency`:
an impulse RTSP server, mosquitto, ``streamer run``):

* **analyzer capacity**: the largest N of analyzer streams (N RTSP clients of the impulse stream in one
  ``streamer run``) with every impulse detected on every stream and the analyzer's added latency p99 within the
  budget, ``hop + 80 ms``;
* **decode-only capacity**: the largest N of decode-only clients (N processes, each the analyzer's own ingest
  without sync or model: :mod:`pipelines.bench.decode_client`) that keep real time: every impulse's picture and
  sound decoded by every client, glass to decode p99 within the same budget.

The ratio analyzer / decode-only says what the analysis costs over capture. N doubles from ``start`` until a
probe fails (or ``limit``), then bisects down to ``step`` streams. One probe runs ``impulses`` impulses; a
machine shared with other work fails probes it would pass alone: compare ratios within a run.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from pipelines.bench.latency import run_latency
from pipelines.bench.options import CapacityOptions, LatencyOptions, described
from pipelines.bench.throughput import machine_info
from streamer.settings import default_of

BUDGET_OVER_HOP_MS = 80.0  # the live-capacity budget: added p99 <= hop + 80 ms


def probe_options(options: CapacityOptions, streams: int, *, decode_only: bool) -> LatencyOptions:
    return LatencyOptions(
        streams=streams, impulses=options.impulses, interval=options.interval, device=options.device,
        size=options.size, fps=options.fps, audio_frame_ms=options.audio_frame_ms,
        decode_only=decode_only, hwaccel=options.hwaccel, early=options.early, clips=options.clips and not decode_only,
    )  # fmt: skip


def passed(report: dict[str, Any], *, decode_only: bool) -> bool:
    """Whether one probe kept up: every impulse on every stream within ``hop + 80 ms`` at p99."""
    budget = report["options"]["hop_ms"] + BUDGET_OVER_HOP_MS
    if decode_only:
        floor = report["decoders"]["floor_ms"]
        return bool(report["decoders"]["missed"] == 0 and floor["p99"] is not None and floor["p99"] <= budget)
    added = report["analyzer_added_ms"]
    return bool(report["counts"]["missed"] == 0 and added["p99"] is not None and added["p99"] <= budget)


async def search(probe: Callable[[int], Awaitable[bool]], start: int, limit: int, step: int) -> int:
    """The largest N in ``[1, limit]`` that passes: doubling from ``start``, then bisecting to ``step``."""
    good, bad = 0, limit + 1
    n = max(1, min(start, limit))
    while n <= limit:
        if await probe(n):
            good = n
            if n == limit:
                break
            n = min(2 * n, limit)
        else:
            bad = n
            break
    lo, hi = good, bad  # lo passed (0: none yet), hi failed (limit + 1: none did)
    while hi - lo > step:
        mid = (lo + hi) // 2
        if await probe(mid):
            lo = mid
        else:
            hi = mid
    return lo


async def run_capacity(
    options: CapacityOptions, workdir: Path, *, say: Callable[[str], None] = lambda _: None
) -> dict[str, Any]:
    """Both searches; the report with every probe's figures."""
    probes: list[dict[str, Any]] = []

    def probe_for(decode_only: bool) -> Callable[[int], Awaitable[bool]]:
        mode = "decode-only" if decode_only else "analyzer"

        async def probe(n: int) -> bool:
            say(f"{mode}: {n} stream(s)")
            report = await run_latency(
                probe_options(options, n, decode_only=decode_only), workdir / f"{mode}-{n}", say=lambda _: None
            )
            ok = passed(report, decode_only=decode_only)
            figures = report["decoders"]["floor_ms"] if decode_only else report["analyzer_added_ms"]
            missed = report["decoders"]["missed"] if decode_only else report["counts"]["missed"]
            probes.append({"mode": mode, "streams": n, "passed": ok, "missed": missed,
                           "p50_ms": figures["p50"], "p99_ms": figures["p99"],
                           "dropped": sum((report.get("dropped") or {}).values()),
                           "cpu_ms_per_media_s": report.get("cpu_ms_per_media_s")})  # fmt: skip
            say(f"{mode}: {n} stream(s): {'kept up' if ok else 'fell behind'} (missed {missed}, p99 {figures['p99']})")
            return ok

        return probe

    decode_n = await search(probe_for(True), options.start, options.limit, options.step)
    analyze_n = await search(probe_for(False), options.start, min(options.limit, max(decode_n, 1)), options.step)
    return {
        "options": described(options),
        "machine": machine_info(),
        "budget_ms": default_of(LatencyOptions, "hop_ms") + BUDGET_OVER_HOP_MS,  # the probes run at the default hop
        "decode_only_streams": decode_n,
        "analyzer_streams": analyze_n,
        "ratio": round(analyze_n / decode_n, 3) if decode_n else None,
        "probes": probes,
    }


def _cpu(probe: dict[str, Any]) -> str:
    """A probe's CPU milliseconds per stream and media second (the analyzer's: its process + its ingest), as
    :func:`pipelines.bench.latency.analyze` gives them."""
    cpu = probe.get("cpu_ms_per_media_s")
    if not cpu:
        return "-"
    if "decode_only" in cpu:
        return f"{cpu['decode_only']:.1f}"
    return f"{cpu['total']:.1f} ({cpu['analyzer']:.1f} + {cpu['ingest']:.1f})"


def format_capacity(report: dict[str, Any]) -> str:
    o = report["options"]
    lines = [
        f"capacity: live {o['width']}x{o['height']} {o['fps']} fps H.264 + Opus {o['audio_frame_ms']} ms, "
        f"budget p99 <= {report['budget_ms']:g} ms, {o['impulses']} impulses a probe",
        f"{'probe':<13}{'streams':>8}{'result':>13}{'missed':>8}{'p50 ms':>9}{'p99 ms':>9}  CPU ms/s a stream",
    ]
    for p in report["probes"]:
        p50 = "-" if p["p50_ms"] is None else f"{p['p50_ms']:.1f}"
        p99 = "-" if p["p99_ms"] is None else f"{p['p99_ms']:.1f}"
        result = "kept up" if p["passed"] else "fell behind"
        lines.append(f"{p['mode']:<13}{p['streams']:>8}{result:>13}{p['missed']:>8}{p50:>9}{p99:>9}  {_cpu(p)}")
    ratio = report["ratio"]
    lines.append(
        f"decode-only capacity {report['decode_only_streams']} streams, analyzer capacity "
        f"{report['analyzer_streams']} streams: ratio {ratio if ratio is not None else '-'}"
    )
    return "\n".join(lines)


def plot_capacity(report: dict[str, Any], path: Path) -> Path:
    """p99 latency against the number of streams, per mode, with the budget line (matplotlib, no display)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for mode, label in (("decode-only", "decode-only: glass to decode"), ("analyzer", "analyzer: added latency")):
        points = sorted((p["streams"], p["p99_ms"]) for p in report["probes"] if p["mode"] == mode and p["p99_ms"])
        if points:
            ax.plot([n for n, _ in points], [v for _, v in points], marker="o", label=f"{label}, p99")
    ax.axhline(report["budget_ms"], color="grey", linestyle="--", label="budget")
    ax.set_yscale("log")
    ax.set_xlabel("live streams")
    ax.set_ylabel("ms")
    o = report["options"]
    ax.set_title(f"capacity, {o['width']}x{o['height']} {o['fps']} fps: analyzer {report['analyzer_streams']}, "
                 f"decode-only {report['decode_only_streams']} streams")  # fmt: skip
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
