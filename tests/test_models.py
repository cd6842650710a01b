"""The activity models and their fusion: the acceptance list of the models issue, on CPU and (if any) CUDA."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from models import FusionModel, fuse, load_module
from streamer.media import Timestep
from streamer.spec import parse_source
from streamer.stream import Stream

from .model_inputs import (
    N_HOP,
    SR,
    TAU,
    WEIGHTS,
    H,
    W,
    level_dbfs,
    moving_square_frames,
    noisy,
    pink_noise,
    scene,
    timestep,
    tone,
)

DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no GPU"))]


def run(model: FusionModel, steps: list[Timestep], slot: int) -> dict[str, np.ndarray]:
    """Score one stream's timesteps one call each; arrays over time."""
    outs = [model.score([ts], [slot]) for ts in steps]
    return {name: np.concatenate([o[name] for o in outs]) for name in outs[0]}


def static_video(n: int, seed: int = 0, flicker: float = 0.0) -> list[list[np.ndarray]]:
    rng = np.random.default_rng(seed)
    base = scene(seed)
    frames = [noisy(base, rng, gain=flicker * np.sin(2 * np.pi * i * 50 / 30)) for i in range(3 * n)]
    return [frames[3 * k : 3 * k + 3] for k in range(n)]


def test_fusion_rule() -> None:
    s_v, s_a = torch.tensor([0.8, 0.8, 0.8, 0.8, 0.8]), torch.tensor([0.2, 0.2, 0.2, 0.2, 0.2])
    has_v = torch.tensor([True, True, False, False, False])
    has_a = torch.tensor([True, False, True, True, False])
    alpha, beta = torch.tensor([0.3, 0.5, 0.5, 1.0, 0.5]), torch.tensor([0.7, 0.5, 0.5, 0.0, 0.5])
    s = fuse(s_v, s_a, has_v, has_a, alpha, beta)
    # both; video only; audio only; ignored audio; none: an absent modality contributes nothing (no rescaling, so
    # the threshold means the same for a stream with or without audio)
    expected = [0.3 * 0.8 + 0.7 * 0.2, 0.5 * 0.8, 0.5 * 0.2, 0.0, 0.0]
    assert s.tolist() == pytest.approx(expected, abs=1e-7)


@pytest.mark.parametrize("device", DEVICES)
def test_score_is_alpha_sv_plus_beta_sa(device: str) -> None:
    model = FusionModel(tau=TAU).to(device)
    slot = model.add_stream(alpha=0.3, beta=0.9)
    audio = np.concatenate([pink_noise(3, -40), tone(1, -10) + pink_noise(1, -40, seed=1)])
    video = static_video(20) + [moving_square_frames(3, start=3 * k) for k in range(20)]
    out = run(model, [timestep(k, video[k], audio) for k in range(40)], slot)
    assert np.allclose(out["s"], 0.3 * out["s_v"] + 0.9 * out["s_a"], atol=1e-6)
    both = (out["s_v"] > 0.9) & (out["s_a"] > 0.9)  # the square's first crossing and the tone together
    assert both.any() and out["s"][both].min() > 1.0  # up to alpha + beta


@pytest.mark.parametrize("device", DEVICES)
def test_static_scene_and_flicker_score_low_a_moving_square_high(device: str) -> None:
    model = FusionModel(tau=TAU).to(device)
    static, flicker, moving = model.add_stream(*WEIGHTS), model.add_stream(*WEIGHTS), model.add_stream(*WEIGHTS)
    quiet = static_video(40)
    out = run(model, [timestep(k, quiet[k], None) for k in range(40)], static)
    assert out["s_v"].max() < 0.05
    lit = static_video(40, seed=1, flicker=12.0)  # mains flicker aliased at 30 fps: the whole picture pulses
    out = run(model, [timestep(k, lit[k], None) for k in range(40)], flicker)
    assert out["s_v"].max() < 0.05
    steps = [timestep(k, quiet[k], None) for k in range(40)]
    steps += [timestep(k, moving_square_frames(3, start=3 * k), None) for k in range(40, 55)]
    out = run(model, steps, moving)
    # its first crossing is unusual all along (later ones, over the same cells, become the usual: busy scenes)
    assert out["s_v"][:40].max() < 0.05 and out["s_v"][40:52].min() > 0.9


@pytest.mark.parametrize("device", DEVICES)
def test_a_stream_joined_during_a_sound_still_hears_the_next_ones(device: str) -> None:
    """The latency benchmark's analyzer, slowed by a loaded machine, joined its stream as the first impulse
    sounded: averaged into the warm-up, the tone inflated the floor's deviation by tens of dB and every later
    impulse was missed. The warm-up's median ignores it."""
    model = FusionModel(tau=TAU).to(device)
    slot = model.add_stream(*WEIGHTS)
    signal = pink_noise(8, -70)  # a microphone's floor, as the latency benchmark's server sends between impulses
    for start in (0.15, 2.0, 4.0, 6.0):
        signal[round(start * SR) : round((start + 0.1) * SR)] += tone(0.1, -10)
    out = run(model, [timestep(k, None, signal) for k in range(80)], slot)
    assert out["s_a"][:5].max() == 0.0  # warm-up
    for start in (2.0, 4.0, 6.0):
        k = round(start * 10)
        assert out["s_a"][k] > 0.99, f"the tone at {start} s"
    assert out["s_a"][8:19].max() < 0.05


@pytest.mark.parametrize("device", DEVICES)
def test_a_stream_joined_during_motion_still_sees_motion_later(device: str) -> None:
    """The same for video: a moment of motion as the stream starts (the square appears in the first measured
    timestep, leaves in the next: two of the five warm-up measurements) must not become the baseline."""
    model = FusionModel(tau=TAU).to(device)
    slot = model.add_stream(*WEIGHTS)
    video = static_video(60)
    video = [moving_square_frames(3, start=3 * k) if k == 1 or 30 <= k < 40 else v for k, v in enumerate(video)]
    out = run(model, [timestep(k, video[k], None) for k in range(60)], slot)
    assert out["s_v"][:11].max() == 0.0  # warm-up
    assert out["s_v"][11:30].max() < 0.05
    assert out["s_v"][31:40].min() > 0.6 and out["s_v"][31:40].max() > 0.9  # motion 2.5 s later is seen
    assert out["s_v"][45:].max() < 0.05


@pytest.mark.parametrize("device", DEVICES)
def test_silence_and_steady_noise_score_low_a_burst_30db_over_the_floor_high(device: str) -> None:
    model = FusionModel(tau=TAU).to(device)
    silent, pink = model.add_stream(*WEIGHTS), model.add_stream(*WEIGHTS)
    zeros = np.zeros(10 * SR, np.float32)
    out = run(model, [timestep(k, None, zeros) for k in range(100)], silent)
    assert out["s_a"].max() < 0.05
    floor = pink_noise(12, -45)
    burst = tone(1, -15)
    assert level_dbfs(burst) - level_dbfs(floor) == pytest.approx(30, abs=0.1)
    signal = floor.copy()
    signal[10 * SR : 11 * SR] += burst
    out = run(model, [timestep(k, None, signal) for k in range(120)], pink)
    assert out["s_a"][20:100].max() < 0.05  # steady pink noise, after 2 s of warm-up
    assert out["s_a"][101:110].min() > 0.9  # the burst, 10.0-11.0 s (its first timestep's context is noise)


@pytest.mark.parametrize("device", DEVICES)
def test_batch_of_streams_equals_each_stream_alone(device: str) -> None:
    n, steps = 5, 30
    streams = []
    for i in range(n):
        audio = pink_noise(3, -40 - 3 * i, seed=i)
        audio[SR * (1 + i % 2) : SR * (2 + i % 2)] += tone(1, -12, hz=500 + 100 * i)
        video = static_video(steps, seed=i)
        video = [moving_square_frames(3, seed=i, start=3 * k) if 10 <= k < 15 + i else v for k, v in enumerate(video)]
        streams.append([timestep(k, video[k], audio if i != 3 else None, stream=f"s{i}") for k in range(steps)])
        streams[-1][7 + i] = timestep(7 + i, None, audio, stream=f"s{i}")  # a video gap somewhere
    alone = []
    for i in range(n):
        model = FusionModel(tau=TAU).to(device)
        alone.append(run(model, streams[i], model.add_stream(alpha=0.2 * i, beta=1 - 0.2 * i)))
    batched = FusionModel(tau=TAU).to(device)
    slots = [batched.add_stream(alpha=0.2 * i, beta=1 - 0.2 * i) for i in range(n)]
    outs = [batched.score([streams[i][k] for i in range(n)], slots) for k in range(steps)]
    for name in outs[0]:
        together = np.stack([o[name] for o in outs], axis=1)  # (streams, time, ...)
        for i in range(n):
            assert np.allclose(together[i], alone[i][name], atol=1e-6, rtol=0), (name, i)
    # several timesteps of one stream in one call: the same as one at a time
    model = FusionModel(tau=TAU).to(device)
    grouped = model.score(streams[1][:12], [model.add_stream(alpha=0.2, beta=0.8)] * 12)
    for name in grouped:
        assert np.allclose(grouped[name], alone[1][name][:12], atol=1e-6, rtol=0), name
    # three streams, ragged numbers of timesteps each (each stream's in order), in one batch
    model = FusionModel(tau=TAU).to(device)
    slots = [model.add_stream(alpha=0.2 * i, beta=1 - 0.2 * i) for i in range(3)]
    order = [(2, k) for k in range(8)] + [(0, k) for k in range(3)] + [(1, k) for k in range(5)] + [(0, 3), (1, 5)]
    mixed = model.score([streams[i][k] for i, k in order], [slots[i] for i, _ in order])
    for name in mixed:
        for j, (i, k) in enumerate(order):
            assert np.allclose(mixed[name][j], alone[i][name][k], atol=1e-6, rtol=0), (name, i, k)


@pytest.mark.parametrize("device", DEVICES)
def test_batches_longer_than_the_baselines_equal_one_at_a_time(device: str) -> None:
    """A file's batches hold more of a stream's timesteps than its baseline windows: the rings wrap inside a
    batch, some timesteps have no video or no sound, and two streams interleave; scores and the state left
    behind equal scoring one timestep per call."""
    steps = 70
    signals = [pink_noise(7.5, -45, seed=3), pink_noise(7.5, -38, seed=4)]
    for i, signal in enumerate(signals):
        signal[SR * (2 + i) : SR * (3 + i)] += tone(1, -15, hz=700)
    videos = [static_video(steps, seed=3 + i) for i in range(2)]
    for i, video in enumerate(videos):
        for k in range(20 + 10 * i, 30 + 10 * i):
            video[k] = moving_square_frames(3, seed=i, start=3 * k)
    streams = [
        [timestep(k, None if k % 9 == 4 else videos[i][k], None if k % 11 == 6 else signals[i], stream=f"s{i}")
         for k in range(steps)]
        for i in range(2)
    ]  # fmt: skip

    def model_and_slots() -> tuple[FusionModel, list[int]]:
        model = FusionModel(tau=1.0).to(device)  # windows of 20 (video) and 8 (audio) timesteps
        return model, [model.add_stream(alpha=0.4, beta=0.6), model.add_stream(alpha=0.7, beta=0.3)]

    alone, slots = model_and_slots()
    expected = [run(alone, streams[i], slots[i]) for i in range(2)]
    batched, slots = model_and_slots()
    got: list[dict[str, list[np.ndarray]]] = [{name: [] for name in expected[0]} for _ in range(2)]
    for start in range(0, steps, 25):  # 25 timesteps of each stream per call, interleaved
        order = [(i, k) for k in range(start, min(steps, start + 25)) for i in (1, 0)]
        out = batched.score([streams[i][k] for i, k in order], [slots[i] for i, _ in order])
        for j, (i, _) in enumerate(order):
            for name in out:
                got[i][name].append(out[name][j])
    for i in range(2):
        for name in expected[i]:
            assert np.allclose(np.stack(got[i][name]), expected[i][name], atol=1e-6, rtol=0), (name, i)
    assert max(expected[0]["s_a"]) > 0.5 and max(expected[1]["s_v"]) > 0.5  # the streams had activity
    for key, value in alone.state_dict().items():
        assert torch.equal(value.isnan(), batched.state_dict()[key].isnan()), key
        assert torch.allclose(value.nan_to_num(), batched.state_dict()[key].nan_to_num(), atol=1e-5), key


def test_slots_are_reused_and_grow() -> None:
    model = FusionModel(tau=TAU, capacity=2)
    slots = [model.add_stream(*WEIGHTS) for _ in range(5)]  # grows past its capacity
    assert sorted(slots) == list(range(5)) and model.video.capacity >= 5
    loud = np.concatenate([np.zeros(SR, np.float32), tone(1, -10)])
    for k in range(15):
        model.score([timestep(k, None, loud)], [slots[0]])
    model.release(slots[0])
    again = model.add_stream(*WEIGHTS)
    assert again == slots[0]
    first = model.score([timestep(0, None, loud)], [again])
    assert first["s_a"][0] == 0.0, "a reused slot starts with fresh state"
    with pytest.raises(ValueError):
        model.release(99)


class TinyCNN(torch.nn.Module):
    """A user's video encoder: a small CNN over the last frame."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(1, 4, 5, stride=4)
        self.head = torch.nn.Linear(4, 1)

    def forward(self, frames: torch.Tensor, valid: torch.Tensor, slots: torch.Tensor) -> torch.Tensor:
        x = self.conv(frames[:, -1:] / 255.0).relu().mean(dim=(2, 3))
        return torch.sigmoid(self.head(x)).squeeze(1)


def test_a_users_encoder_from_a_local_checkpoint(tmp_path: Path) -> None:
    torch.manual_seed(0)
    trained = TinyCNN()
    path = tmp_path / "cnn.pt"
    torch.save(trained.state_dict(), path)
    encoder = load_module("tests.test_models:TinyCNN", path)
    assert all(
        torch.equal(a, b) for a, b in zip(encoder.state_dict().values(), trained.state_dict().values(), strict=True)
    )
    model = FusionModel(tau=TAU, video=encoder)
    slot = model.add_stream(alpha=1.0, beta=0.0)
    frames = static_video(1)[0]
    out = model.score([timestep(0, frames, None)], [slot])
    with torch.no_grad():
        expected = trained(torch.tensor(np.stack(frames)[None]).float(), torch.ones(1, 3, dtype=torch.bool), None)
    assert out["s"][0] == pytest.approx(float(expected[0]), abs=1e-6)
    with pytest.raises(ValueError, match=r"package\.module:Class"):
        load_module("not-a-target")
    with pytest.raises(ValueError, match="does not exist"):
        load_module("tests.test_models:TinyCNN", tmp_path / "missing.pt")


def test_shapes_are_checked() -> None:
    model = FusionModel(tau=TAU)
    slot = model.add_stream(*WEIGHTS)
    wrong = timestep(0, [np.zeros((H // 2, W // 2), np.uint8)], None)
    with pytest.raises(ValueError, match="is not"):
        model.score([wrong], [slot])
    assert model.hop_samples == N_HOP


async def test_the_synthetic_sources_bursts_end_to_end() -> None:
    model = FusionModel(tau=TAU)
    slot = model.add_stream(*WEIGHTS)
    scores = []
    async for ts in Stream(parse_source("synthetic:?events=av@4,a@6,v@8&duration=10&realtime=0")):
        scores.append(model.score([ts], [slot]))
    s_v = np.array([o["s_v"][0] for o in scores])
    s_a = np.array([o["s_a"][0] for o in scores])
    quiet = [k for k in range(10, 100) if not (39 <= k <= 51 or 59 <= k <= 71 or 79 <= k <= 91)]
    assert s_v[quiet].max() < 0.05 and s_a[quiet].max() < 0.05
    assert s_v[40:50].min() > 0.9 and s_v[80:90].min() > 0.9 and s_v[60:70].max() < 0.05
    assert s_a[40:50].min() > 0.9 and s_a[60:70].min() > 0.9 and s_a[81:90].max() < 0.05


def test_deterministic_on_cpu() -> None:
    audio = np.concatenate([pink_noise(2, -40), tone(1, -10)])
    video = static_video(15) + [moving_square_frames(3, start=3 * k) for k in range(15)]
    steps = [timestep(k, video[k], audio) for k in range(30)]
    runs = []
    for _ in range(2):
        model = FusionModel(tau=TAU)
        runs.append(run(model, steps, model.add_stream(*WEIGHTS)))
    for name in runs[0]:
        assert np.array_equal(runs[0][name], runs[1][name]), name


def test_audio_that_starts_mid_timestep_does_not_leave_the_floor_too_low() -> None:
    """A live stream's first audio timestep is partly digital silence; the warm-up must not learn that."""
    model = FusionModel(tau=TAU)
    slot = model.add_stream(*WEIGHTS)
    signal = pink_noise(6, -50)
    signal[: SR // 10 + SR // 100] = 0.0  # nothing in the first timestep, 10 ms of silence in the second
    out = run(model, [timestep(k, None, signal) for k in range(60)], slot)
    assert out["s_a"].max() < 0.05


@pytest.mark.parametrize("device", DEVICES)
def test_a_reset_timestep_scores_like_a_fresh_stream(device: str) -> None:
    """After a reconnect (``Timestep.reset``) the stream starts afresh: its first frame is not differenced against
    the last one before the outage (another scene), and its baselines re-warm. One call per timestep, or all in
    one batch with the pre-outage timesteps of the same stream, gives the same scores as a new stream."""
    from dataclasses import replace

    before_audio = pink_noise(5, -50, seed=1)
    after_audio = pink_noise(3, -30, seed=2)  # louder after the outage: the old floor would hear it all
    before = [timestep(k, static_video(40, seed=1)[k], before_audio) for k in range(40)]  # the bed is known
    after_video = static_video(10, seed=2)  # another picture: differencing across the outage would see it all
    after = [timestep(k, after_video[k], after_audio) for k in range(10)]
    fresh_model = FusionModel(tau=TAU).to(device)
    fresh = run(fresh_model, after, fresh_model.add_stream(*WEIGHTS))
    resumed = [replace(after[0], reset=True), *after[1:]]
    model = FusionModel(tau=TAU).to(device)
    slot = model.add_stream(*WEIGHTS)
    run(model, before, slot)
    one_by_one = run(model, resumed, slot)
    batched_model = FusionModel(tau=TAU).to(device)
    batched_slot = batched_model.add_stream(*WEIGHTS)
    batched = batched_model.score([*before, *resumed], [batched_slot] * 50)
    for name in fresh:
        assert np.allclose(one_by_one[name], fresh[name], atol=1e-6, rtol=0), name
        assert np.allclose(batched[name][40:], fresh[name], atol=1e-6, rtol=0), name
    # without the reset, the change of scene and level across the outage scores as activity
    plain = FusionModel(tau=TAU).to(device)
    plain_slot = plain.add_stream(*WEIGHTS)
    run(plain, before, plain_slot)
    stale = run(plain, after, plain_slot)
    assert max(stale["s_v"][0], stale["s_a"][0]) > 0.9
    assert max(fresh["s_v"].max(), fresh["s_a"].max()) < 0.5


def damaged_checkpoint(path: Path, without: str) -> Path:
    """A model saved by ``streamer train`` with one of its keys taken out."""
    from models.heads import Checkpoint, make_head, save_checkpoint

    save_checkpoint(path, Checkpoint(make_head("mid"), 0.4, {"hop_ms": 100.0}))
    data = torch.load(path, weights_only=True)
    del data[without]
    torch.save(data, path)
    return path


@pytest.mark.parametrize("key", ["version", "kind", "arguments", "inputs", "state_dict", "threshold", "extraction",
                                 "metrics"])  # fmt: skip
def test_a_checkpoint_missing_a_key_is_refused_naming_it(tmp_path: Path, key: str) -> None:
    from models.heads import load_checkpoint

    path = damaged_checkpoint(tmp_path / "head.pt", key)
    with pytest.raises(ValueError, match=rf"^model '{path}': .*'{key}'") as info:
        load_checkpoint(path)
    assert "\n" not in str(info.value)


def test_run_with_a_checkpoint_missing_a_key_exits_2_with_one_line(tmp_path: Path) -> None:
    import subprocess
    import sys

    path = damaged_checkpoint(tmp_path / "head.pt", "threshold")
    args = ["run", "--model", str(path), "synthetic:?duration=1", "--mqtt", "none", "-q"]
    done = subprocess.run([sys.executable, "-m", "pipelines.cli.main", *args], capture_output=True, text=True,
                          timeout=120)  # fmt: skip
    assert done.returncode == 2, done.stderr
    (line,) = done.stderr.strip().splitlines()
    assert str(path) in line and "'threshold'" in line, line


def test_a_cells_usual_is_read_every_refresh_and_kept_between() -> None:
    """The cells' usual (their 0.9 quantile over 20 s, the model's largest cost) is read again every ``refresh``
    seconds of measurements once its window is full (every timestep before): between readings each timestep is
    scored against the last one."""
    from models.video import VideoActivity

    video = VideoActivity(hop=0.1, refresh=0.5, warmup=0.1, window=0.3)  # a full window: 3 measurements
    rng = np.random.default_rng(0)
    read_at: list[int] = []
    reading = video._read_usual
    video._read_usual = lambda window: (read_at.extend([k] * window.shape[0]), reading(window))[1]  # type: ignore[method-assign]
    kept = video.usual[0].clone()
    for k in range(12):
        frames = torch.from_numpy(rng.uniform(0, 255, (1, 3, 90, 160)).astype(np.float32))
        video(frames, torch.ones(1, 3, dtype=torch.bool), torch.tensor([0]))
        if k in (4, 5):  # between readings the state keeps the last one
            assert torch.equal(video.usual[0], kept)
        kept = video.usual[0].clone()
    # measured from the second frame on (k = 1: 0 measurements before it): read with 0, 1 and 2 measurements
    # (a young window), then every 5: with 5 and 10
    assert read_at == [0, 1, 2, 3, 6, 11], read_at
    with pytest.raises(ValueError, match="refresh"):
        VideoActivity(refresh=-1)


@pytest.mark.parametrize("grid", [(16, 9), (7, 5)])  # cells of equal size (a reshaped sum) and not (a sum by index)
def test_video_scores_the_same_from_uint8_luma_as_from_float(grid: tuple[int, int]) -> None:
    """The model hands the video encoder its uint8 luma as it is (pooled sums in int16): every score and feature
    is exactly what the same frames as float give, masks, streams that join late and a batch of one stream's
    timesteps (rounds) included."""
    from models.slots import Rounds
    from models.video import VideoActivity

    as_bytes, as_float = (VideoActivity(hop=0.1, warmup=0.2, window=1.0, grid=grid, capacity=4) for _ in range(2))
    ignore = torch.zeros(90, 160, dtype=torch.bool)
    ignore[:40, :60] = True
    for video in (as_bytes, as_float):
        video.set_mask(2, ignore)
    rng = np.random.default_rng(3)
    scene = rng.integers(30, 220, (4, 90, 160))
    highest = 0.0
    for k in range(30):
        frames = np.clip(scene[:, None] + rng.normal(0, 3, (4, 3, 90, 160)), 0, 255).astype(np.uint8)
        frames[:, :, (k * 7) % 60 : (k * 7) % 60 + 25, 40:70] = 250  # something moving
        valid = torch.ones(4, 3, dtype=torch.bool)
        valid[1, 2] = k % 3 != 0  # a short timestep now and then
        if k % 10 == 9:  # a file's batch: two timesteps each of slots 0 and 1
            slots, order = torch.tensor([0, 1, 0, 1]), torch.tensor([0, 0, 1, 1])
            rounds = Rounds(slots, order, 2)
        else:
            rounds = Rounds.distinct(torch.tensor([0, 1, 2, 3]) if k > 3 else torch.tensor([0, 1, 2, 3])[:3])
        rows = rounds.slots.shape[0]
        u8 = torch.from_numpy(frames[:rows])
        score_b, feats_b = as_bytes.forward_rounds(u8, valid[:rows], rounds)
        score_f, feats_f = as_float.forward_rounds(u8.float(), valid[:rows], rounds)
        assert torch.equal(score_b, score_f), k
        highest = max(highest, float(score_f.max()))
        for name in feats_f:
            assert torch.equal(feats_b[name], feats_f[name]), (k, name)
    assert torch.equal(as_bytes.prev, as_float.prev) and torch.equal(as_bytes.usual, as_float.usual)
    assert highest > 0.5  # the moving box was seen


def test_a_young_window_read_over_its_filled_part_gives_the_whole_windows_scores(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A young window (a stream's first 20 s, and after a reconnect) is read every timestep, over the part of the
    ring filled so far: the same scores bit for bit as over the whole window, streams of every age in one batch
    (joined at different times, one reset midway)."""
    from dataclasses import replace

    from models.video import VideoActivity

    def scores() -> np.ndarray:
        model = FusionModel(tau=TAU)
        slots = [model.add_stream(*WEIGHTS) for _ in range(4)]
        rng = np.random.default_rng(0)
        bases = [scene(i) for i in range(4)]
        square = moving_square_frames(3 * 260, seed=1)
        out = []
        for k in range(260):  # past the 200 measurements of a full window
            batch, chosen = [], []
            for i in range(4):
                if k < 30 * i:
                    continue
                frames = square[3 * k : 3 * k + 3] if (k + i) % 31 < 5 else [noisy(bases[i], rng) for _ in range(3)]
                ts = timestep(k, frames, None, stream=f"s{i}")
                batch.append(replace(ts, reset=True) if (i, k) == (1, 150) else ts)
                chosen.append(slots[i])
            result = model.score(batch, chosen)
            out.append(np.concatenate([result["s_v"], result["video_unusual"].ravel()]))
        return np.concatenate(out)

    filled = scores()
    monkeypatch.setattr(VideoActivity, "_filled", lambda self, counts: self.recent.shape[1])
    whole = scores()
    assert np.abs(filled).sum() > 1.0  # the square was seen
    np.testing.assert_array_equal(filled, whole)
