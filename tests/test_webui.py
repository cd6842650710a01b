"""The live web view in a real headless browser (Debian's chromium through chromedriver, driven by Selenium)
during a real ``streamer run``: the plot updates and events appear, and the plot reads right (what the page
says of its own drawing: the span shown, the axis labels and where they landed).

``STREAMER_UI_SCREENSHOT=FILE.png`` saves what the browser shows at the end (the README's picture)."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from pipelines.bench.mosquitto import end_process, free_port

from .analyzer_run import STREAMER
from .boxes import check_drawn

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
T = TypeVar("T")


@contextlib.contextmanager
def chromium(*flags: str) -> Iterator[Any]:
    """Headless Chromium through chromedriver (``flags``: more of its command-line flags); skipped where it is
    missing, but a failure on CI."""
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not shutil.which(p)]
    if missing:
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the browser test, but {', '.join(missing)} is missing (scripts/system-deps.sh)")
        pytest.skip(f"{', '.join(missing)} missing (Debian packages chromium, chromium-driver)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--window-size=1280,900", *flags):  # fmt: skip
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture
def browser() -> Iterator[Any]:
    with chromium() as driver:
        yield driver


def wait(condition: Callable[[], T], seconds: float, what: str) -> T:
    deadline = time.monotonic() + seconds
    while not (value := condition()):
        if time.monotonic() > deadline:
            raise AssertionError(f"within {seconds} s: {what}")
        time.sleep(0.1)
    return value


def test_the_live_view_plots_scores_and_lists_events(browser: Any, tmp_path: Path) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with (tmp_path / "streamer.log").open("w") as log:
        proc = subprocess.Popen(
            [*STREAMER, "run", "cam=synthetic:?events=av@4,a@7,v@11&duration=40", "door=synthetic:?events=a@5,av@9"
             "&duration=40", "--mqtt", "none", "--ui", f"127.0.0.1:{port}", "-q"], stdout=log, stderr=log,
        )  # fmt: skip
    try:
        wait(lambda: _answers(base), 60, f"the web view answers at {base}")
        browser.get(base + "/")
        js = browser.execute_script
        wait(lambda: js("return document.querySelectorAll('section.stream').length") == 2, 20, "two stream cards")
        cam = "document.querySelector('section.stream[data-stream=\"cam\"]')"
        first_t = wait(lambda: js(f"return {cam}.dataset.lastT"), 20, "scores plotted")
        first_png = js(f"return {cam}.querySelector('canvas').toDataURL()")
        check_the_plot(js, cam)
        time.sleep(1.5)
        assert float(js(f"return {cam}.dataset.lastT")) >= float(first_t) + 1.0  # it keeps moving, live
        assert js(f"return {cam}.querySelector('canvas').toDataURL()") != first_png  # and the plot is redrawn

        rows = "document.querySelectorAll('#events tr[data-stream=\"cam\"]')"
        wait(lambda: js(f"return {rows}.length") >= 2, 30, "cam's first event (start and end) listed")
        assert js(f"return [...{rows}].map(r => r.dataset.type)")[-2:] == ["end", "start"]  # newest first
        assert "EVENT" in js(f"return {cam}.querySelector('h2').textContent") or wait(
            lambda: js(f"return {rows}.length") >= 3, 10, "the next event"
        )  # fmt: skip
        wait(lambda: js(f"return {cam}.querySelector('img').naturalWidth") > 0, 20, "the event's snapshot shown")
        assert js(f"return {cam}.querySelector('.badge').textContent") == "online"
        shown = wait(lambda: js(f"return {cam}.dataset.boxShown"), 30, "an open event's box over the last snapshot")
        check_the_overlay(js, cam, json.loads(shown))
        wait(lambda: js(f"return {rows}.length") >= 6, 30, "all three events of cam")
        check_the_plot(js, cam)
        check_where(js, rows, base)
        if shot := os.environ.get("STREAMER_UI_SCREENSHOT"):
            browser.save_screenshot(shot)
    finally:
        end_process(proc, signal.SIGTERM)
    assert proc.returncode == 0, (tmp_path / "streamer.log").read_text()[-2000:]


def check_the_overlay(js: Callable[..., Any], card: str, shown: list[int]) -> None:
    """The video event's box was drawn over the last snapshot: a box of some size inside the picture."""
    img = js(f"const i = {card}.querySelector('img'); return [i.clientWidth, i.clientHeight]")
    assert 2 < shown[0] <= img[0] + 4 and 2 < shown[1] <= img[1] + 4, (shown, img)


def check_where(js: Callable[..., Any], rows: str, base: str) -> None:
    """The events list says where (the box, in percent of the picture) for cam's video events, nothing for its
    sound-only one; the latest snapshot (the last event's, a video one) has its peak box drawn."""
    listed = js(f"return [...{rows}].map(r => [r.dataset.type, r.querySelector('td.where').dataset.box, "
                "r.querySelector('td.where').textContent])")  # fmt: skip
    boxed = [row for row in listed if row[1]]
    assert len(boxed) >= 4 and all(text.startswith("x ") and "% y " in text for _, _, text in boxed), listed
    assert any(not box for _, box, _ in listed), listed  # the sound-only event (a@7)
    state = wait(lambda: _snapshots_of(base, "cam", 3), 20, "the third event's snapshot taken")
    assert state is not None
    last_end = [e for e in state["events"] if e["stream"] == "cam" and e["type"] == "end"][-1]
    assert last_end["peak"]["box"] is not None, last_end
    with urllib.request.urlopen(base + "/api/snapshot/cam", timeout=5) as response:
        check_drawn(response.read(), tuple(last_end["peak"]["box"]))


def check_the_plot(js: Callable[..., Any], card: str) -> None:
    """Under a minute of data the x axis spans the data (it was always 60 s, the first minute squeezed into the
    right third), then the last minute; S is labelled 0 to 1; every x label lies whole inside the canvas ("10 s"
    was cut to "1"); the media time is said outside the plot, not over the data; the legend names the shaded
    event spans."""
    plot = js(f"""const c = {card}.querySelector('canvas'), d = c.dataset, r = {card}.dataset;
        const caption = {card}.querySelector('.mediat'), box = c.getBoundingClientRect();
        const m = caption ? caption.getBoundingClientRect() : box;
        return {{t0: +d.t0, tEnd: +d.tEnd, first: +r.firstT, last: +r.lastT, y: d.yLabels,
                 x: JSON.parse(d.xLabels || "[]"), width: c.clientWidth,
                 legend: {card}.querySelector('.legend').innerText, caption: caption && caption.textContent,
                 overlap: !(m.bottom <= box.top || m.top >= box.bottom || m.right <= box.left || m.left >= box.right)}}
    """)  # fmt: skip
    assert plot["last"] - plot["first"] < 59  # these runs are shorter than the window
    assert plot["t0"] == pytest.approx(plot["first"]) and plot["tEnd"] == pytest.approx(plot["last"] + 0.1), plot
    assert js("return timeRange([[0, 0, 0, 0], [90, 0, 0, 0]], 0.1)") == pytest.approx([30.1, 90.1])
    assert plot["y"] == "0,0.25,0.5,0.75,1"
    assert len(plot["x"]) >= 2 and all(label["text"].endswith(" s") for label in plot["x"]), plot["x"]
    assert all(label["left"] >= 0 and label["right"] <= plot["width"] for label in plot["x"]), plot
    assert plot["caption"] == f"media time {plot['tEnd']:.1f} s" and not plot["overlap"], plot
    assert "event" in plot["legend"], plot["legend"]


def _snapshots_of(base: str, stream: str, count: int) -> dict[str, Any] | None:
    """The state once ``stream`` has had ``count`` snapshots."""
    with urllib.request.urlopen(base + "/api/state", timeout=5) as response:
        state: dict[str, Any] = json.load(response)
    return state if state["streams"][stream]["snapshot"] >= count else None


def _answers(base: str) -> bool:
    try:
        with urllib.request.urlopen(base + "/api/state", timeout=2) as response:
            return bool(response.status == 200)
    except OSError:
        return False


def test_an_events_clip_plays_in_the_view(browser: Any, tmp_path: Path) -> None:
    """With --clips, an ended event's row links its clip, and clicking it plays the clip in the page's video
    element (its currentTime advances): H.264 and Opus in MP4, served with ranges."""
    from .media import make_clip

    source = make_clip(tmp_path / "door.mp4", duration=12.0, flashes=(3.0,), beeps=(3.0,), audio_codec="libopus")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with (tmp_path / "streamer.log").open("w") as log:
        proc = subprocess.Popen(
            [*STREAMER, "run", f"door={source}", "--realtime", "--mqtt", "none", "--clips", str(tmp_path / "clips"),
             "--clip-post-roll", "1", "--ui", f"127.0.0.1:{port}", "-q"], stdout=log, stderr=log,
        )  # fmt: skip
    try:
        wait(lambda: _answers(base), 60, f"the web view answers at {base}")
        browser.get(base + "/")
        js = browser.execute_script
        wait(lambda: js("return document.querySelectorAll('#events a.clip').length") >= 1, 30, "a clip link")
        js("document.querySelector('#events a.clip').click()")
        player = "document.getElementById('player')"
        first = wait(lambda: js(f"return {player}.currentTime") or None, 15, "the clip playing")
        wait(lambda: js(f"return {player}.currentTime") > first + 0.5, 15, "the clip's time advancing")
        assert js(f"return {player}.error") is None
        assert js(f"return {player}.videoWidth") == 320
    finally:
        end_process(proc, signal.SIGTERM)
    assert proc.returncode == 0, (tmp_path / "streamer.log").read_text()[-2000:]


def test_an_events_tags_are_shown_in_the_view(browser: Any, tmp_path: Path) -> None:
    """The events list's "what" column shows what each event's tags say (here a user's audio tagger, a tiny ONNX
    model: a loud sound)."""
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    import torch

    from tests.test_tag_models import Loudness, export

    model = export(Loudness(), torch.zeros(1, 16000), tmp_path / "tagger.onnx", {"input": {0: "batch", 1: "n"}})
    (tmp_path / "labels.txt").write_text("Loud sound\nQuiet\n")
    config = tmp_path / "site.toml"
    labels = tmp_path / "labels.txt"
    config.write_text(f'[[streams]]\nname = "door"\nsource = "synthetic:?events=a@3,a@6&duration=30"\n\n[tags]\n'
                      f'speech = false\naudio_model = "{model}"\naudio_labels = "{labels}"\n')  # fmt: skip
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with (tmp_path / "streamer.log").open("w") as log:
        proc = subprocess.Popen([*STREAMER, "run", "--config", str(config), "--mqtt", "none", "--ui",
                                 f"127.0.0.1:{port}", "-q"], stdout=log, stderr=log)  # fmt: skip
    try:
        wait(lambda: _answers(base), 60, f"the web view answers at {base}")
        browser.get(base + "/")
        js = browser.execute_script
        what = "[...document.querySelectorAll('#events tr[data-stream=\"door\"] td.what')].map(c => c.textContent)"
        shown = wait(lambda: [w for w in js(f"return {what}") if w], 30, "an event's tags in the list")
        assert shown[0].startswith("loud_sound 1.00"), shown
    finally:
        end_process(proc, signal.SIGTERM)
