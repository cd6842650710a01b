"""Deciding on the frame (issue 30): a live stream's sudden change is scored before its timestep closes, and a
clear onset starts its event then. The pieces on hand-made inputs: the provisional timestep, the onset gate, the
model's provisional scoring (which teaches it nothing), the detector's early start and the scoring stage's
choice of provisional timesteps; the whole path is measured by ``streamer bench latency`` (test_bench_latency)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from models import FusionModel
from pipelines.config import EventOptions, StreamConfig
from pipelines.stages.events import Ended, Event, EventDetector, Scores
from streamer.media import AudioChunk, VideoFrame
from streamer.onsets import OnsetGate, Onsets
from streamer.sync import SyncOptions, TimestepAssembler

from .model_inputs import HOP, N_HOP, SR, TAU, WEIGHTS, noisy, pink_noise, scene, timestep, tone

OPTS = SyncOptions(hop=0.1, context=0.1, max_wait=0.3, sample_rate=SR)


def _frame(t: float, luma: np.ndarray) -> VideoFrame:
    return VideoFrame(t=t, luma=luma, duration=1 / 30)


def test_a_provisional_timestep_is_the_open_one_so_far_and_changes_nothing_after_it() -> None:
    rng = np.random.default_rng(0)
    audio = rng.normal(0, 0.1, SR).astype(np.float32)
    pictures = [rng.integers(0, 255, (9, 16), dtype=np.uint8) for _ in range(30)]

    def play(peek: bool) -> tuple[list[Any], list[tuple[Any, int]]]:
        asm = TimestepAssembler("s", OPTS, has_video=True, has_audio=True)
        finals, early, heard = [], [], 0
        items = [(i / 30, "v", i) for i in range(30)] + [(j * 0.02, "a", j) for j in range(50)]
        for t, kind, i in sorted(items):
            if kind == "v":
                finals += asm.push_video(_frame(t, pictures[i]))
            else:
                finals += asm.push_audio(AudioChunk(t, audio[i * 320 : (i + 1) * 320]))
                heard = (i + 1) * 320
            if peek:
                early.append((asm.provisional(), heard))
        return finals + asm.flush(), early

    plain, _ = play(False)
    finals, early = play(True)
    assert len(finals) == len(plain) == 10
    for a, b in zip(finals, plain, strict=True):  # asking for provisional timesteps changes no timestep
        assert a.k == b.k and not a.provisional and [f.t for f in a.frames] == [f.t for f in b.frames]
        assert np.array_equal(a.audio_window, b.audio_window)
    ts, heard = next((p, n) for p, n in early if p is not None and p.k == 4 and len(p.frames) == 2)
    assert ts.provisional and ts.t == pytest.approx(0.4) and not ts.reset
    assert all(0.4 - 1e-9 <= f.t < 0.5 for f in ts.frames)
    # its audio: the latest hop (and context) of what has come, so a sound late in the last timestep is whole
    assert len(ts.audio_window) == round(0.2 * SR)
    assert np.array_equal(ts.audio_window, audio[heard - round(0.2 * SR) : heard])


def test_no_provisional_timestep_right_after_a_discontinuity() -> None:
    asm = TimestepAssembler("s", OPTS, has_video=True, has_audio=False)
    assert asm.provisional() is None  # nothing yet
    for i in range(6):
        asm.push_video(_frame(i / 30, np.zeros((9, 16), np.uint8)))
    assert asm.provisional() is not None
    asm.discontinuity(5.0)
    asm.push_video(_frame(5.0, np.zeros((9, 16), np.uint8)))
    assert asm.provisional() is None  # the stream starts afresh: its first timestep is the reset one


def test_the_gate_opens_on_a_sudden_change_and_not_on_a_busy_scene_or_steady_noise() -> None:
    rng = np.random.default_rng(1)
    onsets, gate = Onsets(SR), OnsetGate()
    base = scene(1)
    jumps = []
    for i in range(120):  # 4 s of a busy scene: noise, and a fortieth of the picture changing every frame
        luma = noisy(base, rng, sigma=3.0)
        luma[:, (i % 40) * 4 : (i % 40) * 4 + 4] = rng.integers(0, 255, (90, 4))
        jumps.append(onsets.video(_frame(i / 30, luma)))
    assert sum(jumps[30:]) == 0
    luma = noisy(base, rng, sigma=3.0)
    luma[25:65, 40:112] = 255  # a bright box over a fifth of the picture
    assert onsets.video(_frame(4.0, luma))
    loud = pink_noise(3.0, -40, seed=2)
    heard = [onsets.audio(AudioChunk(j * 0.02, loud[j * 320 : (j + 1) * 320])) for j in range(150)]
    assert sum(heard) == 0
    beep = (loud[:320] + tone(0.02, -20)).astype(np.float32)
    assert onsets.audio(AudioChunk(3.0, beep))
    # the whole picture at once is the light, not an onset (the video model does not count it either)
    assert not onsets.video(_frame(4.1, np.full((90, 160), 250, np.uint8)))
    # a jump gets a look, and so does the item after it in the same timestep; at most per_step a timestep
    assert not gate.look(7, False)
    assert [gate.look(7, j) for j in (True, False, False)] == [True, True, False]
    assert [gate.look(8, j) for j in (True, True, True, True, False)] == [True, True, True, False, False]
    assert not gate.look(9, False) and gate.look(9, True)


def _model() -> FusionModel:
    model = FusionModel(tau=TAU)
    for _ in range(2):
        model.add_stream(*WEIGHTS)
    return model


def test_a_provisional_score_teaches_the_model_nothing_and_sees_a_clear_onset() -> None:
    rng = np.random.default_rng(3)
    base = scene(3)
    quiet = pink_noise(6.0, -50, seed=4)
    steps = [timestep(k, [noisy(base, rng) for _ in range(3)], quiet) for k in range(45)]
    a, b = _model(), _model()
    for ts in steps:
        a.score([ts], [0])
        b.score([ts], [0])
    before = {key: value.clone() for key, value in a.export_state(0).items()}
    # the open timestep 45 so far: one frame with a box, and a sound in the latest hop
    boxed = noisy(base, rng)
    boxed[20:70, 40:120] = 255
    loud = quiet.copy()
    loud[44 * N_HOP + 800 : 46 * N_HOP] += tone(0.15, -15)
    peek = replace(timestep(45, [boxed], loud[: 45 * N_HOP + 800]), provisional=True)
    peek = replace(peek, audio_window=loud[45 * N_HOP + 800 - len(peek.audio_window) : 45 * N_HOP + 800])
    following = timestep(45, [noisy(base, rng) for _ in range(3)], quiet)
    # a provisional timestep in a batch with another stream's timestep
    out = a.score([following, peek], [1, 0])
    assert out["s_v"][1] > 0.9 and out["s_a"][1] > 0.9 and out["s"][1] > 0.9
    after = a.export_state(0)
    for key in before:  # nothing learned from it
        torch.testing.assert_close(after[key], before[key], rtol=0, atol=0, equal_nan=True, msg=key)
    assert np.allclose(a.score([following], [0])["s"], b.score([following], [0])["s"])


def test_a_batch_with_provisional_timesteps_of_other_streams_is_one_call_with_the_same_scores() -> None:
    """Provisional timesteps whose streams have nothing else in the batch are scored in the batch's own call (one
    call, not two; their rows put back after it); one whose stream's timestep is in the batch too still follows
    it, on the state it leaves. Scores and learned state as when each kind is scored in a call of its own."""
    rng = np.random.default_rng(5)
    bases = [scene(10 + i) for i in range(5)]
    quiet = pink_noise(6.0, -50, seed=6)
    n_streams = len(bases)

    def model() -> FusionModel:
        m = FusionModel(tau=TAU)
        for _ in range(n_streams):
            m.add_stream(*WEIGHTS)
        return m

    a, b = model(), model()
    for k in range(45):
        steps = [
            timestep(k, [noisy(base, rng) for _ in range(3)], quiet, stream=f"s{i}") for i, base in enumerate(bases)
        ]
        a.score(steps, list(range(n_streams)))
        b.score(steps, list(range(n_streams)))
    boxed = noisy(bases[3], rng)
    boxed[20:70, 40:120] = 255
    regular = [timestep(45, [noisy(bases[i], rng) for _ in range(3)], quiet, stream=f"s{i}") for i in range(3)]
    peeks = [
        replace(timestep(45, [boxed], quiet, stream="s3"), provisional=True),
        replace(timestep(45, [noisy(bases[4], rng)], quiet, stream="s4"), provisional=True),
    ]
    calls = 0
    score_part = a._score_part

    def counted(timesteps: Any, slots: Any) -> Any:
        nonlocal calls
        calls += 1
        return score_part(timesteps, slots)

    a._score_part = counted  # type: ignore[method-assign]
    joint = a.score([regular[0], peeks[0], regular[1], regular[2], peeks[1]], [0, 3, 1, 2, 4])
    assert calls == 1
    apart, peeked = b.score(regular, [0, 1, 2]), b.score(peeks, [3, 4])
    assert joint["s_v"][1] > 0.9  # the box is seen
    # s0's provisional timestep after its own timestep in the batch: scored on the state that timestep leaves
    follow = [timestep(46, [noisy(bases[0], rng) for _ in range(3)], quiet, stream="s0"),
              replace(timestep(47, [boxed], quiet, stream="s0"), provisional=True)]  # fmt: skip
    calls = 0
    after = a.score([*follow, peeks[1]], [0, 0, 4])
    assert calls == 2
    follow_apart, follow_peeked = b.score(follow[:1], [0]), b.score([follow[1], peeks[1]], [0, 4])
    for name, values in joint.items():
        expected = [apart[name][0], peeked[name][0], apart[name][1], apart[name][2], peeked[name][1]]
        np.testing.assert_allclose(values, np.stack(expected), rtol=1e-5, atol=1e-6, err_msg=name)
        expected = [follow_apart[name][0], follow_peeked[name][0], follow_peeked[name][1]]
        np.testing.assert_allclose(after[name], np.stack(expected), rtol=1e-5, atol=1e-6, err_msg=name)
    for slot in range(n_streams):  # the same learned, and nothing from the provisional rows
        for key, value in a.export_state(slot).items():
            torch.testing.assert_close(value, b.export_state(slot)[key], rtol=1e-5, atol=1e-6, equal_nan=True, msg=key)


def test_a_model_whose_state_cannot_be_put_back_scores_no_provisional_timestep() -> None:
    class Plain(torch.nn.Module):  # an encoder with no slot state: its provisional rows cannot be undone
        def forward(self, frames: torch.Tensor, valid: torch.Tensor, slots: torch.Tensor) -> torch.Tensor:
            return torch.ones(frames.shape[0])

    model = FusionModel(tau=TAU, video=Plain())
    model.add_stream(*WEIGHTS)
    ts = timestep(0, [scene(0).astype(np.uint8)], None)
    out = model.score([ts, replace(timestep(1, [scene(0).astype(np.uint8)], None), provisional=True)], [0, 0])
    assert out["s"][0] == pytest.approx(WEIGHTS[0]) and np.isnan(out["s"][1])


def _events(messages: list[Event | Ended]) -> list[Event]:
    return [m.event if isinstance(m, Ended) else m for m in messages]


def test_a_clear_provisional_score_starts_the_event_and_its_timesteps_carry_it_on() -> None:
    options = EventOptions(threshold=0.6, min_duration=0.2, min_gap=0.3, clear=0.97)
    detector = EventDetector("s", options, 0.5, 0.5)
    quiet = Scores(t=0.0, hop=HOP, score=0.1, s_v=0.1, s_a=0.1)
    assert detector.update(quiet) == []
    # marginal: above the threshold but no sense clear, or clear but under the threshold: nothing starts early
    assert detector.early(Scores(t=0.1, hop=HOP, score=0.8, s_v=0.8, s_a=0.8)) == []
    assert detector.early(Scores(t=0.1, hop=HOP, score=0.5, s_v=1.0, s_a=0.0)) == []
    assert not detector.active
    started = _events(detector.early(Scores(t=0.1, hop=HOP, score=1.0, s_v=1.0, s_a=1.0)))
    assert [e.type for e in started] == ["start"] and started[0].t == pytest.approx(0.1)
    assert detector.early(Scores(t=0.1, hop=HOP, score=1.0, s_v=1.0, s_a=1.0)) == []  # once
    later = []
    for k, s in enumerate([0.9, 0.95, 0.2, 0.1, 0.1, 0.1], start=1):
        later += _events(detector.update(Scores(t=k * HOP, hop=HOP, score=s, s_v=s, s_a=s)))
    assert [e.type for e in later] == ["end"]  # the timesteps go on with it: no second start
    end = later[0]
    assert end.id == started[0].id and end.start_t == pytest.approx(0.1) and end.t == pytest.approx(0.3)
    assert end.peak is not None and end.peak.score == pytest.approx(0.95)  # the timesteps' peak


def test_a_provisional_score_starts_an_event_that_waits_for_its_min_duration() -> None:
    options = EventOptions(threshold=0.5, min_duration=0.3, min_gap=0.3, clear=0.97)
    detector = EventDetector("s", options, 0.5, 0.5)
    assert detector.update(Scores(t=0.0, hop=HOP, score=0.6, s_v=0.6, s_a=0.6)) == []  # waiting
    started = _events(detector.early(Scores(t=0.1, hop=HOP, score=0.99, s_v=0.99, s_a=0.99)))
    assert [e.type for e in started] == ["start"] and started[0].t == pytest.approx(0.0)


def test_early_start_is_on_by_default_and_off_with_its_flag_or_key(tmp_path: Path) -> None:
    from pipelines.cli.main import build_parser, parse_args
    from pipelines.flags import analyzer_config
    from streamer.spec import parse_source
    from streamer.stream import decides_early

    def stream(*flags: str, file: Path | None = None) -> StreamConfig:
        args = parse_args(build_parser(), ["run", "rtsp://cam.local/s", "--mqtt", "none", *flags])
        return analyzer_config(args, args.sources, file).streams[0]

    on, off = stream(), stream("--no-early-start")
    assert on.sync.early and decides_early(on.spec, on.source, on.sync)
    assert not off.sync.early and not decides_early(off.spec, off.source, off.sync)
    config = tmp_path / "streamer.toml"
    config.write_text("[defaults]\nearly_start = false\n")
    assert not stream(file=config).sync.early
    assert stream("--early-start", file=config).sync.early  # the flag over the file
    clip = parse_source(str(tmp_path / "clip.mp4"))
    assert not decides_early(clip, on.source, on.sync)  # a file is read as fast as it goes: nothing to wait for


def test_the_scoring_stage_lets_go_of_provisional_timesteps_that_are_out_of_date_or_can_start_nothing() -> None:
    from pipelines.stages.scoring import wanted

    def ts(stream: str, k: int, provisional: bool = True) -> Any:
        return replace(timestep(k, None, None, stream=stream), provisional=provisional)

    batch = [
        ts("a", 5),
        ts("a", 5, provisional=False),  # its own timestep is in the batch after it
        ts("b", 3),
        ts("b", 3),  # a later provisional one of the stream
        ts("c", 2),  # its timestep was scored in an earlier batch
        ts("d", 7),  # the stream's event has started already
        ts("e", 9),
        ts("f", 1, provisional=False),  # current: scored
    ]
    scored = {"c": 2, "e": 8}
    keep = wanted(batch, lambda sid: scored.get(sid, -1), lambda sid: sid == "d")
    assert keep == [False, True, False, True, False, False, True, True]


def test_an_event_started_early_and_cut_short_before_its_timestep_keeps_its_picture() -> None:
    """The stream was removed right after a provisional score started an event, before any of its timesteps was
    scored: its end did not go out at all (the detector had no timestep to end it with), and had it, with no
    picture for the snapshot (a fresh-clone CI run of test_analyzer_streams timed out waiting for it)."""
    from streamer.ingest import Kept

    detector = EventDetector("s", EventOptions(threshold=0.6, clear=0.97), 0.5, 0.5)
    seen = _frame(0.1, np.zeros((9, 16), np.uint8))
    assert detector.early(Scores(t=0.1, hop=HOP, score=1.0, s_v=1.0, s_a=1.0), seen)
    (ended,) = detector.flush("stream ended")
    assert isinstance(ended, Ended) and ended.peak_frame is seen
    # the ingest keeps a provisional timestep's picture under its k until the timestep's own replaces it

    class Full:
        resident = True

    kept = Kept()
    kept.add(4, Full())  # type: ignore[arg-type]
    kept.add(4, Full())  # type: ignore[arg-type]
    kept.release(4)
    assert kept.frames == {} and kept._resident == 0


async def test_a_full_live_lane_counts_only_real_timesteps_as_dropped() -> None:
    """A provisional timestep dropped from a full lane counted as a dropped timestep: dropped + scored exceeded
    the stream's timesteps (a fresh-clone CI run of test_faults' slow model saw it)."""
    from pipelines.stages.batcher import Batcher

    batcher: Batcher[Any] = Batcher(max_batch=8, max_wait=0.0)
    lane = batcher.add_lane("s", 2, drop_oldest=True)
    lane.counted = lambda ts: not ts.provisional
    for item in (replace(timestep(0, None, None), provisional=True), timestep(0, None, None), timestep(1, None, None),
                 timestep(2, None, None)):  # fmt: skip
        await batcher.put(lane, item)
    assert lane.dropped == 1 and [ts.k for ts in lane.pending] == [1, 2]


async def test_a_live_streams_onset_is_cut_as_a_provisional_timestep_while_its_timestep_is_still_open() -> None:
    """A paced live source (the built-in synthetic one, a square appearing at 1.2 s) with 0.5 s timesteps: the
    provisional timestep that the square's first frame asks for comes out before the capture has even made the
    frame that closes the timestep (a wall-clock order, about 250 ms apart, not a duration). Before, the onset
    waited in the hand-off for that frame, and the provisional timestep came out with the timestep's own."""
    import time

    from streamer.spec import parse_source
    from streamer.stream import Stream

    sync = SyncOptions(hop=0.5, context=0.1, max_wait=0.3, sample_rate=SR)
    spec = parse_source("cam=synthetic:?events=v@1.2&length=1&duration=2&width=320&height=180")
    stream = Stream(spec, sync=sync, early=True)
    provisional: list[tuple[Any, float]] = []
    finals = {}
    async for ts in stream:
        if ts.provisional:
            provisional.append((ts, time.time()))
        else:
            finals[ts.k] = ts
    onset = [(ts, at) for ts, at in provisional if ts.k == 2]
    assert onset, "the square's onset was not looked at"
    ts, cut_at = onset[0]
    assert 1.2 - 1e-6 <= ts.frames[-1].t < 1.3  # cut at the square's first frame
    closing = finals[2].frames[-1]  # the timestep's last frame: made about 250 ms after the onset
    assert closing.t > 1.4
    assert cut_at < closing.wall_time
