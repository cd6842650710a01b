"""Masks and zones (issue 29): polygons in the config file, refused in one line naming the stream when wrong; their
pixels and cells; a mask the model ignores, through the runner; and, end to end with a real ``streamer run`` and
mosquitto, a masked busy region that makes no event while a zone gets its own events and Home Assistant entity."""

from __future__ import annotations

import itertools
import json
import math
import subprocess
import sys
import tomllib
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from pipelines.config import Zone, build_config, load_toml
from pipelines.outputs.homeassistant import HomeAssistant, discovery_configs, node_id
from pipelines.stages.events import Ended, Event, Scores
from pipelines.stages.inference import ModelRunner
from pipelines.stages.outbox import Outbox
from pipelines.stages.topics import Topics
from pipelines.stages.zones import Cells, ZoneEvents, cell_weights, ignore_mask
from streamer.errors import ConfigError

from .helpers import drain
from .model_inputs import H, W, noisy, scene, timestep

DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no GPU"))]
RIGHT_HALF = "[[0.5, 0], [1, 0], [1, 1], [0.5, 1]]"
LEFT_HALF = "[[0, 0], [0.5, 0], [0.5, 1], [0, 1]]"


def configured(tmp_path: Path, text: str) -> Any:
    path = tmp_path / "zones.toml"
    path.write_text(text)
    return build_config(load_toml(path), mqtt_flags={"url": "none"})


def stream_with(zones: str = "", mask: str = "", name: str = "front") -> str:
    return f"""
[[streams]]
name = "{name}"
source = "synthetic:?duration=1"
{f"mask = [{mask}]" if mask else ""}
{zones}
"""


def zone(name: str | None = "door", polygon: str = RIGHT_HALF, extra: str = "") -> str:
    return "[[streams.zones]]\n" + (f'name = "{name}"\n' if name is not None else "") + f"polygon = {polygon}\n{extra}"


# -- the config file -----------------------------------------------------------------------------------------


def test_masks_zones_and_their_thresholds_from_the_file(tmp_path: Path) -> None:
    text = "[defaults]\nzone_threshold = 0.5\n" + stream_with(
        zone("door") + zone("gate", "[[0, 0], [1, 0], [0, 1]]", "threshold = 0.8\n"), mask=LEFT_HALF
    )
    (front,) = configured(tmp_path, text).streams
    assert front.mask == (((0.0, 0.0), (0.5, 0.0), (0.5, 1.0), (0.0, 1.0)),)
    assert front.zones == (
        Zone("door", ((0.5, 0.0), (1.0, 0.0), (1.0, 1.0), (0.5, 1.0))),
        Zone("gate", ((0.0, 0.0), (1.0, 0.0), (0.0, 1.0)), 0.8),
    )
    detectors = ZoneEvents(front).detectors
    assert [(d.zone, d.options.threshold, d.options.min_gap) for d in detectors] == [
        ("door", 0.5, front.events.min_gap), ("gate", 0.8, front.events.min_gap)]  # fmt: skip
    plain = configured(tmp_path, stream_with()).streams[0]
    assert plain.mask == () and plain.zones == () and plain.zone_threshold == 0.6
    assert not ZoneEvents(plain)


NINE = "".join(zone(f"z{i}") for i in range(9))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (stream_with(zone(None)), "stream 'front': zones[0]: missing key 'name'"),
        (stream_with(zone("door", extra="sensitivity = 2\n")),
         "stream 'front': zone 'door': unknown key 'sensitivity' (allowed: name, polygon, threshold, only, ignore)"),
        (stream_with(zone("door", "[[0.5, 0], [1.2, 0], [1, 1]]")),
         "stream 'front': zone 'door': polygon: point [1.2, 0] is outside the picture: x and y go from 0 to 1"),
        (stream_with(zone("door", "[[0.5, 0], [1, -0.1], [1, 1]]")), "stream 'front': zone 'door': polygon: point"),
        (stream_with(zone("door", "[[0.5, 0], [1, 0]]")),
         "stream 'front': zone 'door': polygon: expected a polygon of at least 3 points"),
        (stream_with(zone("door", "[[0.5, 0], [1, 0], [1, 'x']]")),
         "stream 'front': zone 'door': polygon: expected points [x, y] of two numbers, got [1, 'x']"),
        (stream_with(zone("door") + zone("door")), "stream 'front': zone 'door': the name is given twice"),
        (stream_with(zone("front door")), "stream 'front': zones[0]: name 'front door': use 1-64 letters, digits"),
        (stream_with(zone("a/b")), "stream 'front': zones[0]: name 'a/b'"),
        (stream_with(zone("door", extra="threshold = 1.5\n")),
         "stream 'front': zone 'door': threshold: expected a number > 0 and <= 1, got 1.5"),
        (stream_with(NINE), "stream 'front': zones: at most 8 zones a stream, got 9"),
        (stream_with(zone("door", polygon="[]")), "stream 'front': zone 'door': polygon: expected a polygon"),
        (stream_with("", mask="[[0, 0], [2, 0], [0, 1]]"), "stream 'front': mask[0]: point [2, 0] is outside"),
        (stream_with("", mask="[0, 0], [1, 0], [0, 1]"), "stream 'front': mask[0]: expected a polygon of at least"),
        ('[defaults]\nzones = "door"\n' + stream_with(name="back"), "stream 'back': zones: expected [[streams.zones]]"),
        (stream_with('zone_threshold = 0\n'), "streams[0].zone_threshold: expected a number > 0 and <= 1, got 0"),
    ],
)  # fmt: skip
def test_bad_masks_and_zones_are_refused_in_one_line_naming_the_stream(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        configured(tmp_path, text)
    said = str(info.value)
    assert said.startswith(message) and "\n" not in said, said


def test_the_command_refuses_a_bad_zone_in_one_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(stream_with(zone("door", "[[0.5, 0], [1.5, 0], [1, 1]]")))
    result = subprocess.run([sys.executable, "-m", "pipelines.cli.main", "run", "--config", str(path), "--mqtt",
                             "none"], capture_output=True, text=True, timeout=120)  # fmt: skip
    assert result.returncode == 2
    assert result.stderr.strip().startswith("streamer: error: stream 'front': zone 'door': polygon: point [1.5, 0]")
    assert len(result.stderr.strip().splitlines()) == 1


# -- pixels and cells ----------------------------------------------------------------------------------------------


def test_a_polygon_on_the_pixels_and_the_cells() -> None:
    right = ((0.5, 0.0), (1.0, 0.0), (1.0, 1.0), (0.5, 1.0))
    mask = ignore_mask([right], (W, H))
    assert mask.shape == (H, W) and mask[:, W // 2 :].all() and not mask[:, : W // 2].any()
    weights = cell_weights(right, (W, H), (16, 9)).reshape(9, 16)
    assert (weights[:, 8:] == 1).all() and (weights[:, :8] == 0).all()

    # a centred square of half the width and height: cells on its border hold their share of it
    square = ((0.25, 0.25), (0.75, 0.25), (0.75, 0.75), (0.25, 0.75))
    weights = cell_weights(square, (W, H), (16, 9)).reshape(9, 16)
    assert math.isclose(weights.sum(), 0.25 * 144) and (weights[3:6, 4:12] == 1).all()
    assert 0 < weights[2, 4] < 1 and weights[:, :4].sum() == 0 and weights[:, 12:].sum() == 0
    # a triangle: half the picture; several polygons: their union
    triangle = ((0.0, 0.0), (1.0, 0.0), (0.0, 1.0))
    assert abs(ignore_mask([triangle], (W, H)).mean() - 0.5) < 0.01
    both = ignore_mask([right, ((0.0, 0.0), (0.1, 0.0), (0.1, 0.1), (0.0, 0.1))], (W, H))
    assert both.sum() == mask.sum() + 16 * 9 and not ignore_mask([], (W, H)).any()


def test_zone_events_follow_their_cells_only() -> None:
    """A zone's S_v is region_score of its cells: change beside the zone is not the zone's, and its box is its
    own unusual cells'."""
    sc = build_config(mqtt_flags={"url": "none"}, sources=["cam=synthetic:"]).streams[0]
    sc = replace(sc, zones=(Zone("door", ((0.5, 0.0), (1.0, 0.0), (1.0, 1.0), (0.5, 1.0))),))
    cells = Cells.of(sc, (W, H), (16, 9), 0.01)
    zones = ZoneEvents(sc)
    left, right = np.zeros((9, 16)), np.zeros((9, 16))
    left[4, 2] = 0.05
    right[4:6, 10:12] = 0.02  # 8% of the picture changed beyond its usual in four cells of the zone

    def step(t: float, unusual: np.ndarray) -> list[Any]:
        return zones.update(Scores(t, 0.1, 0.0, 0.0, 0.0, has_a=False), (unusual + 0.0).ravel(), cells)

    assert [step(0.1 * k, left) for k in range(5)] == [[]] * 5  # not the zone's cells
    (start,) = step(0.5, left + right)
    assert (start.type, start.zone, start.s_v) == ("start", "door", pytest.approx(1 - math.exp(-8)))
    assert start.box == (10 / 16, 4 / 9, 12 / 16, 6 / 9)
    assert start.as_dict()["zone"] == "door" and start.as_dict()["box"] == [0.625, 0.4444, 0.75, 0.6667]
    assert step(0.6, left) == []  # below its threshold: the gap starts
    (ended,) = zones.flush("source lost")
    assert isinstance(ended, Ended) and ended.peak_frame is None  # a zone's event takes no snapshot
    assert (ended.event.type, ended.event.reason, ended.event.zone) == ("end", "source lost", "door")


def test_a_streams_end_ends_its_zones_events_too() -> None:
    """What ends the stream's open event (its source lost, its end) ends its zones' (StreamRuntime.flush: what the
    scoring stage and the analyzer call)."""
    from pipelines.stages.batcher import Batcher
    from pipelines.stages.events import EventDetector
    from pipelines.stages.lifecycle import Job, StreamRuntime

    sc = build_config(mqtt_flags={"url": "none"}, sources=["cam=synthetic:"]).streams[0]
    sc = replace(sc, zones=(Zone("door", ((0.5, 0.0), (1.0, 0.0), (1.0, 1.0), (0.5, 1.0))),))
    rt = StreamRuntime(sc, Batcher[Job](4, 0.005).add_lane("cam", 4, drop_oldest=False),
                       EventDetector("cam", sc.events, sc.alpha, sc.beta))  # fmt: skip
    unusual = np.zeros((9, 16))
    unusual[4, 12] = 0.05
    scores = Scores(1.0, 0.1, 0.5, 1.0, 0.0, has_a=False)
    assert [e.type for e in events(rt.detector.update(scores))] == ["start"]
    zoned = rt.zones.update(scores, unusual.ravel(), Cells.of(sc, (W, H), (16, 9), 0.01))
    assert [(e.type, e.zone) for e in events(zoned)] == [("start", "door")]
    ended = events(rt.flush("source lost"))
    assert [(e.zone, e.reason) for e in ended] == [(None, "source lost"), ("door", "source lost")]
    assert rt.flush() == []


def events(messages: list[Event | Ended]) -> list[Event]:
    return [m.event if isinstance(m, Ended) else m for m in messages]


# -- the mask reaches the model ---------------------------------------------------------------------------------


def _frames(rng: np.random.Generator, base: np.ndarray, busy: bool) -> list[np.ndarray]:
    """Three frames of the scene; ``busy``: a bright square jumping about the left third (never past x = 0.33)."""
    out = []
    for _ in range(3):
        image = base.copy()
        if busy:
            x, y = rng.integers(0, W // 3 - 20), rng.integers(0, H - 20)
            image[y : y + 20, x : x + 20] = 230
        out.append(noisy(image, rng))
    return out


@pytest.mark.parametrize("device", DEVICES)
def test_the_model_ignores_what_the_mask_covers_after_a_reconnect_and_a_move(device: str) -> None:
    """Two streams see the same picture (a square jumping about the left third after a still start); the one
    masked there scores nothing, the other fires there. The mask holds after the first timestep after a
    reconnect (which resets the slot), and when states are carried over: each stream keeps its own mask (or
    none)."""
    text = "".join(f'[[streams]]\nname = "{n}"\nsource = "synthetic:"\n' for n in ("plain", "masked"))
    text += "mask = [[[0, 0], [0.4, 0], [0.4, 1], [0, 1]]]\n"
    config = build_config(tomllib.loads(text), mqtt_flags={"url": "none"}, device=device)
    plain, masked = config.streams
    runner = ModelRunner(config.model)
    try:
        runner.add_stream(plain).result()
        runner.add_stream(masked).result()
        base = scene(3)

        def run(k0: int, n: int, busy_from: int, reset: bool = False) -> dict[str, list[dict[str, Any]]]:
            rng = np.random.default_rng(k0)
            got: dict[str, list[dict[str, Any]]] = {"plain": [], "masked": []}
            for k in range(k0, k0 + n):
                frames = _frames(rng, base, busy=k >= busy_from)
                batch = [replace(timestep(k, frames, None, stream=s), reset=reset and k == k0) for s in got]
                result = runner.score_async(batch).result()
                for j, s in enumerate(got):
                    got[s].append({name: values[j] for name, values in result.items()})
            return got

        def check(got: dict[str, list[dict[str, Any]]]) -> None:
            assert max(r["s_v"] for r in got["plain"]) > 0.6
            plain_cells = np.stack([r["video_unusual"] for r in got["plain"]]).reshape(-1, 9, 16)
            assert plain_cells[:, :, :6].sum() > 0 and plain_cells[:, :, 6:].sum() == 0  # where the square was
            assert max(r["s_v"] for r in got["masked"]) == 0
            assert sum(float(r["video_unusual"].sum()) for r in got["masked"]) == 0

        check(run(0, 50, busy_from=40))  # (a stream learns its scene for its first 3 s)
        check(run(100, 50, busy_from=140, reset=True))  # a reconnect: the slot starts afresh, its mask stays
        run(200, 40, busy_from=240, reset=True)  # still: both learn it afresh
        states = {sid: runner.export_state(sid) for sid in ("plain", "masked")}
        runner.import_state("masked", states["plain"])  # the state of a stream without a mask, and the other way
        runner.import_state("plain", states["masked"])
        check(run(240, 10, busy_from=240))
        assert runner.cells("masked") is not None and runner.cells("masked").grid == (16, 9)  # type: ignore[union-attr]
    finally:
        runner.close()


def test_zones_with_a_video_encoder_without_cells_are_refused_in_one_line(tmp_path: Path) -> None:
    plugin = tmp_path / "flat_encoder.py"
    plugin.write_text(
        "import torch\n\n"
        "class Flat(torch.nn.Module):\n"
        "    def forward(self, frames, valid, slots):\n"
        "        return torch.zeros(frames.shape[0])\n"
    )
    text = stream_with(zone("door")) + '[model]\nvideo = "flat_encoder:Flat"\n'
    config = configured(tmp_path, text)
    sys.path.insert(0, str(tmp_path))
    try:
        runner = ModelRunner(replace(config.model, device="cpu"))
        try:
            with pytest.raises(ConfigError) as info:
                runner.add_stream(config.streams[0]).result()
            assert str(info.value) == (
                "stream 'front': zones need the video model's cells (video_unusual): the video encoder Flat gives none"
            )
            runner.add_stream(replace(config.streams[0], zones=())).result()  # without zones: no boxes, no refusal
            assert runner.cells("front") is None
            with pytest.raises(ConfigError, match=r"^stream 'other': mask: the video encoder Flat takes no mask$"):
                other = replace(config.streams[0], zones=(), mask=(((0.0, 0.0), (1.0, 0.0), (1.0, 1.0)),))
                runner.add_stream(replace(other, spec=replace(other.spec, stream_id="other"))).result()
        finally:
            runner.close()
    finally:
        sys.path.remove(str(tmp_path))


# -- Home Assistant ---------------------------------------------------------------------------------------------


def test_a_zone_is_a_binary_sensor_that_goes_with_its_stream() -> None:
    from pipelines.config import HomeAssistantConfig

    topics = Topics("site")
    sc = build_config(mqtt_flags={"url": "none"}, sources=["gate=synthetic:"]).streams[0]
    sc = replace(sc, zones=(Zone("door", ((0.5, 0.0), (1.0, 0.0), (1.0, 1.0))),))
    node = node_id("site", "gate")
    topic = f"homeassistant/binary_sensor/{node}/zone_door/config"
    config = discovery_configs(sc, topics, "homeassistant")[topic]
    assert config["name"] == "door motion" and config["device_class"] == "motion"
    assert config["state_topic"] == "site/gate/zones/door/activity"
    assert config["unique_id"] == f"{node}_zone_door" and config["device"]["identifiers"] == [node]

    outbox = Outbox(100)
    ha = HomeAssistant(HomeAssistantConfig(discovery=True), topics, outbox)
    ha.stream_added(sc)
    sent = {m.topic: m.payload for m in drain(outbox)}
    assert sent["site/gate/zones/door/activity"] == b"OFF" and topic in sent
    start = Event(type="start", id="x", stream="gate", t=1.0, wall_time=0.0, score=0.9, s_v=0.9, s_a=None,
                  alpha=None, beta=None, zone="door")  # fmt: skip
    ha.event(start)
    assert [(m.topic, m.payload) for m in drain(outbox)] == [("site/gate/zones/door/activity", b"ON")]
    ha.event(replace(start, zone=None))
    assert [(m.topic, m.payload) for m in drain(outbox)] == [("site/gate/activity", b"ON")]
    ha.stream_removed("gate")
    removed = {m.topic: m.payload for m in drain(outbox)}
    assert removed[topic] == b"" and removed["site/gate/zones/door/activity"] == b""

    # the next run: the zone is gone from the config (its stream stays): the registry of the last run removes it
    ha = HomeAssistant(HomeAssistantConfig(discovery=True), topics, outbox)
    ha.stream_added(replace(sc, zones=()))
    drain(outbox)
    ha.received("site/homeassistant/streams", json.dumps(["gate", "gate/door"]).encode())
    pruned = {m.topic: m.payload for m in drain(outbox)}
    assert pruned[topic] == b"" and json.loads(pruned["site/homeassistant/streams"]) == ["gate"]
    assert f"homeassistant/binary_sensor/{node}/activity/config" not in pruned


# -- end to end: a real `streamer run`, a real broker -------------------------------------------------------------

BUSY_FROM, ARRIVES, LEAVES, CLIP = 3.5, 5.0, 6.0, 7.5  # seconds (a stream learns its scene for its first 3 s)


def make_zone_clip(
    path: Path, arrives: float = ARRIVES, leaves: float = LEAVES, width: int = 320, height: int = 180, fps: int = 30
) -> Path:
    """A still scene whose left third turns busy at ``BUSY_FROM`` (blocks of random grey jumping about, to the
    end, like leaves in the wind or a screen), and a bright square crossing the right of the picture from
    ``arrives`` to ``leaves``. Video only, H.264."""
    from fractions import Fraction

    import av

    rng = np.random.default_rng(7)
    y, x = np.mgrid[0:height, 0:width]
    base = (60 + 80 * x / width + 30 * y / height + rng.normal(0, 8, (height, width))).astype(np.float32)
    chroma = np.full((height // 2, width), 128, np.uint8)
    with av.open(str(path), mode="w") as container:
        video = container.add_stream("libx264", rate=fps, options={"preset": "veryfast"})
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        video.time_base = Fraction(1, fps)
        for i in range(round(CLIP * fps)):
            t = i / fps
            image = base.copy()
            if t >= BUSY_FROM:
                for _ in range(8):
                    bx, by = rng.integers(0, width // 3 - 24), rng.integers(0, height - 24)
                    image[by : by + 24, bx : bx + 24] = rng.integers(0, 255)
            if arrives <= t < leaves:
                sx = round(0.72 * width + (t - arrives) * 0.15 * width)
                image[70:110, sx : sx + 40] = 240
            luma = np.clip(image + rng.normal(0, 1.5, image.shape), 0, 255).astype(np.uint8)
            frame = av.VideoFrame.from_ndarray(np.concatenate([luma, chroma]), format="yuv420p")
            frame.pts, frame.time_base = i, Fraction(1, fps)
            container.mux(video.encode(frame))
        container.mux(video.encode(None))
    return path


E2E_CONFIG = """
[mqtt]
url = "{url}"
prefix = "test"

[homeassistant]
discovery = true

[[streams]]
name = "plain"
source = "{clip}"

[[streams]]
name = "masked"
source = "{clip}"
realtime = true
mask = [[[0, 0], [0.4, 0], [0.4, 1], [0, 1]]]

[[streams.zones]]
name = "door"
polygon = [[0.6, 0], [1, 0], [1, 1], [0.6, 1]]
"""


async def test_a_masked_busy_region_is_quiet_and_a_zone_has_its_own_events_and_entity(
    tmp_path: Path, mqtt_broker: Any
) -> None:
    """The same clip twice: ``plain`` fires where its left third turns busy; ``masked`` (that third masked) does
    not, and its zone over the right of the picture gets its own start and end when the square crosses it, on
    its own topic, in the events file and as a Home Assistant binary_sensor that follows them."""
    from .analyzer_run import read_events, retained, run_streamer, subscribe

    broker = mqtt_broker()
    clip = make_zone_clip(tmp_path / "zones.mp4")
    config = tmp_path / "zones.toml"
    config.write_text(E2E_CONFIG.format(url=broker.url, clip=clip))
    events_out = tmp_path / "events.jsonl"
    async with subscribe(broker.host, broker.port, "#") as sub:
        code, _, err = await run_streamer("--config", str(config), "--events-out", str(events_out), "-q")
        assert code == 0, err[-2000:]
        kept = await retained(broker.host, broker.port, "homeassistant/#")

    plain, masked = sub.events("plain"), sub.events("masked")
    # without the mask, the busy third fires as it turns busy; with it, nothing happens there
    assert any(e["type"] == "start" and abs(e["t"] - BUSY_FROM) < 0.3 and e["box"][2] <= 0.4 for e in plain), plain
    assert masked and all(e["t"] >= ARRIVES - 0.2 for e in masked), masked
    assert all(e["box"] is None or e["box"][0] >= 0.375 for e in masked), masked  # never a cell under the mask
    assert all("zone" not in e for e in plain + masked)

    # the zone: its own events on its own topic, its name and a box inside it
    door = [m.json() for m in sub.on("test/masked/zones/door/events")]
    assert [e["type"] for e in door][:2] == ["start", "end"] and len(door) % 2 == 0, door
    assert all(e["zone"] == "door" and e["stream"] == "masked" for e in door)
    start = door[0]
    assert abs(start["t"] - ARRIVES) < 0.3 and 0.5 <= start["box"][0] < start["box"][2] <= 1.0, start
    assert door[1]["id"] == start["id"] and door[1]["peak"]["box"] is not None
    written = [e for e in read_events(events_out) if e.get("zone") == "door"]
    assert [e["id"] for e in written] == [e["id"] for e in door]
    assert not sub.on("test/plain/zones/door/events")

    # Home Assistant: the zone's binary_sensor, retained, whose state follows the zone's events
    node = node_id("test", "masked")
    announced = json.loads(kept[f"homeassistant/binary_sensor/{node}/zone_door/config"])
    assert announced["state_topic"] == "test/masked/zones/door/activity" and announced["device_class"] == "motion"
    assert announced["name"] == "door motion" and announced["device"]["identifiers"] == [node]
    assert f"homeassistant/binary_sensor/{node_id('test', 'plain')}/zone_door/config" not in kept
    # (a status waiting in the outbox is replaced by a newer one of its topic: a file analyzed faster than real
    # time may skip an ON-OFF pair, never the last state; so this stream is paced like a live source, its zone's
    # event a second long: unpaced, a loaded machine's outbox was still sending the start when the end came)
    states = sub.payloads("test/masked/zones/door/activity")
    assert states[0] == "OFF" and "ON" in states and states[-1] == "OFF", states
    assert all(a != b for a, b in itertools.pairwise(states)), states


async def test_a_zones_event_open_at_the_streams_end_ends_with_it(tmp_path: Path) -> None:
    """The square arrives in the zone just before the clip ends: the zone's event ends with the stream ("stream
    ended"), as the stream's own does; every start a subscriber saw gets its end."""
    from pipelines.analyzer import Analyzer, Hooks

    clip = make_zone_clip(tmp_path / "late.mp4", arrives=CLIP - 0.3, leaves=CLIP + 1)
    text = E2E_CONFIG.format(url="none", clip=clip).replace("[homeassistant]\ndiscovery = true\n", "")
    config = build_config(tomllib.loads(text), mqtt_flags={"url": "none"})
    told: list[Event] = []
    summary = await Analyzer(config, Hooks(on_event=told.append)).run()
    assert summary.exit_code == 0
    door = [(e.type, e.reason) for e in told if e.zone == "door"]
    assert door == [("start", None), ("end", "stream ended")], told
    assert [(e.type, e.reason) for e in told if e.stream == "masked" and e.zone is None] == door
