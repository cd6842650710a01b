"""``docs/settings.md``, generated from the settings' declarations: ``python -m pipelines.settings_doc --markdown >
docs/settings.md``. One table per section of the config file (:data:`pipelines.config.SCHEMA`); the commands' own
settings (flags only) are left to their ``--help``.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable

from pipelines.config import section_settings
from streamer.settings import SECTIONS

COMMAND = "python -m pipelines.settings_doc --markdown > docs/settings.md"

_TITLES = {
    "stream": ("Per stream: `[defaults]` and `[[streams]]`", "Each `[[streams]]` table holds `source` (a "
               "`[NAME=]URI`), an optional `name`, and any of these keys; `[defaults]` sets them for every stream; "
               "a flag sets them for every stream, over both."),
    "model": ("`[model]`", "The model and the analysis format, one for all streams."),
    "device": ("`[device]`", "Where the model runs."),
    "mqtt": ("`[mqtt]`", "The broker and what is published."),
    "homeassistant": ("`[homeassistant]`", "MQTT discovery for Home Assistant."),
    "clips": ("`[clips]`", "Event clips: each event's own video and audio, not re-encoded, into a folder."),
    "tags": ("`[tags]`", "What an event heard, named after its start (docs/tags.md)."),
    "top": ("Top level, and flags only", "Keys outside any table; a setting marked *flag only* is not a config "
            "file key."),
}  # fmt: skip


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def settings_markdown() -> str:
    """``docs/settings.md``: one table per section of the config file, generated from the schema."""
    lines = [
        "# Settings",
        "",
        f"<!-- Generated from the schema by `{COMMAND}`; do not edit. -->",
        "",
        "Every setting is a key of the TOML file given with `--config` (`streamer run --config site.toml`), and "
        "many are flags too; a flag overrides the file. Each is declared once, on the dataclass it feeds "
        "(`pipelines/config.py`, `streamer/options.py`, `streamer/sync.py`); this page, the validation and every "
        "command's `--help` are generated from those declarations.",
        "",
        "The commands' own settings are flags only, not config file keys, and are not listed here: those of "
        "`streamer bench latency`, `capacity` and `throughput` are declared in `pipelines/bench/options.py`, those "
        "of `streamer calibrate`, `train` and `evaluate` in `pipelines/learn/options.py`, those of `streamer "
        "cluster` (the Ray cluster, its workers) in `pipelines/cluster/options.py`; `streamer COMMAND --help` lists "
        "them with their defaults.",
    ]
    for section in SECTIONS:
        title, intro = _TITLES[section]
        lines += ["", f"## {title}", "", intro, "", "| key | allowed | default | unit | flag | what it does |",
                  "| --- | --- | --- | --- | --- | --- |"]  # fmt: skip
        for s in section_settings(section, file_only=False).values():
            key = f"`{s.key}`" + ("" if s.file else " (flag only)")
            flag = f"`{s.option}`" if s.option else ""
            if s.off_option:
                flag += f", `{s.off_option}`"
            what = s.help + (" *Live*: changeable while running ([control.md](control.md))." if s.live else "")
            cells = (key, s.check.allowed, s.default_value or "none", s.unit, flag, what)
            lines.append("| " + " | ".join(_cell(c) for c in cells) + " |")
    return "\n".join(lines) + "\n"


def _main(argv: Iterable[str]) -> int:
    if list(argv) != ["--markdown"]:
        print(f"usage: {COMMAND}", file=sys.stderr)
        return 2
    sys.stdout.write(settings_markdown())
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
