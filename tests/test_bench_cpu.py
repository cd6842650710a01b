"""The benchmarks' CPU accounting: a process's own CPU apart from its children's, live or reaped."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

from pipelines.bench.cpu import busy, cpu_times, tree_rss_mb

BURN = "import time\nend = time.process_time() + {seconds}\nwhile time.process_time() < end: pass\n"

# waits for a line, then: a child that burns 0.4 s of CPU and ends (reaped), a second that burns 0.3 s and stays,
# 0.2 s of its own; then says so and waits to be ended
PARENT = textwrap.dedent(
    """
    import subprocess, sys, time
    sys.stdin.readline()
    burn = {burn!r}
    reaped = subprocess.Popen([sys.executable, "-c", burn.format(seconds=0.4)])
    staying = subprocess.Popen([sys.executable, "-c", burn.format(seconds=0.3) + "print('burnt', flush=True)\\n"
                                "import sys; sys.stdin.readline()"], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    exec(burn.format(seconds=0.2))
    reaped.wait()
    staying.stdout.readline()
    print("done", flush=True)
    sys.stdin.readline()
    staying.stdin.close()
    staying.wait()
    """
)


def test_a_process_own_cpu_and_its_childrens_are_counted_apart_live_or_reaped() -> None:
    parent = subprocess.Popen([sys.executable, "-c", PARENT.format(burn=BURN)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)  # fmt: skip
    assert parent.stdin is not None and parent.stdout is not None
    try:
        before = cpu_times([parent.pid])
        parent.stdin.write("go\n")
        parent.stdin.flush()
        assert parent.stdout.readline().strip() == "done"
        assert tree_rss_mb(parent.pid) > tree_rss_mb(os.getpid()) / 100  # the parent and its staying child
        after = cpu_times([parent.pid])
    finally:
        parent.stdin.close()
        parent.wait(timeout=30)
    spent = busy(before, after)
    own, below = spent.own * spent.seconds, spent.below * spent.seconds
    assert 0.2 <= own < 0.6, own  # its own 0.2 s (and starting two interpreters), not its children's
    assert below >= 0.7 - 0.05, below  # the reaped child's 0.4 s and the live one's 0.3 s
    per_stream = spent.per_stream_ms(2)
    assert per_stream["below"] == round(1000 * spent.below / 2, 2)


def test_a_process_that_is_gone_counts_nothing() -> None:
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    assert cpu_times([gone.pid]).own == 0.0
    assert tree_rss_mb(gone.pid) == 0.0
