"""A user's ONNX models in the tags (``models.onnx_models``, ``pipelines.stages.tagging``), end to end: tiny
models built here with ``torch.onnx.export``, shaped like the real exports (a waveform tagger with an AudioSet-style
CSV of labels, a YOLOv8-layout detector), run by ``streamer run`` on a real clip with a real mosquitto; and the
one-line refusals of a model file that is missing, not ONNX, or of the wrong shape."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
import torch

from tests.analyzer_run import read_events, run_streamer, subscribe
from tests.media import make_clip

pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")

BEEPS = (2.0, 4.5)
SIZE = 64  # the detector's input: 64x64


class Loudness(torch.nn.Module):
    """``(batch, samples)`` -> ``(batch, 2)``: "Loud sound" when the RMS is over 0.05, else "Quiet"."""

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        rms = waveform.pow(2).mean(dim=1, keepdim=True).sqrt()
        loud = torch.sigmoid(40 * (rms - 0.05))
        return torch.cat([loud, 1 - loud], dim=1)


class Brightness(torch.nn.Module):
    """``(1, 3, 64, 64)`` -> YOLOv8's ``(1, 4 + 2, 1)``: one box (the centre half), "bright" = 2 x the mean level
    (at most 1), "dark" = 1 - that."""

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        bright = (2 * images.mean(dim=(1, 2, 3))).clamp(max=1).view(1, 1, 1)
        box = torch.ones_like(bright).expand(1, 4, 1) * (SIZE / 2)
        return torch.cat([box, bright, 1 - bright], dim=1)


def export(module: torch.nn.Module, example: torch.Tensor, path: Path, dynamic: dict[str, Any] | None) -> Path:
    torch.onnx.export(module, (example,), str(path), input_names=["input"], output_names=["output"],
                      dynamic_axes=dynamic, dynamo=False)  # fmt: skip
    return path


@pytest.fixture
def models(tmp_path: Path) -> dict[str, Path]:
    tagger = export(Loudness(), torch.zeros(1, 16000), tmp_path / "tagger.onnx", {"input": {0: "batch", 1: "n"}})
    detector = export(Brightness(), torch.zeros(1, 3, SIZE, SIZE), tmp_path / "detector.onnx", None)
    (tmp_path / "tagger.csv").write_text("index,mid,display_name\n0,/m/0,Loud sound\n1,/m/1,Quiet\n")
    (tmp_path / "detector.txt").write_text("bright\ndark\n")
    return {"tagger": tagger, "detector": detector, "tagger_labels": tmp_path / "tagger.csv",
            "detector_labels": tmp_path / "detector.txt"}  # fmt: skip


def tags_section(models: dict[str, Path]) -> str:
    """``[tags]`` with the two models (speech off: the clips hold none)."""
    return f"""
[tags]
speech = false
audio_model = "{models["tagger"]}"
audio_labels = "{models["tagger_labels"]}"
detector_model = "{models["detector"]}"
detector_labels = "{models["detector_labels"]}"
"""


def site(tmp_path: Path, models: dict[str, Path], clip: Path, streams: str = "") -> Path:
    config = tmp_path / "site.toml"
    config.write_text(f"""
[[streams]]
name = "door"
source = "{clip}"
{streams}
{tags_section(models)}sensors = ["loud_sound", "dark"]
""")
    return config


async def test_a_users_models_tag_events(tmp_path: Path, models: dict[str, Path], mqtt_broker: Any) -> None:
    broker = mqtt_broker()
    clip = make_clip(tmp_path / "door.mp4", duration=7.0, beeps=BEEPS, beep_len=0.4, base_luma=40)
    out = tmp_path / "events.jsonl"
    async with subscribe(broker.host, broker.port, "#") as sub:
        # the same clip twice more: one stream ignores every label the models give, one wants only loud sounds
        config = site(
            tmp_path,
            models,
            clip,
            f"""
[[streams]]
name = "gate"
source = "{clip}"
ignore = ["loud_sound", "dark"]

[[streams]]
name = "yard"
source = "{clip}"
only = ["loud_sound"]
""",
        )
        code, _, err = await run_streamer("--config", str(config), "--mqtt", broker.url, "--prefix", "test",
                                          "--homeassistant", "--events-out", str(out), "-q")  # fmt: skip
        assert code == 0, err
        await asyncio.sleep(0.5)
    everything = read_events(out)
    messages = [m for m in everything if m["stream"] == "door"]
    starts = [m for m in messages if m["type"] == "start"]
    assert len(starts) == len(BEEPS), messages
    assert not any("filtered" in m for m in messages)  # no filters: nothing said
    for start in starts:
        tags = {t["label"]: t for m in messages if m["id"] == start["id"] for t in m.get("tags", [])}
        assert tags["loud_sound"]["confidence"] > 0.99 and tags["loud_sound"]["modality"] == "audio", tags
        assert "quiet" not in tags and "bright" not in tags, tags
        # the event's picture (luma 40 in video range: RGB 28), letterboxed into 64x64 (grey 114 above and below
        # the 64x48 picture) and scaled to 0..1: "dark" = 1 - 2 x its mean level, as the model computes it from
        # what the stage gave it
        mean = (48 * (40 - 16) * 255 / 219 + 16 * 114) / 64 / 255
        assert "dark" in tags, messages
        assert tags["dark"]["confidence"] == pytest.approx(1 - 2 * mean, abs=0.03), tags
        assert tags["dark"]["modality"] == "video"
    # filters: an event whose tags are all ignored is filtered, and its labels' sensors stay off; one with a wanted
    # tag is not (an end before its tags came says filtered: no wanted tag yet; the update that brings it, not)
    gate = [m for m in everything if m["stream"] == "gate" and m["type"] == "update"]
    yard = [m for m in everything if m["stream"] == "yard" and m["type"] == "update"]
    assert gate and all(m["filtered"] is True for m in gate), gate
    assert yard and all(m["filtered"] is not any(t["label"] == "loud_sound" for t in m["tags"]) for m in yard), yard
    assert {m["id"] for m in yard if m["filtered"] is False} == {m["id"] for m in yard}  # each one taken back
    assert not sub.on("test/gate/tags/loud_sound") and not sub.on("test/gate/tags/dark")
    assert sub.on("test/yard/tags/loud_sound")
    for label in ("loud_sound", "dark"):
        states = [json.loads(m.payload)["state"] for m in sub.on(f"test/door/tags/{label}")]
        assert states and states[-1] == "OFF", (label, states)
        entity = json.loads(sub.on(f"homeassistant/binary_sensor/test_door/tag_{label}/config")[-1].payload)
        assert entity["state_topic"] == f"test/door/tags/{label}"


@pytest.mark.parametrize(
    ("setting", "make", "says"),
    [
        ("audio_model", lambda p, m: p / "missing.onnx", "tags.audio_model: no such file"),
        ("audio_model", lambda p, m: (p / "x.onnx").write_text("not a model") and p / "x.onnx",
         "tags.audio_model: not an ONNX model"),
        ("audio_model", lambda p, m: m["detector"], "tags.audio_model: expected a waveform input"),
        ("detector_model", lambda p, m: m["tagger"], "tags.detector_model: expected a picture input"),
        ("audio_labels", lambda p, m: m["detector_labels"], "tags.audio_model: the model gives 2 scores"),
    ],
)  # fmt: skip
async def test_a_model_that_is_not_one_is_refused_in_one_line(
    tmp_path: Path, models: dict[str, Path], setting: str, make: Any, says: str
) -> None:
    models = dict(models)
    bad = make(tmp_path, models)
    key = {"audio_model": "tagger", "detector_model": "detector", "audio_labels": "tagger_labels"}[setting]
    if setting == "audio_labels":  # three labels for a model of two scores
        bad = tmp_path / "three.txt"
        bad.write_text("a\nb\nc\n")
    models[key] = bad
    clip = make_clip(tmp_path / "door.mp4", duration=1.0)
    code, _, err = await run_streamer("--config", str(site(tmp_path, models, clip)), "--mqtt", "none", "-q")
    assert code != 0
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and says in lines[0], err
    if setting == "audio_labels":
        assert "has 3" in lines[0], err


def test_labels_files_and_slugs(tmp_path: Path) -> None:
    from models.onnx_models import label_slug, load_labels

    assert label_slug("Glass, shatter") == "glass_shatter" and label_slug(" Dog ") == "dog"
    (tmp_path / "yamnet.csv").write_text('index,mid,display_name\n0,/m/09x0r,Speech\n1,/m/0bt9lr,"Dog"\n')
    assert load_labels(tmp_path / "yamnet.csv", "x") == ("speech", "dog")
    (tmp_path / "coco.txt").write_text("person\nbicycle\n\ntraffic light\n")
    assert load_labels(tmp_path / "coco.txt", "x") == ("person", "bicycle", "traffic_light")


async def test_a_zones_events_are_tagged_and_filtered_by_the_zones_own_lists(
    tmp_path: Path, models: dict[str, Path]
) -> None:
    """A zone's event gets tags of its own (the stream's sound, the picture where the zone changed) and its zone's
    filters: one zone wants loud sounds (filtered until the audio tag comes), one ignores every label."""
    config = tmp_path / "zones.toml"
    config.write_text(f"""
[[streams]]
name = "yard"
source = "synthetic:?events=av@3.5&duration=7"
[[streams.zones]]
name = "all"
polygon = [[0, 0], [1, 0], [1, 1], [0, 1]]
only = ["loud_sound"]
[[streams.zones]]
name = "none"
polygon = [[0, 0], [1, 0], [1, 1], [0, 1]]
ignore = ["loud_sound", "bright", "dark"]
{tags_section(models)}""")
    out = tmp_path / "events.jsonl"
    code, _, err = await run_streamer("--config", str(config), "--mqtt", "none", "--events-out", str(out), "-q")
    assert code == 0, err
    messages = read_events(out)
    for zone in ("all", "none"):
        ends = [m for m in messages if m.get("zone") == zone and m["type"] == "end"]
        assert len(ends) == 1, messages
        tags = {t["label"] for m in messages if m["id"] == ends[0]["id"] for t in m.get("tags", [])}
        assert "loud_sound" in tags, messages
    last = {m.get("zone"): m for m in messages if m["type"] != "start"}  # each one's last message
    assert last["all"]["filtered"] is False and last["none"]["filtered"] is True
    assert "filtered" not in last[None]  # the stream itself has no filters
    updates = [m for m in messages if m["type"] == "update" and m.get("zone") == "all"]
    assert updates and all(m["filtered"] is not any(t["label"] == "loud_sound" for t in m["tags"]) for m in updates)
