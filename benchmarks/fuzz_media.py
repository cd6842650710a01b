"""A longer media fuzz run: rounds of randomly mutated real encodes (pipelines/bench/corpus.py's ``mutate``:
cuts, bit flips, zeroed runs, spliced and deleted pieces, stacked at times), each round one ``streamer run`` of
``--per-run`` mutated files beside a healthy one, for ``--minutes``.

    .venv/bin/python benchmarks/fuzz_media.py [--minutes 10] [--per-run 24] [--seed 0] [--keep crashes/]

A *crash* is a run that did not end within its time limit, ended with an exit code other than 0 or 3, printed a
traceback, said more than one line of a stream, left a process behind, or lost the healthy stream's event. Each
crash's inputs are copied to ``--keep`` (default: ``fuzz-crashes/``) with the run's stderr. Prints the cases,
the outcomes (analyzed, one line) and the crashes; exit 1 when there was one.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

from pipelines.bench.corpus import encode, mutate

RUN_LIMIT = 240.0  # seconds one run may take


def one_run(folder: Path, bases: list[Path], healthy: Path, n: int, rng: random.Random) -> dict[str, object]:
    args = []
    for i in range(n):
        base = bases[rng.randrange(len(bases))]
        path = folder / f"m{i}{base.suffix}"
        path.write_bytes(mutate(base.read_bytes(), rng))
        args.append(f"m{i}={path}")
    out = folder / "events.jsonl"
    out.unlink(missing_ok=True)
    command = [sys.executable, "-m", "pipelines.cli.main", "run", f"healthy={healthy}", *args, "--mqtt", "none",
               "--events-out", str(out), "-q"]  # fmt: skip
    log = folder / "stderr.txt"
    with log.open("w") as sink:  # a file, not a pipe: a run that says a lot never blocks on it
        proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=sink)
    children: dict[int, psutil.Process] = {}
    started = time.monotonic()
    while proc.poll() is None and time.monotonic() - started < RUN_LIMIT:
        try:
            for child in psutil.Process(proc.pid).children(recursive=True):
                children.setdefault(child.pid, child)
        except psutil.Error:
            pass
        time.sleep(0.2)
    timed_out = proc.poll() is None
    if timed_out:
        proc.kill()
    proc.wait()
    err = log.read_text(errors="replace")
    left = [c.pid for c in children.values() if c.is_running() and c.status() != psutil.STATUS_ZOMBIE]
    for pid in left:  # not to pile up over a long run (a crash all the same)
        with contextlib.suppress(psutil.Error):
            psutil.Process(pid).kill()
    failed = sum(1 for i in range(n) if any(f"stream 'm{i}'" in line for line in err.splitlines()))
    crowded = [i for i in range(n) if sum(f"stream 'm{i}'" in line for line in err.splitlines()) > 1]
    events = [json.loads(line) for line in out.read_text().splitlines()] if out.exists() else []
    healthy_ok = [round(e["t"]) for e in events if e["stream"] == "healthy" and e["type"] == "start"] == [3]
    why = [w for w, bad in (("timed out", timed_out), (f"exit {proc.returncode}", proc.returncode not in (0, 3)),
                            ("traceback", "Traceback" in err), (f"streams said twice: {crowded}", bool(crowded)),
                            (f"left behind: {left}", bool(left)), ("healthy stream's event lost", not healthy_ok))
           if bad]  # fmt: skip
    return {"cases": n, "one_line": failed, "analyzed": n - failed, "crash": why, "stderr": err,
            "seconds": round(time.monotonic() - started, 1)}  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--per-run", type=int, default=24)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--keep", type=Path, default=Path("fuzz-crashes"))
    args = parser.parse_args()
    rng = random.Random(args.seed)
    totals = {"runs": 0, "cases": 0, "analyzed": 0, "one_line": 0, "crashes": 0}
    with tempfile.TemporaryDirectory(prefix="streamer-fuzz-") as tmp:
        folder = Path(tmp)
        bases = [encode(folder / "base.mp4"), encode(folder / "base.ts", fmt="mpegts"), encode(folder / "base.mkv"),
                 encode(folder / "base_8k.mp4", rate=8000, layout="mono"),
                 encode(folder / "base_71.mkv", rate=96000, layout="7.1")]  # fmt: skip
        healthy = encode(folder / "healthy.mp4")
        deadline = time.monotonic() + args.minutes * 60
        while time.monotonic() < deadline:
            work = folder / f"run{totals['runs']}"
            work.mkdir()
            result = one_run(work, bases, healthy, args.per_run, rng)
            totals["runs"] += 1
            for key in ("cases", "analyzed", "one_line"):
                totals[key] += int(result[key])  # type: ignore[call-overload]
            if result["crash"]:
                totals["crashes"] += 1
                kept = args.keep / f"run{totals['runs']}"
                shutil.copytree(work, kept)
                print(f"run {totals['runs']}: CRASH {result['crash']} (inputs in {kept})", file=sys.stderr)
            else:
                print(f"run {totals['runs']}: {result['analyzed']} analyzed, {result['one_line']} one line, "
                      f"{result['seconds']} s", file=sys.stderr)  # fmt: skip
            shutil.rmtree(work)
    print(json.dumps(totals))
    return 1 if totals["crashes"] else 0


if __name__ == "__main__":
    sys.exit(main())
