#!/usr/bin/env bash
# Installs the Debian packages the tests need, if missing: GStreamer's RTSP server for Debian's own python3
# (the tests' RTSP server), its H.264/Opus encoders, mosquitto (the MQTT broker of the analyzer's tests), and
# chromium with chromedriver (the web view's browser test).
set -euo pipefail

have_rtsp() {
  /usr/bin/python3 -c "import gi; gi.require_version('GstRtspServer', '1.0'); from gi.repository import GstRtspServer" \
    >/dev/null 2>&1 && gst-inspect-1.0 x264enc >/dev/null 2>&1 && gst-inspect-1.0 opusenc >/dev/null 2>&1
}
if have_rtsp && command -v mosquitto >/dev/null 2>&1 && [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; then
  exit 0
fi
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends \
  python3 python3-gi gir1.2-gst-rtsp-server-1.0 gstreamer1.0-tools \
  gstreamer1.0-plugins-base gstreamer1.0-plugins-good gstreamer1.0-plugins-bad gstreamer1.0-plugins-ugly \
  mosquitto mosquitto-clients chromium chromium-driver >/dev/null
have_rtsp || { echo "system-deps: GStreamer RTSP server still unusable from /usr/bin/python3" >&2; exit 1; }
