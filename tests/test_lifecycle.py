"""A stream's life in the analyzer (pipelines/stages/lifecycle.py): the transitions the table allows, and a stream
whose preparation fails leaving a serving analyzer that still stops."""

from __future__ import annotations

import asyncio
import sys
from dataclasses import replace

import pytest

from pipelines.analyzer import Analyzer
from pipelines.config import build_config
from pipelines.stages.batcher import Batcher
from pipelines.stages.events import EventDetector
from pipelines.stages.lifecycle import TRANSITIONS, Job, LifecycleError, StreamRuntime, StreamState
from streamer.errors import SourceError
from streamer.ingest import IngestHub
from streamer.media import SourceState, StateChange

SOURCE = "synthetic:?events=av@1&duration=3&realtime=0&width=320&height=180"
S = StreamState


def runtime(state: StreamState) -> StreamRuntime:
    sc = build_config(mqtt_flags={"url": "none"}, sources=[f"s={SOURCE}"]).streams[0]
    lane = Batcher[Job](4, 0.005).add_lane("s", 4, drop_oldest=False)
    return StreamRuntime(sc, lane, EventDetector("s", sc.events, sc.alpha, sc.beta), state)


def test_a_stream_goes_through_its_states_in_order() -> None:
    rt = runtime(S.STARTING)
    for state in (S.READY, S.RUNNING, S.ENDED, S.FLUSHED, S.RELEASING, S.RELEASED):
        rt.advance(state)
        assert rt.state is state
    assert rt.done and rt.flushed


@pytest.mark.parametrize("start", list(StreamState))
def test_every_transition_outside_the_table_is_refused(start: StreamState) -> None:
    for to in StreamState:
        rt = runtime(start)
        if to in TRANSITIONS[start]:
            rt.advance(to)
            assert rt.state is to
        else:
            with pytest.raises(LifecycleError, match=rf"stream 's': cannot go from {start.name} to {to.name}"):
                rt.advance(to)
            assert rt.state is start


def test_done_and_flushed_follow_the_state() -> None:
    assert [runtime(s).done for s in StreamState] == [False, False, False, True, True, True, True]
    assert [runtime(s).flushed for s in StreamState] == [False, False, False, False, True, True, True]


async def test_a_stream_whose_ingest_process_cannot_start_leaves_and_stop_still_ends_the_run(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The ingest process is spawned for real, with an interpreter that does not exist: the spawn fails. Before
    the fix its lane stayed open with no source task, so stop() never ended the run."""
    base = build_config(mqtt_flags={"url": "none"}, sources=[f"broken={SOURCE}"])
    hub = IngestHub([])
    await hub.start()  # listening: a stream added now gets a process of its own at once
    analyzer = Analyzer(replace(base, streams=(), ingest="process"), serve=True, hub=hub)
    run = asyncio.create_task(analyzer.run())
    monkeypatch.setattr(sys, "executable", "/nonexistent/python3")
    with pytest.raises(SourceError) as failure:
        await analyzer.add_stream(base.streams[0])
    monkeypatch.undo()
    message = str(failure.value)
    assert "\n" not in message and message.startswith("stream 'broken': cannot start its ingest process"), message
    assert "broken" not in analyzer.streams and "broken" not in analyzer.stats.streams

    await analyzer.add_stream(base.streams[0])  # it can be added again once the spawn works
    assert analyzer.streams["broken"].state in (S.RUNNING, S.ENDED, S.FLUSHED)
    analyzer.stop()
    summary = await asyncio.wait_for(run, 30)
    assert summary.failed == ()


def test_a_stream_that_never_opened_is_told_with_its_last_error() -> None:
    rt = runtime(S.RUNNING)
    assert rt.never_opened is None  # stopped (Ctrl-C during start-up) before any attempt failed: not a failure
    rt.heard(StateChange("s", SourceState.CONNECTING, "", None, 0.0))
    assert rt.never_opened is None
    for state, detail in [(SourceState.RECONNECTING, "cannot open x: Server returned 404 Not Found"),
                          (SourceState.OFFLINE, "cannot open x: Server returned 404 Not Found")]:  # fmt: skip
        rt.heard(StateChange("s", state, detail, 0.5, 0.0))
    assert str(rt.never_opened) == "stream 's': cannot open x: Server returned 404 Not Found"
    rt.heard(StateChange("s", SourceState.ONLINE, "", None, 0.0))
    assert rt.never_opened is None and rt.last_error.endswith("404 Not Found")
    failed = runtime(S.ENDED)
    failed.error = SourceError("s", "no such file")
    assert failed.never_opened is None  # it failed: counted among the failed streams, not twice
    removed = runtime(S.ENDED)
    removed.removed = True
    assert removed.never_opened is None  # taken away on purpose (a cluster moved it)
