"""The TOML config and the flags over it: per-stream options, sections, and refusals that name the key."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest

from pipelines.config import build_config, load_toml
from streamer.errors import ConfigError

CONFIG = """
[defaults]
threshold = 0.6
min_gap = 0.5

[[streams]]
name = "front"
source = "rtsp://user:secret@cam.local/stream"
alpha = 0.8
beta = 0.2
hop_ms = 50
rtsp_transport = "udp"
av_options = { probesize = 32 }
fast_decode = true

[[streams]]
source = "synthetic:?events=a@1"
threshold = 0.3

[mqtt]
url = "mqtts://bob:pw@broker.example:8884"
prefix = "home/streamer"
scores = true

[model]
max_batch = 16
luma_size = "96x54"

[device]
type = "cpu"
"""


def config_file(tmp_path: Path, text: str = CONFIG) -> Path:
    path = tmp_path / "streamer.toml"
    path.write_text(text)
    return path


def test_a_file_with_streams_sections_and_defaults(tmp_path: Path) -> None:
    config = build_config(load_toml(config_file(tmp_path)), sources=["back=clip.mp4"])
    front, synthetic, back = config.streams
    assert [s.stream_id for s in config.streams] == ["front", "synthetic", "back"]
    assert (front.alpha, front.beta, front.events.threshold, front.events.min_gap) == (0.8, 0.2, 0.6, 0.5)
    assert front.sync.hop == 0.05 and front.source.segment_align == 0.05
    assert front.source.rtsp_transport == "udp" and dict(front.source.av_options) == {"probesize": "32"}
    assert front.source.luma_size == (96, 54)
    assert front.source.fast_decode is True and back.source.fast_decode is None  # None: on for files only
    assert synthetic.events.threshold == 0.3 and (synthetic.alpha, synthetic.beta) == (0.5, 0.5)
    assert back.events.threshold == 0.6 and back.sync.hop == 0.1
    assert config.mqtt.tls and config.mqtt.host == "broker.example" and config.mqtt.port == 8884
    assert (config.mqtt.username, config.mqtt.password, config.mqtt.prefix) == ("bob", "pw", "home/streamer")
    assert "pw" not in repr(config) and "secret" not in repr(config)
    assert config.model.max_batch == 16 and config.model.device == "cpu"


def test_flags_override_the_file(tmp_path: Path) -> None:
    config = build_config(
        load_toml(config_file(tmp_path)),
        stream_flags={"alpha": 1.0, "threshold": 0.9},
        mqtt_flags={"url": "mqtt://localhost", "prefix": "x"},
        model_flags={"max_batch": 4},
        device="auto",
    )
    assert all(s.alpha == 1.0 and s.events.threshold == 0.9 for s in config.streams)
    assert config.streams[0].beta == 0.2  # not given as a flag: the file's value
    assert config.mqtt.url == "mqtt://localhost" and config.mqtt.port == 1883 and config.mqtt.prefix == "x"
    assert config.model.max_batch == 4 and config.model.device == "auto"


def test_credentials_from_the_environment() -> None:
    env = {"STREAMER_MQTT_USERNAME": "u", "STREAMER_MQTT_PASSWORD": "p"}
    config = build_config(sources=["synthetic:"], environ=env)
    assert (config.mqtt.username, config.mqtt.password) == ("u", "p")
    assert config.mqtt.display_url == "mqtt://localhost:1883"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[[streams]]\nsource = 'a.mp4'\nalpah = 1", "unknown key 'streams[0].alpah' (allowed: name, source, alpha"),
        ("[mqtt]\nhots = 'x'", "unknown key 'mqtt.hots'"),
        ("[model]\nmax_batch = 0", "model.max_batch: expected an integer from 1 to 65536, got 0"),
        ("[[streams]]\nsource = 'a.mp4'\nbeta = -1", "streams[0].beta: expected a number >= 0, got -1"),
        ("[defaults]\nthreshold = 'high'", "defaults.threshold: expected a number > 0 and <= 1, got 'high'"),
        ("[[streams]]\nsource = 'a.mp4'\nrealtime = 'yes'", "streams[0].realtime: expected true or false"),
        ("[defaults]\nfast_decode = 'fast'", 'defaults.fast_decode: expected true, false or "auto"'),
        ("[device]\ntype = 'tpu'", "device.type: expected auto, cpu, cuda or cuda:N, got 'tpu'"),
        ("[[streams]]\nname = 'x'", "streams[0]: missing key 'source'"),
        ("[[streams]]\nsource = 'a.mp4'\n[[streams]]\nsource = 'b/a.mkv'", "stream 'a' is given twice"),
        ("[mqtt]\nurl = 'http://x'", "mqtt.url: expected mqtt://HOST[:PORT]"),
        ("[mqtt]\nprefix = 'a/+/b'", "mqtt prefix 'a/+/b'"),
        ("[[streams]]\nsource = 'bogus://x'", "stream 'bogus_x': unsupported scheme"),
        ("volume = 11", "unknown key 'volume'"),
        ("metrics = ':99999'", "metrics: expected [HOST]:PORT such as :9108"),
        ("ui = 'localhost'", "ui: expected [HOST]:PORT"),
        ("metrics = ':8080'\nui = '0.0.0.0:8080'", "metrics and ui: both on port 8080"),
        ("[homeassistant]\ndiscovery = 'yes'", "homeassistant.discovery: expected true or false"),
        ("[homeassistant]\ndiscovery = true\n[mqtt]\nurl = 'none'", "homeassistant.discovery: needs a broker"),
        ("[homeassistant]\nprefix = 'ha/#'", "mqtt prefix 'ha/#'"),
        ("[[streams]]\nsource = 'a.mp4'\ndevice_class = 'door'", "streams[0].device_class: expected one of motion"),
        ("[defaults]\nhwaccel = 'nosuch'", "stream 'a': hwaccel: 'nosuch' is not a hardware device type of this"),
    ],
)
def test_bad_keys_and_values_are_refused_naming_the_key(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        build_config(load_toml(config_file(tmp_path, text)), sources=[] if "streams" in text else ["a.mp4"])
    assert message in str(info.value)


def test_web_endpoints_and_home_assistant(tmp_path: Path) -> None:
    text = "metrics = ':9108'\nui = 8080\n[homeassistant]\ndiscovery = true\n[defaults]\ndevice_class = 'sound'\n"
    config = build_config(load_toml(config_file(tmp_path, text)), sources=["a.mp4", "b=synthetic:"])
    # both on this machine only unless a host is given (/metrics used to listen on every interface by default)
    assert (str(config.metrics), str(config.ui)) == ("127.0.0.1:9108", "127.0.0.1:8080")
    assert config.homeassistant.discovery and config.homeassistant.prefix == "homeassistant"
    assert [s.activity_class for s in config.streams] == ["sound", "sound"]
    flags = {"ui": "[::]:0", "metrics": "10.0.0.2:9100", "discovery": False}
    config = build_config(load_toml(config_file(tmp_path, text)), sources=["a.mp4"], extra_flags=flags)
    assert (str(config.metrics), str(config.ui), config.homeassistant.discovery) == ("10.0.0.2:9100", "[::]:0", False)
    plain = build_config(None, sources=["a.mp4"], stream_flags={"alpha": 0.2, "beta": 0.8})
    assert plain.metrics is None and plain.ui is None and not plain.homeassistant.discovery
    assert plain.streams[0].activity_class == "sound"  # audio weighs more


def test_a_taken_port_is_one_line(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-m", "pipelines.cli.main", "run", "synthetic:?duration=1", "--mqtt", "none", "-q", "--ui",
             f"127.0.0.1:{port}"], capture_output=True, text=True, timeout=120,
        )  # fmt: skip
    assert result.returncode == 2
    assert result.stderr.strip() == f"streamer: error: ui at 127.0.0.1:{port}: cannot listen: address already in use"


def test_not_toml_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_toml(config_file(tmp_path, "[mqtt\n"))
    with pytest.raises(ConfigError, match="no such file"):
        load_toml(tmp_path / "missing.toml")


def test_the_command_refuses_a_bad_config_in_one_line(tmp_path: Path) -> None:
    path = config_file(tmp_path, "[[streams]]\nsource = 'a.mp4'\nalpha = 'x'\n")
    result = subprocess.run(
        [sys.executable, "-m", "pipelines.cli.main", "run", "--config", str(path)], capture_output=True, text=True
    )
    assert result.returncode == 2
    assert result.stderr.strip() == "streamer: error: streams[0].alpha: expected a number >= 0, got 'x'"
