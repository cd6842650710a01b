"""What real cameras and microphones showed (issue 13), as model-level cases with known inputs.

Each case failed on the first version: one modality alone could not cross the default threshold, an A+V onset
split over two timesteps scored 0.5 in each, leading silence or a fade-in broke the audio baseline, a steady busy
scene fired without end, a digitally silent track read as "quiet" rather than absent.
"""

from __future__ import annotations

import numpy as np
import pytest

from models.fusion import FusionModel
from pipelines.config import EventOptions
from pipelines.stages.events import Scores, clear_steps, event_intervals
from streamer.media import Timestep

from .model_inputs import SR, TAU, WEIGHTS, moving_square_frames, noisy, pink_noise, scene, timestep, tone

DEFAULTS = EventOptions()


def run(model: FusionModel, steps: list[Timestep], slot: int) -> dict[str, np.ndarray]:
    outs = [model.score([ts], [slot]) for ts in steps]
    return {name: np.concatenate([o[name] for o in outs]) for name in outs[0]}


def events(out: dict[str, np.ndarray], options: EventOptions = DEFAULTS) -> list[tuple[float, float]]:
    t = np.arange(len(out["s"])) * 0.1
    clear = clear_steps(out["s_v"], out["s_a"], out["has_v"], out["has_a"], options)
    return event_intervals(t, out["s"], 0.1, options, clear)


def still(n: int, seed: int = 0) -> list[list[np.ndarray]]:
    rng = np.random.default_rng(seed)
    base = scene(seed)
    return [[noisy(base, rng) for _ in range(3)] for _ in range(n)]


def test_a_sound_alone_and_a_movement_alone_each_make_an_event_with_the_defaults() -> None:
    model = FusionModel(tau=TAU)
    heard, seen = model.add_stream(*WEIGHTS), model.add_stream(*WEIGHTS)
    audio = pink_noise(6, -50)
    audio[4 * SR : 5 * SR] += tone(1, -20)
    video = still(60)
    out = run(model, [timestep(k, video[k], audio) for k in range(60)], heard)
    assert [round(a, 1) for a, _ in events(out)] == [4.0], events(out)
    video = still(40) + [moving_square_frames(3, start=3 * k) for k in range(10)] + still(10, seed=1)
    out = run(model, [timestep(k, video[k], pink_noise(6, -50)) for k in range(60)], seen)
    assert [round(a, 1) for a, _ in events(out)] == [4.0], events(out)


def test_an_av_onset_split_over_two_timesteps_scores_as_co_occurring() -> None:
    """The movement starts in timestep 40 (frame differencing sees only the onset), the sound 5 ms before the
    end of it: S_a is high from 41 on, S_v in 40 only (the box then stays). At alpha = beta = 0.5, threshold
    0.6, the pair must still make one event, starting at most one hop after the first evidence."""
    model = FusionModel(tau=TAU)
    slot = model.add_stream(*WEIGHTS)
    audio = pink_noise(6, -50)
    onset = round(4.095 * SR)
    audio[onset : onset + SR // 2] += tone(0.5, -15)
    box = moving_square_frames(3, start=0)[2]
    video = still(40) + [[still(1)[0][0], still(1)[0][1], box]] + [[box, box, box] for _ in range(19)]
    out = run(model, [timestep(k, video[k], audio) for k in range(60)], slot)
    found = events(out, EventOptions(threshold=0.6))
    assert found and 4.0 <= found[0][0] <= 4.1 + 1e-9, (found, out["s_v"][38:44], out["s_a"][38:44])


@pytest.mark.parametrize("hazard", ["lead_silence", "fade_in", "dropout"])
def test_start_up_and_dropout_hazards_leave_the_audio_baseline_intact(hazard: str) -> None:
    """Digital silence at the start, a 1 s fade-in, a 3 s dropout: no event from the hazard itself, and a knock
    14 dB over the background 3 s later is heard as in the clean stream."""
    audio = pink_noise(12, -50)
    if hazard == "lead_silence":
        audio[: SR // 2 * 3] = 0.0
    elif hazard == "fade_in":
        audio[:SR] *= np.sin(np.linspace(0, np.pi / 2, SR)) ** 2
    else:
        audio[4 * SR : 7 * SR] = 0.0
    knock = 10 * SR
    audio[knock : knock + SR // 5] += tone(0.2, -36)
    model = FusionModel(tau=TAU)
    slot = model.add_stream(*WEIGHTS)
    out = run(model, [timestep(k, None, audio) for k in range(120)], slot)
    found = events(out)
    assert [round(a, 1) for a, _ in found] == [10.0], (hazard, found)
    if hazard == "dropout":
        assert not out["has_a"][45:65].any()  # silence is no audio: absent, published as null


def test_a_digitally_silent_track_is_an_absent_modality_and_motion_alone_still_fires() -> None:
    model = FusionModel(tau=TAU)
    slot = model.add_stream(*WEIGHTS)
    silent = np.zeros(6 * SR, np.float32)
    video = still(40) + [moving_square_frames(3, start=3 * k) for k in range(10)] + still(10, seed=1)
    out = run(model, [timestep(k, video[k], silent) for k in range(60)], slot)
    assert not out["has_a"].any()
    assert [round(a, 1) for a, _ in events(out)] == [4.0]
    shown = Scores(t=0.0, hop=0.1, score=0.0, s_v=0.0, s_a=0.0, has_v=True, has_a=False).as_dict()
    assert shown["s_a"] is None and shown["s_v"] == 0.0


def test_a_level_step_in_the_background_is_the_background_within_seconds() -> None:
    """A fan switched on (+15 dB, steady): at most a few seconds of event, then quiet; a sound over the new
    level is heard."""
    audio = pink_noise(30, -50)
    audio[5 * SR :] += pink_noise(25, -35, seed=3)
    audio[25 * SR : 25 * SR + SR // 2] += tone(0.5, -20)
    model = FusionModel(tau=TAU)
    slot = model.add_stream(*WEIGHTS)
    out = run(model, [timestep(k, None, audio) for k in range(300)], slot)
    found = events(out)
    assert found[-1][0] == pytest.approx(25.0, abs=0.11), found
    assert all(b - a <= 5.0 and a < 10.0 for a, b in found[:-1]), found


def test_a_steady_busy_scene_settles_and_a_new_object_still_fires() -> None:
    """Many small movers all the time in the upper part (traffic, leaves): a few seconds to learn them, then
    nothing unusual until a large object enters the quiet lower part."""
    rng = np.random.default_rng(5)
    base = scene(2)

    def busy(k: int, big: bool) -> list[np.ndarray]:
        frames = []
        for i in range(3):
            image = noisy(base, rng).copy()
            for j in range(4):  # four small movers, about 1% of the picture each
                x = (7 * j * 10 + 3 * (3 * k + i)) % 150
                image[10 + 12 * j : 18 + 12 * j, x : x + 10] = 250.0
            if big:  # 7% of the picture, below where the movers go
                image[76:90, 40:110] = 0.0
            frames.append(image)
        return frames

    model = FusionModel(tau=TAU)
    slot = model.add_stream(*WEIGHTS)
    steps = [timestep(k, busy(k, 250 <= k < 270), None) for k in range(300)]
    out = run(model, steps, slot)
    found = events(out)
    # nothing from 5 s on but the object's arrival (and its departure 2 s later: frame differencing)
    assert [round(a, 1) for a, _ in found if a >= 5.0] == [25.0, 27.0], found


def test_a_light_switched_on_in_part_of_the_room_is_no_event() -> None:
    """A lamp lights 40% of the picture (+60 luma, at once): frame differencing sees 40% of the pixels change,
    which no one walking in does within one frame."""
    model = FusionModel(tau=TAU)
    slot = model.add_stream(*WEIGHTS)
    rng = np.random.default_rng(3)
    base = scene(4)
    lit = base.copy()
    lit[:, : int(0.4 * base.shape[1])] += 60.0
    video = [[noisy(base if k < 40 else lit, rng) for _ in range(3)] for k in range(60)]
    out = run(model, [timestep(k, video[k], pink_noise(6, -50)) for k in range(60)], slot)
    assert events(out) == [], (events(out), out["s_v"][38:44])


def test_a_slow_mover_is_seen() -> None:
    """A square of 10% of the picture creeping at 1 pixel a frame (a person far away, a car parking): each
    frame pair changes a thin edge only (under the noise bar); over the hop (3 frames) it shows."""
    model = FusionModel(tau=TAU)
    slot = model.add_stream(*WEIGHTS)
    rng = np.random.default_rng(4)
    base = scene(0)
    frames = []
    for i in range(240):
        image = base.copy()
        if i >= 120:
            x = 10 + (i - 120)  # 1 px per frame at 160 px width
            image[25:65, x : x + 36] = 200.0
        frames.append(noisy(image, rng))
    video = [frames[3 * k : 3 * k + 3] for k in range(80)]
    out = run(model, [timestep(k, video[k], pink_noise(8, -50)) for k in range(80)], slot)
    assert out["video_changed"][45:].max() < 0.02  # what frame differencing alone sees: under the noise bar
    assert [round(a, 1) for a, _ in events(out)][:1] == [4.0], (events(out), out["s_v"][38:60])


def test_codec_noise_far_below_hearing_in_the_empty_bands_of_a_tone_is_no_sound() -> None:
    """A steady -46 dBFS tone (a test signal, a hum) whose empty bands a codec fills with noise at -100 dBFS now and
    then (seen from Opus in the latency bench: empty bands read -99 dB, then -90 for seconds): no event. The same
    noise at -60 dBFS, which a quiet room would let one hear, is a sound."""

    def signal(noise_dbfs: float) -> np.ndarray:
        audio = np.round(tone(12, -46) * 32767) / 32767  # 16-bit, like a decoded stream
        rng = np.random.default_rng(1)
        on = (np.arange(len(audio)) // (SR * 3 // 2)) % 2 == 1  # 1.5 s on, 1.5 s off
        on[: 4 * SR] = False
        audio += on * rng.normal(0, 10 ** (noise_dbfs / 20), len(audio))
        return audio.astype(np.float32)

    model = FusionModel(tau=TAU)
    slot = model.add_stream(*WEIGHTS)
    out = run(model, [timestep(k, None, signal(-100)) for k in range(120)], slot)
    assert events(out) == [], (events(out), out["s_a"].max())
    model = FusionModel(tau=TAU)
    slot = model.add_stream(*WEIGHTS)
    out = run(model, [timestep(k, None, signal(-60)) for k in range(120)], slot)
    assert [round(a, 1) for a, _ in events(out)][:1] == [4.5], events(out)
