"""Model state touched by one thread (issue 28): streams that join and leave while batches are being scored get the
scores they would have got had they joined before scoring began, and every change of the models' state (a stream
added, released, its weights, a new hop's model and its warm-up, its state exported or imported) runs on the model
thread, between two batches."""

from __future__ import annotations

import asyncio
import functools
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pytest
import torch

from models import FusionModel
from pipelines.config import StreamConfig, build_config
from pipelines.stages.inference import ModelRunner
from streamer.media import Timestep

from .model_inputs import HOP, N_HOP, TAU, moving_square_frames, noisy, pink_noise, scene, timestep, tone
from .model_inputs import WEIGHTS as DEFAULT_WEIGHTS

DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no GPU"))]

STREAMS = 20  # s0 and s1 from the start, s2..s19 join one per batch: capacity 8 grows to 16, then to 32
BATCHES = 30
LEAVE = {6: "s1", 10: "s4", 14: "s9", 22: "s3"}  # stream -> leaves once this batch of it is queued
JOIN = {b: f"s{b + 1}" for b in range(1, STREAMS - 1)}  # joins while this batch is being scored
WEIGHTS = {12: ("s0", 0.8, 0.2)}  # set while this batch is being scored
STEPS = 2 * BATCHES  # the most timesteps a stream can have (one or two per batch)


def configs(device: str) -> tuple[Any, dict[str, StreamConfig]]:
    sources = [f"s{i}=synthetic:?duration=1" for i in range(STREAMS)]
    config = build_config(mqtt_flags={"url": "none"}, sources=sources)
    streams = {
        sc.stream_id: replace(sc, alpha=0.3 + 0.02 * i, beta=0.7 - 0.01 * i) for i, sc in enumerate(config.streams)
    }
    return replace(config.model, device=device), streams


@functools.cache
def inputs(i: int) -> tuple[Timestep, ...]:
    """Stream ``s{i}``'s timesteps: a still scene that a square crosses now and then, pink noise with a tone now
    and then, each at times of its own, so its scores depend on what its state has learned so far."""
    rng = np.random.default_rng(i)
    base = scene(i)
    audio = pink_noise(STEPS * HOP + 0.2, -50, seed=i)
    for k in range(STEPS):
        if (k + 2 * i) % 9 in (5, 6):
            audio[k * N_HOP : (k + 1) * N_HOP] += tone(HOP, -20, hz=500 + 50 * i)
    steps = []
    for k in range(STEPS):
        moving = (k + i) % 7 in (5, 6)
        frames = moving_square_frames(3, seed=i, start=3 * k) if moving else [noisy(base, rng) for _ in range(3)]
        steps.append(timestep(k, frames, audio, stream=f"s{i}"))
    return tuple(steps)


@dataclass
class Scored:
    """What each stream got: its outputs by timestep, and the batches as they were scored (for the replay)."""

    batches: list[list[Timestep]] = field(default_factory=list)
    weights_after: dict[int, tuple[str, float, float]] = field(default_factory=dict)  # set after this batch
    rows: dict[tuple[str, int], dict[str, float]] = field(default_factory=dict)

    def add(self, batch: list[Timestep], result: dict[str, np.ndarray]) -> None:
        for j, ts in enumerate(batch):
            self.rows[ts.stream_id, ts.k] = {
                name: float(values[j]) for name, values in result.items() if values.ndim == 1
            }


async def score_while_streams_come_and_go(runner: ModelRunner, streams: dict[str, StreamConfig]) -> Scored:
    """Score ``BATCHES`` batches of the streams present, while another task adds, releases and reweights streams
    as each batch is on the model thread: even streams join with ``await``, odd ones are queued and take part in
    the very next batch. The other task acts half a batch's scoring time after the batch was queued, so that a
    runner doing it on the loop (as before issue 28) would change the state in the middle of the batch; the next
    batch waits for it, so every stream joins and leaves where the plan says."""
    out = Scored()
    for sid in ("s0", "s1"):
        await runner.add_stream(streams[sid])
    present = ["s0", "s1"]
    next_k = dict.fromkeys(streams, 0)
    submitted = -1
    in_flight = [asyncio.Event() for _ in range(BATCHES)]
    handled = [asyncio.Event() for _ in range(BATCHES)]
    seconds = [0.0, 0.0]  # how long the last batch of one timestep a stream, and of two, took to score

    async def control() -> None:
        for b in range(BATCHES):
            await in_flight[b].wait()
            await asyncio.sleep(seconds[b % 2] / 2)
            if b in LEAVE:
                runner.release(LEAVE[b])  # its last batch was queued before this: it leaves after it
            if b in WEIGHTS:
                runner.set_weights(*WEIGHTS[b])
                out.weights_after[submitted] = WEIGHTS[b]
            if b in JOIN:
                sid = JOIN[b]
                joined = runner.add_stream(streams[sid])
                if int(sid[1:]) % 2 == 0:
                    await joined
                present.append(sid)
            handled[b].set()

    controller = asyncio.create_task(control())
    for b in range(BATCHES):
        batch: list[Timestep] = []
        for sid in list(present):
            if any(b > last and sid == gone for last, gone in LEAVE.items()):
                present.remove(sid)
                continue
            for _ in range(1 + b % 2):  # one timestep each, or two (a stream's timesteps update its state in order)
                batch.append(inputs(int(sid[1:]))[next_k[sid]])
                next_k[sid] += 1
        scoring = runner.score_async(batch)  # queued now: what the other task queues from here on comes after
        submitted = b
        in_flight[b].set()
        start = time.perf_counter()
        out.add(batch, await scoring)
        seconds[b % 2] = time.perf_counter() - start
        await handled[b].wait()
        out.batches.append(batch)
    await controller
    return out


async def replay(runner: ModelRunner, streams: dict[str, StreamConfig], scored: Scored) -> Scored:
    """The same batches in the same order, every stream having joined before the first."""
    out = Scored()
    for sc in streams.values():
        await runner.add_stream(sc)
    for b, batch in enumerate(scored.batches):
        out.add(batch, await runner.score_async(batch))
        if b in scored.weights_after:
            await runner.set_weights(*scored.weights_after[b])
    return out


@pytest.mark.parametrize("device", DEVICES)
async def test_streams_joining_and_leaving_while_batches_are_scored_score_as_if_they_had_joined_first(
    device: str,
) -> None:
    model, streams = configs(device)
    runner = ModelRunner(model)
    try:
        live = await score_while_streams_come_and_go(runner, streams)
        (fusion,) = runner._models.values()
        assert fusion.alpha.shape[0] == 32, "the capacity grew past 8 and past 16 while batches were scored"
    finally:
        runner.close()
    reference_runner = ModelRunner(model)
    try:
        reference = await replay(reference_runner, streams, live)
    finally:
        reference_runner.close()
    assert set(live.rows) == set(reference.rows) and len({sid for sid, _ in live.rows}) == STREAMS
    assert live.weights_after, "the weights were set while a batch was scored"
    differ = []
    for key, row in live.rows.items():
        for name, value in row.items():
            if not np.isclose(value, reference.rows[key][name], rtol=0, atol=1e-6, equal_nan=True):
                differ.append(f"{key[0]} k={key[1]} {name}: {value:.6g} vs {reference.rows[key][name]:.6g}")
    assert not differ, f"{len(differ)} output(s) differ, first: {differ[:5]}"
    # the inputs made the state matter: events were seen and heard
    assert max(row["s_v"] for row in live.rows.values()) > 0.5
    assert max(row["s_a"] for row in live.rows.values()) > 0.5


def spy(calls: list[tuple[str, str]], name: str, method: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(method)
    def record(*args: Any, **kwargs: Any) -> Any:
        calls.append((name, threading.current_thread().name))
        return method(*args, **kwargs)

    return record


async def test_every_change_of_model_state_runs_on_the_model_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[str, str]] = []
    watched = ("__init__", "add_stream", "release", "set_weights", "reset_slots", "_grow", "export_state",
               "import_state", "score")  # fmt: skip
    for name in watched:
        monkeypatch.setattr(FusionModel, name, spy(calls, name, getattr(FusionModel, name)))
    model, streams = configs("cpu")
    runner = ModelRunner(model)
    try:
        await runner.add_stream(streams["s0"])
        for i in range(1, 10):  # the ninth grows the model, while a batch is being scored
            scoring = runner.score_async([inputs(0)[i - 1]])
            await runner.add_stream(streams[f"s{i}"])
            await scoring
        other_hop = replace(streams["s10"], sync=replace(streams["s10"].sync, hop=0.05))
        await runner.add_stream(other_hop)  # a new hop: a model built and warmed up
        await runner.score_async([replace(inputs(0)[9], reset=True)])  # a reconnect resets the stream's state
        await runner.set_weights("s1", 0.9, 0.1)
        state = await runner.export_async(["s1"])
        await runner.import_async("s2", state["s1"])
        await runner.release("s1")
    finally:
        runner.close()
    done = {name for name, _ in calls}
    assert done >= set(watched), f"not exercised: {set(watched) - done}"
    elsewhere = sorted({(name, thread) for name, thread in calls if not thread.startswith("model")})
    assert not elsewhere, f"model state touched outside the model thread: {elsewhere}"


def test_a_model_confined_to_a_thread_refuses_the_others() -> None:
    model = FusionModel(tau=TAU)
    slot = model.add_stream(*DEFAULT_WEIGHTS)  # not confined: any thread
    model.confine()
    errors: list[BaseException] = []

    def touch() -> None:
        try:
            model.add_stream(*DEFAULT_WEIGHTS)
        except RuntimeError as exc:
            errors.append(exc)

    thread = threading.Thread(target=touch, name="intruder")
    thread.start()
    thread.join()
    assert len(errors) == 1 and "intruder" in str(errors[0]) and "model thread" in str(errors[0])
    model.release(slot)  # the thread it is confined to may
