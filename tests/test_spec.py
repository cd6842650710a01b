"""Source strings: names, derived ids, kinds, redaction, camera capture configuration."""

from __future__ import annotations

import pytest

from streamer.camera import CaptureConfig, capture_config, open_camera
from streamer.errors import SourceOpenError, SourceSpecError
from streamer.spec import SourceKind, parse_source, redact, sanitize_stream_id


@pytest.mark.parametrize(
    ("text", "stream_id", "kind", "live"),
    [
        ("clips/front door.mp4", "front_door", SourceKind.FILE, False),
        ("file:///data/x.mkv", "x", SourceKind.FILE, False),
        ("rtsp://user:pass@cam.local/stream", "cam_local_stream", SourceKind.NETWORK, True),
        ("yard=rtsp://10.0.0.2:8554/live/main", "yard", SourceKind.NETWORK, True),
        ("http://host/live.m3u8", "host_live_m3u8", SourceKind.NETWORK, True),
        ("srt://host:9000", "host", SourceKind.NETWORK, True),
        ("camera:0", "camera0", SourceKind.CAMERA, True),
        ("/dev/video2", "video2", SourceKind.CAMERA, True),
        ("synthetic:", "synthetic", SourceKind.SYNTHETIC, True),
        ("demo=synthetic:?events=av@4&realtime=0", "demo", SourceKind.SYNTHETIC, False),
    ],
)
def test_parse_source(text: str, stream_id: str, kind: SourceKind, live: bool) -> None:
    spec = parse_source(text)
    assert (spec.stream_id, spec.kind, spec.is_live) == (stream_id, kind, live)


def test_name_must_be_safe() -> None:
    with pytest.raises(SourceSpecError, match="invalid stream name"):
        parse_source("bad+name=rtsp://host/x")
    with pytest.raises(SourceSpecError, match="unsupported scheme"):
        parse_source("gopher://host/x")
    with pytest.raises(SourceSpecError, match="camera index"):
        parse_source("camera:front")


def test_redaction_everywhere_a_source_is_shown() -> None:
    uri = "rtsp://admin:hunter2@cam.local:554/stream?token=abc&channel=1"
    assert redact(uri) == "rtsp://admin:***@cam.local:554/stream?token=***&channel=1"
    spec = parse_source(f"cam={uri}")
    assert "hunter2" not in repr(spec) and "hunter2" not in spec.redacted and "abc" not in spec.redacted
    assert redact("rtsp://user@host/x") == "rtsp://user@host/x"
    assert redact("/plain/path.mp4") == "/plain/path.mp4"


def test_sanitize_stream_id() -> None:
    assert sanitize_stream_id("a/b+c#d") == "a_b_c_d"
    assert sanitize_stream_id("///") == "stream"
    assert len(sanitize_stream_id("x" * 200)) == 64


def test_camera_capture_is_built_from_the_source() -> None:
    spec = parse_source("camera:1?audio=alsa:hw:1,0&width=1280&height=720&fps=30")
    config = capture_config(spec)
    assert config == CaptureConfig(
        device=1, width=1280, height=720, fps=30.0, audio_format="alsa", audio_device="hw:1,0"
    )
    assert config.device_path == "/dev/video1"
    assert capture_config(parse_source("/dev/video3")).device_path == "/dev/video3"
    with pytest.raises(SourceSpecError, match="audio must be alsa"):
        capture_config(parse_source("camera:0?audio=pulse"))
    with pytest.raises(SourceSpecError, match="unknown parameter"):
        capture_config(parse_source("camera:0?zoom=2"))


def test_missing_camera_is_a_clear_error() -> None:
    spec = parse_source("camera:57")
    with pytest.raises(SourceOpenError, match=r"stream 'camera57': cannot open camera /dev/video57: no such device"):
        open_camera(spec, capture_config(spec))


@pytest.mark.parametrize(
    ("uri", "secrets", "shown"),
    [
        ("rtmp://live.example/app/sk_live_SECRET", ["sk_live_SECRET"], "rtmp://live.example/app/***"),
        ("rtmps://u:pw@live.example:443/app/KEY1?x=1", ["KEY1", "pw"], "rtmps://u:***@live.example:443/app/***?x=1"),
        ("srt://h:9000?passphrase=SECRETPASS&streamid=SECRETID&latency=200", ["SECRETPASS", "SECRETID"],
         "srt://h:9000?passphrase=***&streamid=***&latency=200"),
        ("https://h/v.m3u8?access_token=TOK1&sig=SIG1", ["TOK1", "SIG1"], "https://h/v.m3u8?access_token=***&sig=***"),
        ("https://b.s3.example/v.mp4?X-Amz-Signature=S1&X-Amz-Credential=C1&X-Amz-Security-Token=T1",
         ["S1", "C1", "T1"], None),
        ("https://cdn.example/v.m3u8?Policy=P1&Signature=S2&Key-Pair-Id=K1", ["P1", "S2", "K1"], None),
    ],
)  # fmt: skip
def test_credentials_are_never_in_a_derived_id_or_a_shown_uri(uri: str, secrets: list[str], shown: str | None) -> None:
    """An RTMP stream key used to become part of the derived stream id (published in topics and stats); SRT's
    passphrase and streamid and signed-URL keys used to be shown."""
    spec = parse_source(uri)
    for secret in secrets:
        assert secret not in spec.stream_id and secret not in spec.redacted and secret not in repr(spec)
    if shown is not None:
        assert spec.redacted == shown
