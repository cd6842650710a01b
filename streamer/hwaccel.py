"""Hardware video decoding (FFmpeg's hwaccel, through PyAV): which device a source's video decodes on.

``SourceOptions.hwaccel`` (``hwaccel`` in a config file, ``--hwaccel``):

* ``None`` (the default, ``"none"``): software decoding;
* ``"TYPE"`` or ``"TYPE:DEVICE"``: an FFmpeg hardware device type this FFmpeg (PyAV's) has, such as ``cuda``
  (NVDEC), ``vaapi``, ``qsv``, ``videotoolbox``, ``d3d11va``; ``DEVICE`` picks one, as in FFmpeg's
  ``-init_hw_device`` (``cuda:1``, ``vaapi:/dev/dri/renderD128``);
* ``"auto"``: the first device type that one of this FFmpeg's decoders uses and that opens here, else software.

A device that cannot be opened (no GPU, no driver, no permission) does not stop the stream: it decodes in
software, with one warning naming the stream and the cause (for ``auto``, an info line). A codec or profile the
device cannot decode is decoded in software too (PyAV's software fallback, chosen by FFmpeg per stream). Decoded
pictures come back to memory (NV12 for CUDA), whose luma plane is read in place like a software frame's
(:mod:`streamer.luma`); which device a stream decodes on is in its ``VideoInfo.hwaccel`` (``streamer probe``).

Whether a device opens is tried once per process and device (a hardware context is opened and closed with a
decoder that can use it), so each connection and reconnect does not pay for a failing device again. CUDA
devices are opened on the device's primary context (``primary_ctx``), which every stream of a process shares
with the others and with torch, instead of a context of their own (hundreds of MB of GPU memory each).
"""

from __future__ import annotations

import functools
import logging
from typing import Any

from .ffmpeg_log import errors_said

log = logging.getLogger(__name__)

NONE = "none"
AUTO = "auto"
# decoders tried when checking that a device type opens: the first one with a configuration for it is used
_PROBE_DECODERS = ("h264", "hevc", "vp9", "av1", "mpeg2video", "vp8", "mjpeg", "mpeg4")
_DEVICE_OPTIONS: dict[str, dict[str, object]] = {"cuda": {"primary_ctx": "1"}}
_said: set[tuple[str, str]] = set()  # (stream, setting) already warned about, once per process


def device_types() -> list[str]:
    """The hardware device types this FFmpeg (PyAV's) has, in FFmpeg's order."""
    from av.codec.hwaccel import hwdevices_available

    return list(hwdevices_available())


def check(setting: str | None) -> str | None:
    """The setting as it will be used (``None`` for software); ``ValueError`` naming the types there are when
    ``TYPE`` is not one of them."""
    if setting is None or setting == NONE:
        return None
    if setting == AUTO:
        return AUTO
    kind, _, _ = setting.partition(":")
    types = device_types()
    if kind not in types:
        offered = ", ".join(types) if types else "none"
        raise ValueError(
            f"hwaccel: {setting!r} is not a hardware device type of this FFmpeg (PyAV's); it has: {offered} "
            f"(or {AUTO}, {NONE})"
        )
    return setting


def decoder_device(stream_id: str, setting: str | None) -> Any:
    """The ``av.codec.hwaccel.HWAccel`` to open ``stream_id``'s container with, or None for software decoding
    (no setting, or no device that opens: said once per stream and setting)."""
    if setting is None:
        return None
    from av.codec.hwaccel import HWAccel

    chosen, causes = _resolve(setting)
    if chosen is not None:
        kind, _, device = chosen.partition(":")
        return HWAccel(kind, device or None, allow_software_fallback=True, options=_DEVICE_OPTIONS.get(kind))
    if (stream_id, setting) not in _said:
        _said.add((stream_id, setting))
        if setting == AUTO:
            said = "; ".join(f"{c}: {why}" for c, why in causes.items()) or "this FFmpeg has none"
            log.info("stream '%s': no hardware decoder opens here (%s); decoding in software", stream_id, said)
        else:
            log.warning("stream '%s': hardware decoding on %s is unavailable (%s); decoding in software",
                        stream_id, setting, causes[setting])  # fmt: skip
    return None


def in_use(codec_context: Any, setting: str | None) -> str | None:
    """The device type a decoder opened with :func:`decoder_device` decodes on (``"cuda"``), None for software
    (no setting, no device, or a codec the device has no decoder for)."""
    if setting is None or not codec_context.is_hwaccel:
        return None
    chosen, _ = _resolve(setting)
    return None if chosen is None else chosen.partition(":")[0]


@functools.cache
def _resolve(setting: str) -> tuple[str | None, dict[str, str]]:
    """The first ``TYPE[:DEVICE]`` of ``setting`` that opens here (None if none does), and why the others did
    not. Tried once per process: every connection of every stream with this setting reads the answer."""
    candidates = [kind for kind in device_types() if _decoder_for(kind) is not None] if setting == AUTO else [setting]
    causes: dict[str, str] = {}
    for candidate in candidates:
        kind, _, device = candidate.partition(":")
        cause = _opens(kind, device or None)
        if cause is None:
            return candidate, causes
        causes[candidate] = cause
    return None, causes


def _decoder_for(kind: str) -> Any:
    """A decoder of this FFmpeg that can decode on a ``kind`` device, or None."""
    import av

    for name in _PROBE_DECODERS:
        try:
            codec = av.codec.Codec(name, "r")
        except (av.FFmpegError, ValueError):  # not in this build
            continue
        if any(config.device_type.name == kind and config.is_supported for config in codec.hardware_configs):
            return codec
    return None


def _opens(kind: str, device: str | None) -> str | None:
    """None when a ``kind`` device (``device`` of it) opens, else why not: what FFmpeg said ("Cannot load
    libcuda.so.1"), or the error."""
    import av
    from av.codec.hwaccel import HWAccel

    codec = _decoder_for(kind)
    if codec is None:
        return "no decoder of this FFmpeg (PyAV's) decodes on it"
    try:
        with errors_said() as logs:
            HWAccel(kind, device, options=_DEVICE_OPTIONS.get(kind)).create(codec)
    except (av.FFmpegError, OSError, NotImplementedError) as exc:
        said = [" ".join(str(message).split()) for _, _, message in logs]
        if said:
            return ": ".join(dict.fromkeys(said))
        return " ".join((getattr(exc, "strerror", None) or str(exc) or type(exc).__name__).split())
    return None
