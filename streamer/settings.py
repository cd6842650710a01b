"""Settings declared once, on the field of the frozen dataclass each one feeds.

``threshold: float = setting(0.3, section="stream", check=number(0, 1, lo_open=True), help="...")`` is the setting's
whole declaration: its default (the field's default), its check, unit, help text, the config file's table that holds
it (``section``) and the commands whose flag sets it. :mod:`pipelines.config` walks the dataclasses' fields to build
the config file's key tables and their validation, :mod:`pipelines.flags` every command's flags (help with the
default and unit), :mod:`pipelines.settings_doc` ``docs/settings.md``; nothing else states a setting's default. A
command's own settings (``streamer bench``'s, ``train``'s: flags only, never config file keys) are declared the same
way, in :mod:`pipelines.bench.options`, :mod:`pipelines.learn.options` and :mod:`pipelines.cluster.options`. A field
without ``setting()`` metadata (queue sizes, backoff intervals) is internal: not in a config file, not a flag.

Where one value feeds several dataclasses (the hop: the sync's timestep and the source's segment alignment),
one field carries the setting and the others take :func:`default_of` it, filled from the config when built.

The checks turn a config file's value (or a flag's, parsed by :meth:`Check.parse`) into the field's value or
raise a one-line :class:`~streamer.errors.ConfigError` naming the key and what it allows. This module imports
nothing heavy: ``streamer --help`` builds every flag from it.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import MISSING, dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

from .errors import ConfigError

# "top": a key outside any table
SECTIONS = ("stream", "model", "device", "mqtt", "homeassistant", "clips", "tags", "top")
_KEY = "streamer.setting"  # where setting() keeps its Setting in a field's metadata

# The commands whose flags set a setting (pipelines.cli.main): those that open sources, those that run the
# analyzer, those that run it in this process (a cluster's workers serve no endpoint, write no events file and run
# until stopped: ``cluster run`` takes no flag for those), the learning commands, and ``cluster status`` /
# ``cluster stop`` (which find a site by its prefix).
CAPTURE = frozenset({"probe", "run", "demo", "cluster run"})
ANALYZE = frozenset({"run", "demo", "cluster run"})
IN_PROCESS = frozenset({"run", "demo"})
LEARN = frozenset({"calibrate", "train", "evaluate"})
CLUSTER_ADMIN = frozenset({"cluster status", "cluster stop"})


def fail(path: str, allowed: str, value: Any) -> ConfigError:
    return ConfigError(f"{path}: expected {allowed}, got {shown_value(value)}")


def shown_value(value: Any, limit: int = 80) -> str:
    """``value`` as an error line shows it: its repr, cut to ``limit`` characters (a command or a file may hold
    anything, of any size: the line stays one short line)."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


class Check:
    """``check(path, value)``: a value from a config file (or a parsed flag) as the setting holds it, or a
    ConfigError naming ``path``. ``allowed`` says what it accepts (errors, help, docs); :meth:`parse` reads a
    command-line word as a config file would hold it (ValueError when it cannot)."""

    allowed = "a value"
    flag_kind = "value"  # "switch": a flag without a value (sets true); "pairs": repeatable KEY=VALUE
    choices: tuple[str, ...] | None = None  # the words a flag takes, where it is a closed list
    metavar: str | None = None  # how a flag's value is shown in usage lines

    def __call__(self, path: str, value: Any) -> Any:
        return value

    def parse(self, text: str) -> Any:
        return text


@dataclass(frozen=True)
class _Number(Check):
    lo: float
    hi: float
    lo_open: bool

    @property
    def allowed(self) -> str:  # type: ignore[override]
        bound = f"> {self.lo:g}" if self.lo_open else f">= {self.lo:g}"
        return ("a number" + (f" {bound}" if self.lo > -math.inf else "")
                + (f" and <= {self.hi:g}" if self.hi < math.inf else ""))  # fmt: skip

    def __call__(self, path: str, value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float) or math.isnan(value):
            raise fail(path, self.allowed, value)
        if value < self.lo or value > self.hi or (self.lo_open and value == self.lo):
            raise fail(path, self.allowed, value)
        return float(value)

    metavar = "X"

    def parse(self, text: str) -> float:
        return float(text)


def number(lo: float = -math.inf, hi: float = math.inf, *, lo_open: bool = False) -> Check:
    return _Number(lo, hi, lo_open)


@dataclass(frozen=True)
class _Integer(Check):
    lo: int
    hi: int

    @property
    def allowed(self) -> str:  # type: ignore[override]
        return f"an integer from {self.lo} to {self.hi}"

    def __call__(self, path: str, value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or not self.lo <= value <= self.hi:
            raise fail(path, self.allowed, value)
        return value

    metavar = "N"

    def parse(self, text: str) -> int:
        return int(text)


def integer(lo: int, hi: int) -> Check:
    return _Integer(lo, hi)


class _Boolean(Check):
    allowed = "true or false"
    flag_kind = "switch"

    def __call__(self, path: str, value: Any) -> bool:
        if not isinstance(value, bool):
            raise fail(path, self.allowed, value)
        return value


boolean: Check = _Boolean()


class _String(Check):
    allowed = "a non-empty string"

    def __call__(self, path: str, value: Any) -> str:
        if not isinstance(value, str) or not value or "\0" in value:
            raise fail(path, self.allowed, value)
        return value


string: Check = _String()


@dataclass(frozen=True)
class _Choice(Check):
    options: tuple[str, ...]

    @property
    def allowed(self) -> str:  # type: ignore[override]
        return "one of " + ", ".join(self.options)

    @property
    def choices(self) -> tuple[str, ...]:  # type: ignore[override]
        return self.options

    def __call__(self, path: str, value: Any) -> str:
        if value not in self.options:
            raise fail(path, self.allowed, value)
        return str(value)


def choice(*options: str) -> Check:
    return _Choice(options)


class _Size(Check):
    allowed = 'WIDTHxHEIGHT such as "160x90"'

    def __call__(self, path: str, value: Any) -> tuple[int, int]:
        width, sep, height = str(value).lower().partition("x")
        if not isinstance(value, str) or not sep or not width.isdigit() or not height.isdigit():
            raise fail(path, self.allowed, value)
        return int(width), int(height)


size: Check = _Size()


class _OnOffAuto(Check):
    """true/false or "auto" (None: the program decides per source); on/off are the same as true/false, in a
    config file and on the command line alike."""

    allowed = 'true, false or "auto"'
    metavar = "{auto,true,false}"
    _WORDS: Mapping[str, bool | None] = {"auto": None, "true": True, "on": True, "false": False, "off": False}

    def __call__(self, path: str, value: Any) -> bool | None:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value in self._WORDS:
            return self._WORDS[value]
        raise fail(path, self.allowed, value)

    def parse(self, text: str) -> bool | str:
        word = text.lower()
        if word not in self._WORDS:
            raise ValueError(text)
        value = self._WORDS[word]
        return "auto" if value is None else value


on_off_auto: Check = _OnOffAuto()


class _StringTable(Check):
    allowed = "a table of option = value"
    flag_kind = "pairs"

    def __call__(self, path: str, value: Any) -> Mapping[str, str]:
        if not isinstance(value, Mapping) or not all(isinstance(v, str | int | float) for v in value.values()):
            raise fail(path, self.allowed, value)
        return MappingProxyType({str(k): str(v) for k, v in value.items()})


string_table: Check = _StringTable()


class _Labels(Check):
    """Tag labels (``person``, ``dog``, ``glass_shatter``): a list in a config file, comma-separated on a flag."""

    allowed = 'a list of labels of a-z, 0-9 and _ (such as ["person", "dog"])'
    metavar = "LABEL,..."

    def __call__(self, path: str, value: Any) -> tuple[str, ...]:
        if not isinstance(value, list | tuple) or not all(
            isinstance(v, str) and re.fullmatch(r"[a-z0-9_]+", v) for v in value
        ):
            raise fail(path, self.allowed, value)
        return tuple(dict.fromkeys(value))

    def parse(self, text: str) -> list[str]:
        return [word.strip() for word in text.split(",") if word.strip()]


labels: Check = _Labels()


class _ExistingFile(Check):
    allowed = "the path of a file"

    def __call__(self, path: str, value: Any) -> str:
        text = string(path, value)
        if not Path(text).expanduser().is_file():
            raise ConfigError(f"{path}: no such file: {text!r}")
        return str(Path(text).expanduser())


optional_path: Check = _ExistingFile()


class _OutputFile(Check):
    """A file the program will write: its folder must exist and be writable now, before any work starts, so a
    typo does not lose a run."""

    allowed = "the path of a file to write"

    def __call__(self, path: str, value: Any) -> Path:
        target = Path(string(path, str(value))).expanduser()
        folder = target.parent
        if target.is_dir():
            raise ConfigError(f"{path}: {str(target)!r} is a folder, not a file")
        if not folder.is_dir():
            raise ConfigError(f"{path}: cannot write {str(target)!r}: no such folder {str(folder)!r}")
        if not os.access(folder, os.W_OK | os.X_OK) or (target.exists() and not os.access(target, os.W_OK)):
            raise ConfigError(f"{path}: cannot write {str(target)!r}: permission denied")
        return target


output_file: Check = _OutputFile()


class _Folder(Check):
    """A folder the program will write into, made when needed (whether it can be written is told when it is
    used: a folder that cannot be written is one line at run time, not a refused start)."""

    allowed = "the path of a folder"

    def __call__(self, path: str, value: Any) -> Path:
        target = Path(string(path, str(value))).expanduser()
        if target.exists() and not target.is_dir():
            raise ConfigError(f"{path}: {str(target)!r} is a file, not a folder")
        return target


folder: Check = _Folder()


@dataclass(frozen=True, kw_only=True)
class Setting:
    """One setting, as :func:`setting` declares it on a dataclass field (``name``, ``default`` and ``owner`` are
    filled in by :func:`settings_of`)."""

    section: str  # the config file's table: one of SECTIONS
    check: Check
    help: str
    key: str = ""  # the config key (the field's name unless given)
    unit: str = ""  # of the config value: "ms", "s", "Hz"
    scale: float = 1.0  # config value = field value * scale (a field in seconds configured in ms: 1000)
    flag: str | None = None  # "--hop-ms"; None: "--" + key with dashes, when ``commands`` has any
    commands: frozenset[str] = frozenset()  # the commands taking the flag (CAPTURE, ANALYZE, LEARN, ...)
    metavar: str | None = None
    shown: str | None = None  # the default in words, where its value alone would not say it (a None default)
    file: bool = True  # a config file key (False: a flag only)
    live: bool = False  # changeable while running (over MQTT, pipelines.stages.control)
    name: str = ""
    default: Any = None
    owner: str = ""

    @property
    def option(self) -> str | None:
        """The command-line flag, or None."""
        if not self.commands:
            return None
        return self.flag or "--" + self.key.replace("_", "-")

    @property
    def off_option(self) -> str | None:
        """The flag that turns off a switch that is on by default (``--no-early-start``), or None."""
        option = self.option
        if option is None or self.check.flag_kind != "switch" or self.default is not True:
            return None
        return "--no-" + option.removeprefix("--")

    @property
    def config_default(self) -> Any:
        """The default as a config file writes it (in the setting's unit)."""
        return self.to_config(self.default)

    def to_config(self, value: Any) -> Any:
        if self.scale != 1 and isinstance(value, int | float) and not isinstance(value, bool):
            return round(value * self.scale, 9)
        return value

    def to_field(self, value: Any) -> Any:
        """A checked config value as the field holds it."""
        if self.scale != 1 and isinstance(value, int | float) and not isinstance(value, bool):
            return value / self.scale
        return value

    @property
    def default_value(self) -> str | None:
        """The default as a config file writes it ("100", "160x90", "true"), or in words where it is no value;
        None when there is nothing to say."""
        if self.shown is not None:
            return self.shown
        return None if self.default is None else show(self.config_default)

    @property
    def default_text(self) -> str | None:
        """The default with its unit, as help texts say it: "100 ms", "160x90", "auto: on for live sources"."""
        value = self.default_value
        return value + f" {self.unit}" if value is not None and self.unit and self.shown is None else value


def show(value: Any) -> str:
    """A value as a config file writes it: ``0.5``, ``true``, ``160x90``, ``streamer``."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, tuple) and len(value) == 2 and all(isinstance(v, int) for v in value):
        return f"{value[0]}x{value[1]}"
    return str(value)


def setting(
    default: Any = None,
    *,
    section: str,
    check: Check,
    help: str,  # argparse's word
    key: str = "",
    unit: str = "",
    scale: float = 1.0,
    flag: str | None = None,
    commands: frozenset[str] = frozenset(),
    metavar: str | None = None,
    shown: str | None = None,
    file: bool = True,
    live: bool = False,
    factory: Callable[[], Any] | None = None,
    repr: bool = True,  # dataclasses.field's word
) -> Any:
    """A dataclass field holding a setting: ``default`` (or ``factory()``) and what :class:`Setting` says."""
    if section not in SECTIONS:
        raise ValueError(f"section {section!r}: expected one of {', '.join(SECTIONS)}")
    meta = {_KEY: Setting(section=section, check=check, help=help, key=key, unit=unit, scale=scale, flag=flag,
                          commands=commands, metavar=metavar, shown=shown, file=file, live=live)}  # fmt: skip
    if factory is not None:
        return dataclasses.field(default_factory=factory, metadata=meta, repr=repr)
    return dataclasses.field(default=default, metadata=meta, repr=repr)


def command_setting(default: Any, commands: frozenset[str], **declared: Any) -> Any:
    """A setting of a command of its own (a benchmark, the learning and cluster commands): a flag only, in no
    config file table."""
    return setting(default, section="top", file=False, commands=commands, **declared)


@functools.cache
def settings_of(cls: type) -> tuple[Setting, ...]:
    """The settings ``cls`` declares, in field order (a dataclass's fields never change: walked once)."""
    found = []
    for f in dataclasses.fields(cls):
        declared = f.metadata.get(_KEY)
        if isinstance(declared, Setting):
            factory: Callable[[], Any] = f.default_factory  # type: ignore[assignment]
            value = f.default if f.default is not MISSING else factory()
            found.append(dataclasses.replace(declared, name=f.name, key=declared.key or f.name, default=value,
                                             owner=cls.__name__))  # fmt: skip
    return tuple(found)


def setting_of(cls: type, name: str) -> Setting:
    """The setting of field ``name`` of ``cls``."""
    for s in settings_of(cls):
        if s.name == name:
            return s
    raise KeyError(f"{cls.__name__}.{name} is not a setting")


def default_of(cls: type, name: str, *, as_configured: bool = False) -> Any:
    """The default of ``cls``'s setting ``name``, for a field elsewhere that the setting feeds (its one home
    stays ``cls``); ``as_configured``: in the setting's config unit (ms for ``hop``)."""
    s = setting_of(cls, name)
    return s.config_default if as_configured else s.default


def field_values(cls: type, sections: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """Keyword arguments for ``cls`` from checked config values by section and key (absent keys: the defaults)."""
    values: dict[str, Any] = {}
    for s in settings_of(cls):
        table = sections.get(s.section, {})
        if s.key in table:
            values[s.name] = s.to_field(table[s.key])
    return values
