"""``streamer calibrate``, ``train`` and ``evaluate`` on generated labeled recordings (tests/labeled_data.py), and
``streamer run --model`` with what ``train`` saved, as users run them: subprocesses, a real mosquitto.

The clips hold bursts of sound and motion together, sound alone and motion alone over steady distractors (a loud
fan, a noisy sensor). Labeled "a" (every burst with sound), the default S = 0.5 S_v + 0.5 S_a at 0.5 cannot tell
them apart (one modality alone gives S = 0.5 S_x, on the threshold); calibration must find the weighting and
threshold that find every sound and nothing else.
"""

from __future__ import annotations

import asyncio
import functools
import json
import tomllib
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from models.heads import HEADS, load_checkpoint, save_checkpoint
from pipelines.config import EventOptions, ModelConfig
from pipelines.learn.calibrate import calibrate
from pipelines.learn.evaluate import head_scores
from pipelines.learn.extract import RecordingScores, extract
from pipelines.learn.labels import Dataset, LabeledEvent, Recording, load_dataset
from pipelines.learn.metrics import EventCounts
from pipelines.learn.options import TrainOptions
from pipelines.learn.train import train

from . import analyzer_run
from .analyzer_run import intervals, read_events, run_streamer, subscribe
from .labeled_data import bursts, make_clips, write_labels

CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="no GPU")
DEVICES = ["cpu", pytest.param("cuda", marks=CUDA)]
UNPICKLING = "UnpicklingError"  # what torch.load raises on a file that is not a checkpoint


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("labeled")
    make_clips(folder)
    write_labels(folder, "a")
    return folder


@pytest.fixture(scope="module")
def features(data: Path) -> list[RecordingScores]:
    recs, failed = asyncio.run(extract(load_dataset(data), ModelConfig(device="cpu"), {}))
    assert not failed and len(recs) == 6
    return recs


def relabeled(recs: list[RecordingScores], kinds: str) -> list[RecordingScores]:
    """The same features with other labels: the bursts whose kind holds every letter of ``kinds``."""
    out = []
    for rec in recs:
        name = rec.recording.stream_id
        events = tuple(LabeledEvent(a, b, k) for k, a, b in bursts(name) if set(kinds) <= set(k))
        out.append(RecordingScores(Recording(rec.recording.path, name, events), rec.hop, rec.t, rec.values))
    return out


streamer = functools.partial(analyzer_run.streamer, within=180)  # calibrate and train take a while on a CPU


async def test_calibrate_reaches_event_f1_095_and_its_snippet_runs(data: Path, tmp_path: Path) -> None:
    report = tmp_path / "calibration.json"
    code, out, err = await streamer("calibrate", str(data), "--device", "cpu", "--json", str(report))
    assert code == 0, err
    result = json.loads(report.read_text())
    assert result["calibrated"]["events"]["f1"] >= 0.95
    # the default 0.5 sits where one modality alone gives S = 0.5 * S_x: on the edge, it cannot tell these apart
    assert result["current"]["events"]["f1"] < 0.95
    assert result["roc_auc"]["s"] >= 0.95 and result["beta"] > result["alpha"]
    tuned = tomllib.loads(out)  # stdout is the snippet, valid TOML
    assert set(tuned["defaults"]) == {"alpha", "beta", "threshold"}
    assert tuned["defaults"]["threshold"] == result["threshold"]

    (tmp_path / "tuned.toml").write_text(out)
    events_out = tmp_path / "events.jsonl"
    code, _, err = await run_streamer("--config", str(tmp_path / "tuned.toml"), str(data / "fan.mkv"), "--mqtt",
                                      "none", "--events-out", str(events_out), "-q")  # fmt: skip
    assert code == 0, err
    labeled = [(a, b) for k, a, b in bursts("fan") if "a" in k]
    counts = EventCounts.of(intervals(read_events(events_out)), labeled)
    assert counts.f1 == 1.0, (intervals(read_events(events_out)), labeled)


@pytest.mark.parametrize("kinds", ["av", "a", "v"])
def test_calibration_follows_what_the_labels_mean(features: list[RecordingScores], kinds: str) -> None:
    cal = calibrate(relabeled(features, kinds), EventOptions())
    assert cal.choice.counts.f1 >= 0.95
    if kinds == "a":
        assert cal.beta > cal.alpha
    elif kinds == "v":
        assert cal.alpha > cal.beta
    else:  # seen and heard: both weights, a threshold one modality alone cannot reach
        assert 0.2 <= cal.alpha <= 0.8 and cal.threshold > max(cal.alpha, cal.beta)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("kind", list(HEADS))
def test_every_fusion_head_learns_the_labels_and_survives_a_checkpoint(
    features: list[RecordingScores], kind: str, device: str, tmp_path: Path
) -> None:
    result = train(features, TrainOptions(fusion=kind, device=device), EventOptions(), extraction={"hop_ms": 100.0})
    assert result.checkpoint.metrics["validation"]["events"]["f1"] >= 0.95
    assert set(result.train).isdisjoint(result.validation) and len(result.train) + len(result.validation) == 6
    save_checkpoint(tmp_path / "head.pt", result.checkpoint)
    loaded = load_checkpoint(tmp_path / "head.pt")
    assert loaded.head.kind == kind and loaded.threshold == result.checkpoint.threshold
    before, after = head_scores(result.checkpoint.head, features, device), head_scores(loaded.head, features, device)
    assert all(np.array_equal(a, b) for a, b in zip(before, after, strict=True))
    # every head computes S in [0, 1] whatever a timestep holds, absent modalities included
    x = torch.rand(64, len(loaded.head.inputs)) * 5
    x[:, :2] = torch.randint(0, 2, (64, 2)).float()  # has_v, has_a
    x[:, [2, 5]] = torch.rand(64, 2)  # S_v and S_a are in [0, 1]
    s = loaded.head(x)
    assert s.shape == (64,) and bool(((s >= 0) & (s <= 1)).all())


async def test_a_model_saved_by_train_gives_identical_scores_in_run(
    data: Path, tmp_path: Path, mqtt_broker: Any
) -> None:
    model = tmp_path / "mid.pt"
    code, out, err = await streamer("train", str(data), "--fusion", "mid", "--out", str(model), "--device", "cpu")
    assert code == 0, err
    assert f"saved {model}" in out
    clip = data / "grainy.mkv"
    recs, _ = await extract(Dataset(data, (Recording(clip, "grainy", ()),)), ModelConfig(device="cpu"), {})
    (expected,) = head_scores(load_checkpoint(model).head, recs, "cpu")

    broker = mqtt_broker()
    async with subscribe(broker.host, broker.port) as sub:
        events_out = tmp_path / "events.jsonl"
        code, _, err = await run_streamer(f"grainy={clip}", "--model", str(model), "--mqtt", broker.url, "--prefix",
                                          "test", "--scores", "--events-out", str(events_out), "-q")  # fmt: skip
        assert code == 0, err
        async with asyncio.timeout(20):
            while len(sub.on("test/grainy/scores")) < len(expected):
                sub.arrived.clear()
                await sub.arrived.wait()
    scores = [m.json() for m in sub.on("test/grainy/scores")]
    assert [s["t"] for s in scores] == pytest.approx(recs[0].t.tolist())
    assert np.abs(np.array([s["score"] for s in scores]) - expected).max() <= 1e-4  # the payload has 4 decimals
    events = read_events(events_out)
    assert events and all(e["alpha"] is None and e["beta"] is None and "contributions" not in e for e in events)
    assert EventCounts.of(intervals(events), [(a, b) for k, a, b in bursts("grainy") if "a" in k]).f1 == 1.0

    code, _, err = await run_streamer(str(clip), "--model", str(model), "--alpha", "0.3", "--mqtt", "none")
    assert code == 2 and "alpha and beta do not apply" in err and len(err.strip().splitlines()) == 1


async def test_a_weighted_model_runs_as_its_alpha_beta_and_threshold(data: Path, tmp_path: Path) -> None:
    model = tmp_path / "weighted.pt"
    code, _, err = await streamer("train", str(data), "--out", str(model), "--device", "cpu", "--json",
                                  str(tmp_path / "train.json"))  # fmt: skip
    assert code == 0, err
    trained = json.loads((tmp_path / "train.json").read_text())
    assert trained["fusion"] == "weighted" and trained["beta"] > trained["alpha"]
    # on this set every threshold finds every event: the plateau reaches the searched range's end, and says so
    assert trained["warnings"] == said(err, "train") and len(trained["warnings"]) == 1
    assert "of the searched range 0.02-0.99" in trained["warnings"][0]
    events_out = tmp_path / "events.jsonl"
    code, _, err = await run_streamer(str(data / "porch.mkv"), "--model", str(model), "--mqtt", "none",
                                      "--events-out", str(events_out), "-q")  # fmt: skip
    assert code == 0, err
    events = read_events(events_out)
    assert events[0]["alpha"] == pytest.approx(trained["alpha"]) and events[0]["beta"] == pytest.approx(trained["beta"])
    assert len(intervals(events)) == 2  # porch: av@3 and a@8; the motion alone at 13 s is not an event


def said(err: str, command: str) -> list[str]:
    """The warnings a learning command logged on stderr."""
    prefix = f"streamer: {command}: "
    return [line.removeprefix(prefix) for line in err.splitlines() if line.startswith(prefix)]


async def test_calibrate_json_holds_the_warnings_and_the_ranges_it_chose_from(data: Path, tmp_path: Path) -> None:
    """The warnings of a choice at a search bound reach --json as they reach stdout (``# warning:``) and stderr."""
    labels, report = tmp_path / "labels.csv", tmp_path / "calibration.json"
    labels.write_text(f"file,start,end\n{data / 'porch.mkv'},8,9\n{data / 'loud_room.mkv'},,\n")
    code, out, err = await streamer("calibrate", str(labels), "--device", "cpu", "--json", str(report))
    assert code == 0, err
    result = json.loads(report.read_text())
    # one labeled event: one standard error of its F1 is wide, the plateau reaches the lowest threshold searched
    commented = [line.removeprefix("# warning: ") for line in out.splitlines() if line.startswith("# warning: ")]
    assert result["warnings"] == commented == said(err, "calibrate") and len(commented) == 1
    assert "of the searched range 0.02-0.99" in commented[0]
    (low, high), (a_low, a_high) = result["threshold_range"], result["alpha_range"]
    assert low <= result["threshold"] <= high and a_low <= result["alpha"] <= a_high
    assert f"alpha {result['alpha']:g} is the nearest to balanced inside {a_low:g}-{a_high:g}" in out


async def test_evaluate_prints_writes_json_and_plots(data: Path, tmp_path: Path) -> None:
    report, plot = tmp_path / "evaluation.json", tmp_path / "pr.png"
    code, out, err = await streamer("evaluate", str(data), "--threshold", "0.75", "--device", "cpu", "--json",
                                    str(report), "--plot", str(plot))  # fmt: skip
    assert code == 0, err
    result = json.loads(report.read_text())
    # seen and heard (S >= 0.75): the 6 bursts with sound and motion, none of the 4 sounds alone, no false alarm
    assert result["events"] | {"mean_iou": None} == {
        "precision": 1.0, "recall": 0.6, "f1": 0.75, "matched": 6, "detected": 6, "labeled": 10, "mean_iou": None,
    }  # fmt: skip
    assert result["labels"] == {"a": {"found": 0, "labeled": 4}, "av": {"found": 6, "labeled": 6}}
    assert set(result["recordings"]) == {"porch", "fan", "grainy", "long", "loud_room", "twice"}
    assert "all " in out and "found per label: a 0/4, av 6/6" in out
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    code, out, err = await streamer("evaluate", str(data), "--alpha", "0", "--beta", "1", "--device", "cpu", "--json",
                                    str(report))  # fmt: skip
    assert code == 0, err
    assert json.loads(report.read_text())["events"]["f1"] == 1.0  # listening only finds every sound
    # only the sounds without motion count now: the 6 others are false alarms, P = 4/10, R = 1, F1 = 2*0.4/1.4
    code, out, err = await streamer("evaluate", str(data), "--alpha", "0", "--beta", "1", "--label", "a",
                                    "--device", "cpu", "--json", str(report))  # fmt: skip
    assert code == 0, err
    events = json.loads(report.read_text())["events"]
    assert (events["matched"], events["detected"], events["labeled"]) == (4, 10, 4)
    assert events["f1"] == pytest.approx(0.8 / 1.4, abs=1e-4)


async def test_a_broken_recording_is_one_line_and_the_others_are_used(data: Path, tmp_path: Path) -> None:
    labels = tmp_path / "labels.csv"
    labels.write_text(f"file,start,end\n{data / 'porch.mkv'},8,9\nmissing.mkv,1,2\n{data / 'fan.mkv'},12,13\n")
    code, out, err = await streamer("evaluate", str(labels), "--alpha", "0", "--beta", "1", "--device", "cpu")
    assert code == 3
    errors = [line for line in err.splitlines() if "error" in line]
    assert len(errors) == 1 and "stream 'missing'" in errors[0] and "Traceback" not in err
    assert "porch" in out and "fan" in out and "1 of 3 recording(s) failed" in err

    labels.write_text("file,start,end\nporch.mkv,9,8\n")
    code, _, err = await streamer("calibrate", str(labels))
    assert code == 2 and err.strip() == f"streamer: error: {labels}:2: end (8) must be after start (9)"

    code, _, err = await run_streamer(str(data / "porch.mkv"), "--model", str(labels), "--mqtt", "none")
    assert code == 2 and err.strip() == f"streamer: error: model {str(labels)!r}: not a streamer model ({UNPICKLING})"
