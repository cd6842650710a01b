"""Ingest processes (issue 14): capture out of the analyzer's process, a live stream each; a lost one ends alone."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

import pytest

from streamer.ingest import IngestStream, plan_processes
from streamer.options import SourceOptions
from streamer.spec import parse_source
from streamer.sync import SyncOptions

from .analyzer_run import intervals, read_events, run_streamer, start_streamer


def _item(text: str) -> IngestStream:
    return IngestStream(parse_source(text), SourceOptions(), SyncOptions())


def test_each_live_stream_has_a_process_and_files_share_one_per_core() -> None:
    streams = [_item(f"cam{i}=rtsp://127.0.0.1:9/{i}") for i in range(3)]
    streams += [_item(f"file{i}=/tmp/x{i}.mp4") for i in range(5)]
    groups = plan_processes(streams, cores=2)
    ids = [[s.spec.stream_id for s in g] for g in groups]
    assert ids == [["cam0"], ["cam1"], ["cam2"], ["file0", "file2", "file4"], ["file1", "file3"]]
    assert [[s.spec.stream_id for s in g] for g in plan_processes([_item("f=/tmp/a.mp4")], cores=16)] == [["f"]]


def test_many_live_streams_share_a_few_processes_a_core() -> None:
    """Past LIVE_PROCESSES_PER_CORE a core, live streams share processes (their fixed costs are most of a small
    stream's), dealt evenly; files keep to their own."""
    from streamer.ingest import LIVE_PROCESSES_PER_CORE

    n = 2 * LIVE_PROCESSES_PER_CORE
    streams = [_item(f"cam{i}=rtsp://127.0.0.1:9/{i}") for i in range(4 * n + 1)] + [_item("f=/tmp/x.mp4")]
    groups = [[s.spec.stream_id for s in g] for g in plan_processes(streams, cores=2)]
    assert len(groups) == n + 1 and groups[-1] == ["f"]
    assert sorted(len(g) for g in groups[:-1]) == [4] * (n - 1) + [5]
    assert groups[0] == [f"cam{i}" for i in range(0, 4 * n + 1, n)]
    alone = plan_processes(streams[:n], cores=2)
    assert [len(g) for g in alone] == [1] * n


def _children(pid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as fh:
                parent = int(fh.read().rsplit(")", 1)[1].split()[1])
            with open(f"/proc/{entry}/cmdline", "rb") as fh:
                cmdline = fh.read()
        except OSError:
            continue
        if parent == pid and b"streamer.ingest" in cmdline:
            found.append(int(entry))
    return sorted(found)


def _ended(out: Path) -> int:
    return len(intervals(read_events(out))) if out.exists() else 0


async def _kill_one_child_after_the_first_events(proc: asyncio.subprocess.Process, out: Path) -> None:
    async with asyncio.timeout(60):
        while _ended(out) < 2:  # noqa: ASYNC110 (a file another process writes)
            await asyncio.sleep(0.1)
    children = _children(proc.pid)
    assert len(children) == 2, children
    os.kill(children[0], signal.SIGKILL)


@pytest.mark.timeout(120)
async def test_a_killed_ingest_process_ends_its_file_stream_alone_with_one_line(tmp_path: Path) -> None:
    """Two files played in real time, each in its own ingest process (2 cores): SIGKILL one process after the
    first events; that stream ends with a one-line error naming it, the other goes on to its later event, and the
    exit code says a source failed."""
    from .media import make_clip

    clips = [make_clip(tmp_path / f"{name}.mp4", duration=8.0, flashes=[2.0, 6.0], beeps=[2.0, 6.0], flash_len=0.5,
                       beep_len=0.5) for name in "ab"]  # fmt: skip
    out = tmp_path / "events.jsonl"
    proc = await start_streamer(
        "run", f"a={clips[0]}", f"b={clips[1]}", "--realtime", "--mqtt", "none", "--events-out", str(out), "-q"
    )
    await _kill_one_child_after_the_first_events(proc, out)
    async with asyncio.timeout(60):
        _, err = await proc.communicate()
    errors = [line for line in err.decode().splitlines() if line.startswith("streamer: error:")]
    assert len(errors) == 1, err.decode()
    assert "the ingest process exited with code -9" in errors[0], errors
    lost = "a" if "stream 'a'" in errors[0] else "b"
    survivor = "b" if lost == "a" else "a"
    events = read_events(out)
    assert [round(a) for a, _ in intervals(events, survivor)] == [2, 6], events
    assert [round(a) for a, _ in intervals(events, lost)] == [2], events
    assert proc.returncode == 3


@pytest.mark.timeout(120)
async def test_a_live_streams_killed_ingest_process_is_started_again(tmp_path: Path) -> None:
    """Two live streams: SIGKILL one's ingest process after the first events. A new process takes over after
    the backoff (1 s): the stream goes on on the same timeline, later in time (its source starts afresh: its
    events at 2 and 6 s of the new run), the other stream is untouched, and the run ends well."""
    out = tmp_path / "events.jsonl"
    proc = await start_streamer(
        "run", "a=synthetic:?events=av@2,av@6&duration=8", "b=synthetic:?events=av@2,av@6&duration=8",
        "--mqtt", "none", "--events-out", str(out), "-q",
    )  # fmt: skip
    await _kill_one_child_after_the_first_events(proc, out)
    async with asyncio.timeout(60):
        _, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()
    assert "ingest process exited with code -9; starting it again" in err.decode(), err.decode()
    events = read_events(out)
    found = {s: [a for a, _ in intervals(events, s)] for s in "ab"}
    restarted = "a" if len(found["a"]) == 3 else "b"
    other = "b" if restarted == "a" else "a"
    assert [round(a) for a in found[other]] == [2, 6], found
    first, *later = found[restarted]
    assert round(first) == 2 and len(later) == 2, found
    assert later[0] > 4.0 and later[1] - later[0] == pytest.approx(4.0, abs=0.15), found  # after the kill, 4 s apart


@pytest.mark.timeout(120)
async def test_live_streams_sharing_a_killed_ingest_process_all_go_on(monkeypatch: pytest.MonkeyPatch) -> None:
    """Four live streams in one ingest process, one of them then removed: SIGKILL it. Each other stream says it is
    reconnecting and goes on in a new process, its next timestep marked reset; the removed one is not started
    again."""
    from streamer import ingest
    from streamer.ingest import IngestHub
    from streamer.media import SourceState, StateChange

    monkeypatch.setattr(ingest, "LIVE_PROCESSES_PER_CORE", 1)
    hub = IngestHub([_item(f"s{i}=synthetic:?duration=60") for i in range(4)], cores=1)
    spawned: list[list[str]] = []
    spawn = hub._spawn

    async def recorded(group: list[IngestStream]) -> asyncio.subprocess.Process:
        spawned.append([s.spec.stream_id for s in group])
        return await spawn(group)

    monkeypatch.setattr(hub, "_spawn", recorded)
    counts = {f"s{i}": [0, 0] for i in range(3)}  # timesteps before the kill, after it (the first one reset)
    states: dict[str, list[SourceState]] = {name: [] for name in counts}
    killed = asyncio.Event()

    async def consume(name: str) -> None:
        remote = hub.remotes[name]

        def told(change: StateChange, name: str = name) -> None:
            states[name].append(change.state)

        remote.on_state = told
        async for ts in remote:
            if not killed.is_set():
                counts[name][0] += 1
            elif counts[name][1] or ts.reset:
                counts[name][1] += 1
            if counts[name][1] >= 10:
                return

    await hub.start()
    try:
        async with asyncio.timeout(90):
            tasks = [asyncio.create_task(consume(name)) for name in counts]
            while min(before for before, _ in counts.values()) < 10:  # noqa: ASYNC110
                await asyncio.sleep(0.1)
            await hub.remove("s3")
            children = _children(os.getpid())
            assert len(children) == 1 and spawned == [["s0", "s1", "s2", "s3"]], (children, spawned)
            killed.set()
            os.kill(children[0], signal.SIGKILL)
            await asyncio.gather(*tasks)
    finally:
        await hub.close()
    assert spawned == [["s0", "s1", "s2", "s3"], ["s0", "s1", "s2"]]
    assert all(after >= 10 for _, after in counts.values()), counts
    assert all(SourceState.RECONNECTING in seen for seen in states.values()), states


def test_the_config_chooses_capture_in_processes_or_threads(tmp_path: Path) -> None:
    from pipelines.config import build_config
    from streamer.errors import ConfigError

    assert build_config(None, sources=["synthetic:"]).ingest == "process"
    assert build_config({"ingest": "thread"}, sources=["synthetic:"]).ingest == "thread"
    with pytest.raises(ConfigError, match="ingest"):
        build_config({"ingest": "fork"}, sources=["synthetic:"])


async def test_capture_in_threads_gives_the_same_events_as_in_processes(tmp_path: Path) -> None:
    source = "synthetic:?events=av@2,a@5,v@8&duration=10&realtime=0"
    found = {}
    for mode in ("process", "thread"):
        config, out = tmp_path / f"{mode}.toml", tmp_path / f"{mode}.jsonl"
        config.write_text(f'ingest = "{mode}"\n')
        code, _, err = await run_streamer(source, "--config", str(config), "--mqtt", "none", "--events-out", str(out))
        assert code == 0, err
        found[mode] = [(round(a, 1), round(b, 1)) for a, b in intervals(read_events(out))]
    assert found["process"] == found["thread"] and len(found["thread"]) == 3, found


def test_an_ingest_process_does_not_import_torch() -> None:
    """Each live stream has a process: it must stay light (torch costs ~2 s and ~300 MB)."""
    import subprocess
    import sys

    code = "import sys, streamer.ingest, streamer.stream, streamer.snapshot; print('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert result.stdout.strip() == "False"


async def test_full_frames_stay_in_the_ingest_process_until_scored_or_pinned(tmp_path: Path) -> None:
    """The analyzer's side of the protocol, against a real ingest process: timesteps arrive without pictures;
    a pinned timestep's picture survives ``scored``, an unpinned one does not; snapshots asked at once each get
    their own answer."""
    from streamer.ingest import IngestHub, KeptFrame

    from .media import make_clip

    clip = make_clip(tmp_path / "c.mp4", duration=3.0, flashes=[1.0])
    hub = IngestHub([_item(f"c={clip}")])
    await hub.start()
    try:
        remote = hub.remotes["c"]
        steps = []
        async for ts in remote:
            steps.append(ts)
            if len(steps) == 20:
                break
        middle = [f.full for ts in steps for f in ts.frames if f.full is not None]
        assert len(middle) == 20 and all(isinstance(m, KeptFrame) for m in middle)  # one kept picture a timestep
        assert all(f.luma.shape == (90, 160) for ts in steps for f in ts.frames)
        kept = {ts.k: next(f for f in ts.frames if f.full is not None) for ts in steps}
        remote.pin(kept[10])
        remote.scored(19)
        pinned, dropped = await asyncio.gather(remote.snapshot(kept[10]), remote.snapshot(kept[5]))
        assert pinned is not None and pinned[:3] == b"\xff\xd8\xff"
        assert dropped is None
    finally:
        await hub.close()


class _ClosedWriter:
    def is_closing(self) -> bool:
        return True

    def close(self) -> None: ...

    async def wait_closed(self) -> None: ...


def _wire(*messages: tuple[object, ...]) -> asyncio.StreamReader:
    import pickle

    reader = asyncio.StreamReader()
    for message in messages:
        data = pickle.dumps(message)
        reader.feed_data(len(data).to_bytes(4, "big") + data)
    return reader


async def test_a_state_that_comes_before_its_consumer_listens_is_told_when_it_does() -> None:
    """``streamer run`` starts files' ingest processes before torch is imported: a source can open before the
    analyzer listens, and its ``online`` must still reach the status topic."""
    from streamer.ingest import RemoteStream
    from streamer.media import SourceState, StateChange

    remote = RemoteStream("a")
    online = StateChange("a", SourceState.ONLINE, None, None, 0.0)
    remote.attach(_wire(("state", online)), _ClosedWriter())  # type: ignore[arg-type]
    await asyncio.sleep(0.05)
    heard: list[StateChange] = []
    remote.on_state = heard.append
    assert heard == [online]
    remote.on_state = heard.append  # told once
    assert heard == [online]
    await remote.close()


async def test_dropped_frames_add_up_over_replaced_ingest_processes() -> None:
    """A counter (Prometheus ``..._total``) must not go down when a live stream's ingest process is replaced."""
    from streamer.ingest import Kept, RemoteStream, pack
    from streamer.media import Timestep

    remote = RemoteStream("a", restartable=True)
    import numpy as np

    ts = pack(Timestep("a", 0, 0.0, 0.1, (), np.zeros(0, np.float32), 0), Kept())
    for message in (("ts", ts, 5), ("restart", "killed"), ("ts", ts, 2), ("end",)):
        remote._inbox.put_nowait(message)
    seen = [remote.dropped_video async for _ in remote]
    assert seen == [5, 7]


def test_an_ingest_process_whose_analyzer_stopped_before_it_connected_ends_quietly(tmp_path: Path) -> None:
    """SIGINT a second after ``streamer run`` started: the analyzer closed its socket before its ingest process
    connected; the child exits 0 without a traceback (it printed a ConnectionRefusedError ExceptionGroup)."""
    import pickle
    import subprocess
    import sys

    from streamer.ingest import IngestJob, IngestStream
    from streamer.options import SourceOptions
    from streamer.spec import parse_source
    from streamer.sync import SyncOptions

    gone = tmp_path / "gone.sock"
    gone.touch()  # a path that exists but where nothing listens: connection refused, as after the analyzer closed
    job = IngestJob(
        str(gone), (IngestStream(parse_source("cam=synthetic:?duration=5"), SourceOptions(), SyncOptions()),)
    )
    done = subprocess.run([sys.executable, "-m", "streamer.ingest"], input=pickle.dumps(job), capture_output=True,
                          timeout=60)  # fmt: skip
    assert done.returncode == 0, done.stderr.decode()
    assert done.stderr == b"", done.stderr.decode()
