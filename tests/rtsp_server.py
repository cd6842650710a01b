"""A live RTSP A/V test server on 127.0.0.1, built on GStreamer's gst-rtsp-server.

Run with Debian's ``/usr/bin/python3`` (python3-gi, gir1.2-gst-rtsp-server-1.0), not the project venv::

    /usr/bin/python3 tests/rtsp_server.py --port 8554 [--path /test] [--width 320 --height 240 --fps 30]
                                          [--file CLIP.mkv] [--no-audio] [--no-video]

By default it serves H.264 video (pt 96, a static SMPTE pattern) and Opus audio (pt 97, a quiet 440 Hz sine)
from live sources through one shared media, so every client reads the same live stream.

With ``--file`` it serves a local Matroska file's H.264 video (pt 96) and Opus audio (pt 97) instead, as they
are (no re-encoding: the file's key frame interval is what clients get), paced in real time by the pipeline
clock as a live camera would. ``--no-audio`` / ``--no-video`` say which track the file lacks. That media is
not shared: every client connection plays the file from its start, and the stream ends with the file.

Once the server socket listens it prints exactly one line, ``READY rtsp://127.0.0.1:PORT/path``, then serves
until SIGTERM or SIGINT and exits 0.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import gi  # type: ignore[import-not-found,unused-ignore]

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import Gst, GstRtspServer  # type: ignore[import-not-found,unused-ignore]  # noqa: E402

# The serving loop and the live-camera behaviour are the shipped impulse server's (no project dependencies).
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from pipelines.bench.impulse_server import not_seekable, serve  # noqa: E402


def launch_line(width: int, height: int, fps: int, video: bool, audio: bool) -> str:
    """The factory's pipeline: one payloader per stream, named pay0, pay1... as gst-rtsp-server wants."""
    branches: list[str] = []
    if video:
        branches.append(
            f"videotestsrc is-live=true pattern=smpte ! video/x-raw,width={width},height={height},"
            f"framerate={fps}/1 ! x264enc tune=zerolatency speed-preset=ultrafast key-int-max={fps} threads=1 "
            f"! rtph264pay name=pay{len(branches)} pt=96 config-interval=-1"
        )
    if audio:
        branches.append(
            "audiotestsrc is-live=true wave=sine freq=440 volume=0.05 ! audioconvert ! audioresample "
            f"! audio/x-raw,rate=48000,channels=2 ! opusenc frame-size=20 ! rtpopuspay name=pay{len(branches)} pt=97"
        )
    return "( " + "  ".join(branches) + " )"


def file_launch_line(path: str, video: bool, audio: bool) -> str:
    """The factory's pipeline for ``--file``: the Matroska file's tracks, demuxed and payloaded as they are."""
    location = path.replace("\\", "\\\\").replace('"', '\\"')
    branches = [f'filesrc location="{location}" ! matroskademux name=d']
    if video:
        branches.append(
            f"d.video_0 ! queue ! h264parse config-interval=-1 ! rtph264pay name=pay{len(branches) - 1} pt=96"
        )
    if audio:
        branches.append(f"d.audio_0 ! queue ! opusparse ! rtpopuspay name=pay{len(branches) - 1} pt=97")
    return "( " + "  ".join(branches) + " )"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--path", default="/test")
    parser.add_argument("--width", type=int, default=320)
    parser.add_argument("--height", type=int, default=240)
    parser.add_argument("--fps", type=int, default=30)
    parser.add_argument("--file", help="serve this Matroska file (H.264 and/or Opus) instead of test sources")
    parser.add_argument("--no-audio", action="store_true")
    parser.add_argument("--no-video", action="store_true")
    args = parser.parse_args(argv)
    if args.no_audio and args.no_video:
        parser.error("--no-audio and --no-video leave nothing to serve")
    path = args.path if args.path.startswith("/") else "/" + args.path

    Gst.init(None)
    factory = GstRtspServer.RTSPMediaFactory()
    if args.file is not None:
        if not os.path.isfile(args.file):
            parser.error(f"--file {args.file}: no such file")
        factory.set_launch(file_launch_line(os.path.abspath(args.file), not args.no_video, not args.no_audio))
        factory.set_shared(False)  # each client plays the file from its start
    else:
        factory.set_launch(launch_line(args.width, args.height, args.fps, not args.no_video, not args.no_audio))
        factory.set_shared(True)
        factory.connect("media-configure", lambda _, media: not_seekable(media))
    return serve(factory, args.port, path)


if __name__ == "__main__":
    sys.exit(main())
