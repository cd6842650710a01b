"""Every command's flags, generated from the settings' declarations (:mod:`streamer.settings`), and read back.

One generator, :func:`add_setting_flags`, makes the flag of every setting a command takes: the analyzer's
(:func:`add_arguments`: ``run``, ``demo``, ``probe``, ``cluster``, and the analysis settings of ``calibrate``,
``train`` and ``evaluate``), the benchmarks' own (:mod:`pipelines.bench.options`), the learning commands' own
(:mod:`pipelines.learn.options`) and ``cluster``'s own (:mod:`pipelines.cluster.options`). One convention for all: a
flag is None unless given, so what lies under it shows through: for the analyzer's settings the config file's value,
then the default (:func:`flag_values`, layered by :func:`pipelines.config.configure`); for a command's own the
dataclass's default (:func:`values_from`). A flag's help is its setting's, with the default and unit
(:func:`flag_help`); its ``dest`` is the flag without its dashes (``--hop-ms``: ``hop_ms``).

Where a flag's value is checked: an analyzer setting's by :func:`~pipelines.config.configure`, with the config
file's values (one line naming the flag, as for a file's key); a command's own as argparse reads the word (a
usage error naming the flag); a file to write before any work starts, with the reason it cannot be written
(:func:`pipelines.cli.main.check_outputs`, :func:`~pipelines.config.configure`).

Beside :mod:`pipelines.config`, not in :mod:`pipelines.cli`: the feature packages (:mod:`pipelines.bench`,
:mod:`pipelines.learn`, :mod:`pipelines.cluster`) make and read their flags with it without depending on the
command-line front. Light (no torch, av): ``streamer --help`` builds every flag from here.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Iterable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from pipelines.config import (
    SCHEMA,
    SETTINGS,
    AnalyzerConfig,
    Values,
    configure,
    control_file,
    load_toml,
)
from streamer.errors import ConfigError
from streamer.settings import ANALYZE, SECTIONS, Setting, output_file, settings_of

_CAPTURE_OWNERS = ("SourceOptions", "SyncOptions")  # the analyzer's flags in the "sources" group
_LAYERED = frozenset(cls.__name__ for cls in SCHEMA)  # settings whose flags configure() checks with the file's


def flag_help(s: Setting) -> str:
    """The flag's help: the setting's, with its default and unit."""
    said = s.default_text
    quiet = s.check.flag_kind == "switch" and s.default is False  # the flag turns it on: nothing to say
    return s.help + ("" if said is None or quiet else f" (default {said})")


def dest(s: Setting) -> str:
    """Where argparse keeps the flag's value: the flag without its dashes."""
    return (s.option or "").removeprefix("--").replace("-", "_")


def _reader(s: Setting) -> Callable[[str], Any]:
    """A flag's word as the setting's value, a bad one a usage error naming the flag. A command's own setting is
    checked here; the analyzer's is parsed only (configure checks it with the config file's values); a file to
    write is checked before the work, where the error can say why it cannot be written."""
    check_now = s.owner not in _LAYERED

    def read(text: str) -> Any:
        try:
            value = s.check.parse(text)
            if s.check is output_file:
                return Path(value)
            return s.check(s.option or s.key, value) if check_now else value
        except (ValueError, ConfigError):
            raise argparse.ArgumentTypeError(f"expected {s.check.allowed}, got {text!r}") from None

    read.__name__ = s.key
    return read


def _pair(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return key, value


def add_setting_flags(
    parser: argparse.ArgumentParser | argparse._ArgumentGroup, settings: type | Iterable[Setting], command: str
) -> None:
    """The flags of the settings (a dataclass's, or a list of them) that ``command`` takes, in their order, each
    None unless given."""
    for s in settings_of(settings) if isinstance(settings, type) else settings:
        if command not in s.commands or s.option is None:
            continue
        options: dict[str, Any] = {"dest": dest(s), "default": None, "help": flag_help(s).replace("%", "%%")}
        words = s.check.choices
        if s.check.flag_kind == "switch":  # one that is on by default can be turned off: --no-...
            options["action"] = argparse.BooleanOptionalAction if s.off_option else "store_true"
        elif s.check.flag_kind == "pairs":
            options |= {"action": "append", "type": _pair, "metavar": s.metavar or "KEY=VALUE"}
        elif words is not None:
            options |= {"type": _reader(s), "choices": [s.check.parse(w) for w in words], "metavar": s.metavar}
        else:
            options |= {"type": _reader(s), "metavar": s.metavar or s.unit.upper() or s.check.metavar}
        parser.add_argument(s.option, **options)


def _given(s: Setting, args: argparse.Namespace) -> Any:
    """The flag's value in ``args``, None when not given (or not a flag of the command)."""
    raw = getattr(args, dest(s), None) if s.option else None
    return dict(raw) if raw is not None and s.check.flag_kind == "pairs" else raw


def values_from(args: argparse.Namespace, cls: type) -> dict[str, Any]:
    """``cls``' settings that the flags gave, by field name: ``cls(**values_from(args, cls))`` has the dataclass's
    defaults for the others."""
    return {s.name: value for s in settings_of(cls) if (value := _given(s, args)) is not None}


# -- the analyzer's settings: their flags layered over the config file -----------------------------------------


def flag_settings(*commands: str) -> list[Setting]:
    """The analyzer's settings with a flag in any of ``commands`` ("run", "probe", "evaluate", "cluster status")."""
    return [s for s in SETTINGS if s.commands & set(commands)]


def add_arguments(parser: argparse.ArgumentParser, command: str) -> None:
    """The flags of the analyzer's settings that ``command`` takes, in a "sources" group and an "analysis and
    publishing" group."""
    groups: dict[str, argparse._ArgumentGroup] = {}
    for s in flag_settings(command):  # in the schema's order, as the usage line lists them
        title = "sources" if s.owner in _CAPTURE_OWNERS else "analysis and publishing"
        if title not in groups:
            groups[title] = parser.add_argument_group(title)
        add_setting_flags(groups[title], [s], command)


def flag_values(args: argparse.Namespace, *commands: str) -> Values:
    """The analyzer's settings the flags gave (those ``commands`` take), by section and config key, for
    :func:`~pipelines.config.configure` to check and layer over the config file."""
    values: Values = {section: {} for section in SECTIONS}
    for s in flag_settings(*commands):
        if (value := _given(s, args)) is not None:
            values[s.section][s.key] = value
    return values


def analyzer_config(args: argparse.Namespace, sources: Sequence[str], file: Path | None = None) -> AnalyzerConfig:
    """``streamer run``'s (``demo``'s, ``cluster run``'s) configuration: ``file`` with the flags over it."""
    config = configure(load_toml(file) if file is not None else None, sources=sources,
                       flags=flag_values(args, *ANALYZE))  # fmt: skip
    if config.mqtt.control:  # live settings kept next to the config file that configured the run
        config = replace(config, mqtt=replace(config.mqtt, control_file=control_file(config.mqtt, file)))
    return config
