"""Hostile names and inputs, by property: nothing but the documented errors, and no MQTT wildcard or level
injection through stream names or prefixes."""

from __future__ import annotations

import re
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from pipelines.config import build_config, load_toml
from pipelines.stages.topics import Topics, check_prefix
from streamer.errors import ConfigError, SourceSpecError
from streamer.spec import STREAM_ID_RE, parse_source, redact, sanitize_stream_id

LEVEL = re.compile(r"^[A-Za-z0-9_-]+$")
NASTY = st.text(alphabet=st.sampled_from(list("ab+#/\0 $:=?.&@%\\-_\n\t")) | st.characters(), max_size=40)


@given(NASTY)
def test_any_text_gives_a_valid_stream_id_or_a_spec_error(text: str) -> None:
    try:
        spec = parse_source(text)
    except SourceSpecError as exc:
        assert "\n" not in str(exc)  # one line
        return
    assert STREAM_ID_RE.match(spec.stream_id)
    topic = Topics("streamer").events(spec.stream_id)
    assert topic.count("/") == 2 and "+" not in topic and "#" not in topic and "\0" not in topic


@given(NASTY, st.sampled_from(["synthetic:", "clip.mp4", "rtsp://cam/s"]))
def test_names_with_wildcards_or_levels_are_refused(name: str, uri: str) -> None:
    try:
        spec = parse_source(f"{name}={uri}")
    except SourceSpecError:
        return
    assert LEVEL.match(spec.stream_id)  # the name was accepted only if it is a plain level (or not read as one)


@given(NASTY)
def test_sanitized_ids_are_single_levels(text: str) -> None:
    assert STREAM_ID_RE.match(sanitize_stream_id(text))


@given(NASTY)
def test_prefixes_are_levels_without_wildcards_or_refused(prefix: str) -> None:
    try:
        check_prefix(prefix)
    except ConfigError:
        return
    assert all(LEVEL.match(level) for level in prefix.split("/"))


def test_the_documented_refusals() -> None:
    for bad in ["", "/", "a/", "/a", "a//b", "a/+", "#", "a\0b", "$SYS", "a b"]:
        try:
            check_prefix(bad)
        except ConfigError:
            continue
        raise AssertionError(f"prefix {bad!r} was accepted")
    for bad in ["a+b=synthetic:", "a#=synthetic:", "x\0=synthetic:", "a b=synthetic:"]:
        try:
            spec = parse_source(bad)
        except SourceSpecError:
            continue
        raise AssertionError(f"{bad!r} gave stream id {spec.stream_id!r}")


@given(st.text(max_size=200))
def test_redaction_never_shows_a_password(secret: str) -> None:
    password = "S3cr3t-" + "".join(c for c in secret if c.isalnum())[:20]
    shown = redact(f"rtsp://admin:{password}@cam.local:554/stream?token={password}")
    assert password not in shown


TOML_VALUES = st.recursive(
    st.none().map(lambda _: "x") | st.booleans() | st.integers(-5, 10**6) | st.floats(allow_nan=True) | NASTY,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(NASTY, inner, max_size=3),
    max_leaves=8,
)
KEYS = st.sampled_from(["defaults", "streams", "mqtt", "model", "device", "alpha", "source", "url", "prefix", "x"])


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(KEYS, TOML_VALUES | st.lists(st.dictionaries(KEYS | NASTY, TOML_VALUES), max_size=3)))
def test_the_config_loader_raises_only_config_errors(doc: dict[str, Any]) -> None:
    try:
        build_config(doc, sources=["synthetic:"])
    except ConfigError as exc:
        assert str(exc) and "\n" not in str(exc).strip()


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300) | st.text(max_size=300).map(lambda t: t.encode("utf-8", "surrogatepass")))
def test_any_config_file_is_loaded_or_refused_cleanly(tmp_path_factory: Any, data: bytes) -> None:
    path = tmp_path_factory.mktemp("cfg") / "c.toml"
    path.write_bytes(data)
    try:
        build_config(load_toml(path), sources=["synthetic:"])
    except ConfigError as exc:
        assert "\n" not in str(exc).strip()
