"""The settings schema: one declaration per setting, from which the config file's keys, every command's flags,
their help and docs/settings.md derive, and which no other line of the packages restates.

Also the command line's settings defects of issue 28: help that disagreed with the program, flags a command
accepted and ignored, a mistyped flag shown with the wrong usage, output paths checked only once written, the
model file loaded twice, /metrics on every interface by default.
"""

from __future__ import annotations

import argparse
import ast
import inspect
import math
import re
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from pipelines.bench.options import OPTIONS as BENCH_OPTIONS
from pipelines.cli.main import build_parser, parse_args
from pipelines.cluster.options import ClusterOptions
from pipelines.config import SCHEMA, SETTINGS, ModelConfig, build_config, configure, load_model, section_settings
from pipelines.flags import flag_help, flag_settings, flag_values, values_from
from pipelines.learn.options import LearnOptions, TrainOptions
from pipelines.settings_doc import settings_markdown
from streamer.errors import ConfigError
from streamer.settings import Setting, settings_of, show

ROOT = Path(__file__).resolve().parents[1]
STREAMER = [sys.executable, "-m", "pipelines.cli.main"]
PACKAGES = ("streamer", "pipelines", "models")

# The commands' own settings, flags only (never config file keys): the benchmarks', the learning commands' and
# the cluster's
COMMAND_OPTIONS: tuple[type, ...] = (*BENCH_OPTIONS, LearnOptions, TrainOptions, ClusterOptions)
COMMAND_SETTINGS: tuple[Setting, ...] = tuple(s for cls in COMMAND_OPTIONS for s in settings_of(cls))
POSITIONAL = {"calibrate": ["data"], "train": ["data"], "evaluate": ["data"]}  # what a command needs besides flags


# -- the schema and what derives from it ---------------------------------------------------------------------


def test_each_key_is_declared_once_per_section_and_every_flag_once_per_command() -> None:
    seen: set[tuple[str, str]] = set()
    for s in SETTINGS:
        assert (s.section, s.key) not in seen, f"{s.section}.{s.key} declared twice"
        seen.add((s.section, s.key))
        assert s.help and s.check is not None
    commands = {c for s in (*SETTINGS, *COMMAND_SETTINGS) for c in s.commands}
    for command in commands:
        options = [s.option for s in (*flag_settings(command), *COMMAND_SETTINGS) if command in s.commands]
        assert len(options) == len(set(options)), command


def test_a_model_setting_whose_home_is_the_capture_side_reaches_the_model_under_its_key() -> None:
    """luma_size, sample_rate, context_ms: declared on SourceOptions/SyncOptions, held by ModelConfig too."""
    model = ModelConfig()
    for key, s in section_settings("model").items():
        assert s.to_config(s.default) == getattr(model, key), key


def subparsers(parser: argparse.ArgumentParser, path: str = "") -> Iterator[tuple[str, argparse.ArgumentParser]]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                command = f"{path} {name}".strip()
                yield command, sub
                yield from subparsers(sub, command)


def options_of(parser: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    return {option: a for a in parser._actions for option in a.option_strings}


def test_every_flag_says_the_default_the_program_uses() -> None:
    """Every setting's flag (the analyzer's, a benchmark's, a learning command's) is made from its declaration:
    its help is the setting's with "(default X unit)", and it is None unless given, so what the program uses
    when it is not given is that default (or the config file's value). Every declared flag is on its command; any
    other flag that states a default states its own. (--min-gap said 0.3 where the default is 0.5.)"""
    by_option = {s.option: s for s in SETTINGS if s.option}
    declared = {(command, s.option) for s in (*SETTINGS, *COMMAND_SETTINGS) for command in s.commands}
    checked: set[tuple[str, str | None]] = set()
    for command, sub in subparsers(build_parser()):
        ours = {s.option: s for s in (*flag_settings(command), *COMMAND_SETTINGS) if command in s.commands}
        for option, action in options_of(sub).items():
            if isinstance(action, argparse.BooleanOptionalAction) and option.startswith("--no-"):
                continue  # a default-on switch's off form: its --X is checked
            stated = re.search(r"\(default ([^)]*)\)", action.help or "")
            if option in ours:
                assert action.help == flag_help(ours[option]).replace("%", "%%"), (command, option)
                assert action.default is None, (command, option)  # not given: the default it states applies
                text = ours[option].default_text
                if text is not None and action.const is not True:  # a switch's default (off) goes unsaid
                    assert stated is not None and stated.group(1) == text, (command, option, action.help)
                checked.add((command, option))
            elif stated is not None:
                expected = by_option[option].default_text if option in by_option else show(action.default)
                assert stated.group(1) == expected, (command, option, action.help)
    assert checked == declared, declared ^ checked
    assert {c for c, _ in checked} >= {"run", "bench latency", "bench throughput", "train", "evaluate"}
    min_gap = options_of(dict(subparsers(build_parser()))["calibrate"])["--min-gap"]
    assert min_gap.help is not None and min_gap.help.endswith("(default 0.6 s)")


@pytest.mark.parametrize("cls", COMMAND_OPTIONS, ids=lambda cls: cls.__name__)
def test_a_commands_own_flag_given_the_default_it_states_gives_that_default(cls: type) -> None:
    """The word a flag's help states as its default reads back as the dataclass's default; a flag not given
    gives nothing, so the dataclass's default applies (a switch, such as --detach, states none: it turns on)."""
    for s in settings_of(cls):
        for command in s.commands:
            bare = [*command.split(), *POSITIONAL.get(command, [])]
            assert values_from(parse_args(build_parser(), bare), cls) == {}, command
            if s.default is not None and s.default_value is not None and s.check.flag_kind != "switch":
                args = parse_args(build_parser(), [*bare, str(s.option), s.default_value])
                assert values_from(args, cls) == {s.name: s.default}, (command, s.option)


def test_values_from_reads_each_setting_under_its_flags_dest() -> None:
    args = argparse.Namespace(parallel=3, hop_ms=50.0, fusion=None)
    assert values_from(args, LearnOptions) == {"parallel": 3}
    assert values_from(args, TrainOptions) == {}  # --fusion not given
    assert values_from(argparse.Namespace(), TrainOptions) == {}


@pytest.mark.parametrize(
    ("argv", "error"),
    [
        (["bench", "latency", "--audio-frame-ms", "15"], "argument --audio-frame-ms: expected one of 10, 20, 40, 60, "
         "got '15'"),
        (["bench", "latency", "--threshold", "2"], "argument --threshold: expected a number > 0 and <= 1, got '2'"),
        (["bench", "capacity", "--start", "0"], "argument --start: expected an integer from 1 to 4096, got '0'"),
        (["bench", "throughput", "--streams", "0,1"], "argument --streams: expected stream counts like 1,2,4,8, "
         "got '0,1'"),
        (["bench", "latency", "--size", "wide"], "argument --size: expected WIDTHxHEIGHT such as \"160x90\", got "
         "'wide'"),
        (["bench", "capacity", "--device", "gpu"], "argument --device: expected auto, cpu, cuda or cuda:N, got 'gpu'"),
        (["train", "data", "--epochs", "0"], "argument --epochs: expected an integer from 1 to 1000000, got '0'"),
        (["train", "data", "--lr", "-1"], "argument --lr: expected a number > 0, got '-1'"),
        (["train", "data", "--val-fraction", "2"], "argument --val-fraction: expected a number > 0 and <= 1, got '2'"),
        (["train", "data", "--fusion", "big"], "argument --fusion: expected one of weighted, late, mid, attention, "
         "got 'big'"),
        (["evaluate", "data", "--parallel", "x"], "argument --parallel: expected an integer from 1 to 256, got 'x'"),
    ],
)  # fmt: skip
def test_a_commands_own_flag_is_checked_as_it_is_read(
    argv: list[str], error: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """A benchmark's or a learning command's flag (no config file under it): a bad value is a usage error of its
    command naming the flag, before any work."""
    with pytest.raises(SystemExit) as info:
        parse_args(build_parser(), argv)
    assert info.value.code == 2
    command = " ".join(argv[:2] if argv[0] == "bench" else argv[:1])
    err = capsys.readouterr().err
    assert err.startswith(f"usage: streamer {command} ")
    assert err.strip().splitlines()[-1] == f"streamer {command}: error: {error}"


HEAVY = ("torch", "av", "cv2", "matplotlib", "aiomqtt", "ray")  # the decoders, the model, the plots, MQTT, Ray


@pytest.mark.parametrize("argv", [["--help"], ["bench", "--help"], ["bench", "latency", "--help"],
                                  ["bench", "capacity", "--help"], ["bench", "throughput", "--help"],
                                  ["train", "--help"], ["evaluate", "--help"]])  # fmt: skip
def test_help_builds_every_flag_without_heavy_imports(argv: list[str]) -> None:
    """``streamer ... --help`` makes its flags from the declarations without the decoders, torch, matplotlib, aiomqtt
    or Ray."""
    code = (
        "import sys, pipelines.cli.main as m\n"
        f"try:\n    m.main({argv!r})\nexcept SystemExit:\n    pass\n"
        f"sys.exit(3 if any(name in sys.modules for name in {HEAVY!r}) else 0)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("usage: streamer")


def test_the_settings_reference_is_generated_from_the_schema() -> None:
    """docs/settings.md: regenerate with `python -m pipelines.settings_doc --markdown > docs/settings.md`. Its
    intro names where the commands' own settings (not in it) are declared."""
    assert (ROOT / "docs" / "settings.md").read_text(encoding="utf-8") == settings_markdown()
    done = subprocess.run([sys.executable, "-m", "pipelines.settings_doc", "--markdown"], capture_output=True,
                          text=True, cwd=ROOT, timeout=60)  # fmt: skip
    assert done.returncode == 0 and done.stdout == settings_markdown()
    for s in SETTINGS:
        assert f"`{s.key}`" in done.stdout
    for cls in COMMAND_OPTIONS:
        assert f"`{Path(inspect.getfile(cls)).relative_to(ROOT)}`" in done.stdout, cls.__name__
    assert "`streamer COMMAND --help`" in done.stdout


def test_flags_and_the_config_file_take_the_same_words(tmp_path: Path) -> None:
    """fast_decode and low_latency: true/false/"auto" (or on/off) in a config file and on the command line."""
    parser = build_parser()
    for word, value in (("true", True), ("on", True), ("false", False), ("off", False), ("auto", None)):
        args = parse_args(parser, ["run", "a.mp4", "--fast-decode", word, "--low-latency", word])
        (stream,) = configure(None, sources=["a.mp4"], flags=flag_values(args, "run")).streams
        assert (stream.source.fast_decode, stream.source.low_latency) == (value, value), word
        config = tmp_path / "c.toml"
        toml_word = word if word in ("true", "false") else f'"{word}"'
        config.write_text(f"[defaults]\nfast_decode = {toml_word}\nlow_latency = {toml_word}\n")
        (stream,) = configure(tomllib.loads(config.read_text()), sources=["a.mp4"]).streams
        assert (stream.source.fast_decode, stream.source.low_latency) == (value, value), word


IN_PROCESS_ONLY = ("--ui", "--metrics", "--events-out", "--duration")  # a cluster's workers use none of them


@pytest.mark.parametrize(("flag", "value"), [("--ui", ":8080"), ("--metrics", ":9108"),
                                             ("--events-out", "events.jsonl"), ("--duration", "5")])  # fmt: skip
def test_help_lists_only_sources_that_work_and_cluster_run_takes_no_web_flags(
    flag: str, value: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """srt:// is not in this FFmpeg (README); cluster run used to accept --ui and --metrics and ignore them, and
    --events-out (its workers write no events file) and --duration (refused once parsed): the flags a cluster's
    workers do not honour are not among its flags."""
    commands = dict(subparsers(build_parser()))
    for command in ("run", "cluster run", "probe", "demo"):
        assert "srt://" not in commands[command].format_help()
    for command in ("run", "demo"):
        assert set(IN_PROCESS_ONLY) <= set(options_of(commands[command])), command
    assert not set(IN_PROCESS_ONLY) & set(options_of(commands["cluster run"]))
    with pytest.raises(SystemExit) as info:
        parse_args(build_parser(), ["cluster", "run", "a.mp4", flag, value])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: streamer cluster run") and f"unrecognized arguments: {flag}" in err


def test_a_mistyped_flag_shows_the_usage_of_its_command() -> None:
    done = subprocess.run([*STREAMER, "run", "--thresold", "0.5", "x.mp4"], capture_output=True, text=True,
                          timeout=60)  # fmt: skip
    assert done.returncode == 2
    assert done.stderr.startswith("usage: streamer run ")
    assert done.stderr.strip().splitlines()[-1] == "streamer run: error: unrecognized arguments: --thresold"


def test_metrics_listen_on_localhost_unless_a_host_is_given() -> None:
    config = build_config(None, sources=["a.mp4"], extra_flags={"metrics": ":9108", "ui": "8080"})
    assert (str(config.metrics), str(config.ui)) == ("127.0.0.1:9108", "127.0.0.1:8080")
    config = build_config(None, sources=["a.mp4"], extra_flags={"metrics": "0.0.0.0:9108"})
    assert str(config.metrics) == "0.0.0.0:9108"


def test_a_model_file_is_loaded_once_while_it_stays_the_same(tmp_path: Path) -> None:
    """The config reads --model for its threshold and the inference stage for its head: one load, not two."""
    from models.heads import Checkpoint, make_head, save_checkpoint

    path = tmp_path / "model.pt"
    save_checkpoint(path, Checkpoint(make_head("weighted"), 0.4))
    config = build_config(None, sources=["a.mp4"], model_flags={"checkpoint": str(path)})
    assert config.streams[0].events.threshold == pytest.approx(0.4)
    first = load_model(str(path))
    assert load_model(str(path)) is first
    save_checkpoint(path, Checkpoint(make_head("weighted"), 0.6))  # a new model in its place: read again
    assert load_model(str(path)) is not first and load_model(str(path)).threshold == pytest.approx(0.6)


# -- output paths: checked before any work starts -----------------------------------------------------------


def one_line_usage_error(done: subprocess.CompletedProcess[str], flag: str) -> None:
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"streamer: error: {flag}: cannot write "), done.stderr
    assert "no such folder '/nonexistent" in lines[0]


def test_events_out_into_a_missing_folder_is_refused_before_anything_starts() -> None:
    done = subprocess.run([*STREAMER, "run", "synthetic:?duration=1", "--mqtt", "none", "--events-out",
                           "/nonexistent/dir/x.jsonl"], capture_output=True, text=True, timeout=60)  # fmt: skip
    one_line_usage_error(done, "--events-out")


def test_evaluate_and_bench_reports_into_a_missing_folder_are_refused_before_the_work(tmp_path: Path) -> None:
    from .labeled_data import make_clips, write_labels

    make_clips(tmp_path)
    write_labels(tmp_path, names=["porch"])
    done = subprocess.run([*STREAMER, "evaluate", str(tmp_path), "--device", "cpu", "--json", "/nonexistent/x.json"],
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    one_line_usage_error(done, "--json")
    done = subprocess.run([*STREAMER, "evaluate", str(tmp_path), "--device", "cpu", "--plot", "/nonexistent/x.png"],
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    one_line_usage_error(done, "--plot")
    done = subprocess.run([*STREAMER, "bench", "throughput", "--streams", "1", "--repeats", "1", "--seconds", "1",
                           "--device", "cpu", "--json", "/nonexistent/x.json"], capture_output=True, text=True,
                          timeout=120)  # fmt: skip
    one_line_usage_error(done, "--json")


def test_a_flag_value_is_checked_as_the_config_files_naming_the_flag() -> None:
    with pytest.raises(ConfigError, match=r"^--alpha: expected a number >= 0, got -1.0$"):
        configure(None, sources=["a.mp4"], flags={"stream": {"alpha": -1.0}})
    with pytest.raises(ConfigError, match=r"^--duration: expected a number > 0"):
        configure(None, sources=["a.mp4"], flags={"top": {"duration": 0.0}})


# -- no default written twice -----------------------------------------------------------------------------------
#
# What the check finds, in the .py files of streamer/, pipelines/ and models/ (not tests or benchmarks, which
# may spell out the values they test), for every setting whose default is not trivial (None, a boolean, 0, 1; a
# number counts even when it is 0 or 1 for a setting named in several words, such as workers_per_node: a name that
# specific ties even a common value to it):
# a literal equal to the setting's default (in the field's unit or the config file's: 0.1 or 100 for the hop)
# * as the default of a function parameter, a dataclass field or a module constant named like the setting
#   (its field name or key, without a unit suffix: hop, hop_ms, HOP_S; context, context_ms; prefix);
# * as a keyword argument named like it (``FusionModel(hop=0.1)``);
# * as the fallback of ``.get(key, x)`` / ``.pop(key, x)`` / ``getattr(o, key, x)`` for the setting's key;
# * in a hand-written flag named like it: its ``default=`` or a help text that states a default;
# and, anywhere outside their home, the literals that mean nothing else: the sample rate 16000, the luma size
# (160, 90) / "160x90", the MQTT port 1883 and the default broker URL. Docstrings and comments may describe the
# defaults; the declaration itself (``setting(0.1, ...)``) is a call's positional argument and not matched.
# Not checked: defaults computed in expressions (``100.0 + margin``), which name matching cannot tie to a setting.

UNIT_SUFFIXES = ("_ms", "_s", "_hz", "_seconds")


def names_of(s: Setting) -> set[str]:
    out = set()
    for name in (s.name, s.key):
        name = name.lower()
        out.add(name)
        for suffix in UNIT_SUFFIXES:
            if name.endswith(suffix):
                out.add(name.removesuffix(suffix))
    return out


def normalized(name: str) -> set[str]:
    name = name.lower().lstrip("-").replace("-", "_")
    return {name} | {name.removesuffix(suffix) for suffix in UNIT_SUFFIXES if name.endswith(suffix)}


def trivial(value: Any) -> bool:
    return value is None or isinstance(value, bool) or (isinstance(value, int | float) and value in (0, 1, -1))


def values_of(s: Setting) -> list[Any]:
    specific = "_" in s.name  # workers_per_node = 1 is its default restated; seed = 0 may be any seed

    def counts(v: Any) -> bool:
        if trivial(v):
            return specific and isinstance(v, int | float) and not isinstance(v, bool)
        return not (isinstance(v, str) and not v) and not hasattr(v, "keys")

    return [v for v in (s.default, s.config_default) if counts(v)]


def same(a: Any, b: Any) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return False
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):  # a flag's default=[1, 2, 4, 8]
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, int | float) and isinstance(b, int | float):
        return math.isclose(a, b, rel_tol=1e-9)
    return type(a) is type(b) and a == b


def rendered(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, tuple) and all(isinstance(v, int) for v in value):
        return [show(value), ",".join(map(str, value))]  # stream counts: "1,2,4,8"
    return [show(value)]


UNAMBIGUOUS: dict[Any, str] = {}  # literal -> the module that is its home (filled below from the schema)


@dataclass(frozen=True)
class Restatement:
    path: str
    line: int
    what: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.what}"


def literal(node: ast.AST | None) -> Any:
    if node is None:
        return None
    try:
        return ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return None


def docstrings(tree: ast.AST) -> set[int]:
    """ids of the string constants that are docstrings."""
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                out.add(id(body[0].value))
    return out


class Finder(ast.NodeVisitor):
    """Walks one module for the restatements described above."""

    def __init__(self, rel: str, settings: tuple[Setting, ...], homes: dict[Any, set[str]], tree: ast.AST) -> None:
        self.rel, self.homes, self.found = rel, homes, list[Restatement]()
        self.skip = docstrings(tree)
        self.by_name: dict[str, list[tuple[Setting, Any]]] = {}
        for s in settings:
            for value in values_of(s):
                for name in names_of(s):
                    self.by_name.setdefault(name, []).append((s, value))

    def hit(self, node: ast.AST, what: str) -> None:
        self.found.append(Restatement(self.rel, getattr(node, "lineno", 0), what))

    def matches(self, name: str, node: ast.AST | None) -> Setting | None:
        """The setting named ``name`` whose default ``node`` (a literal) is, if any."""
        value = literal(node)
        if value is None or isinstance(value, bool):  # a trivial number matches only a setting that counts it
            return None
        for n in normalized(name):
            for s, v in self.by_name.get(n, ()):
                if same(v, value):
                    return s
        return None

    def check(self, name: str, node: ast.AST | None, where: str) -> None:
        if node is not None and (s := self.matches(name, node)) is not None:
            self.hit(node, f"{where} {name}={ast.unparse(node)} restates {s.owner}.{s.name}")

    def visit_FunctionDef(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        a = node.args
        positional = a.posonlyargs + a.args
        for arg, default in zip(positional[len(positional) - len(a.defaults) :], a.defaults, strict=True):
            self.check(arg.arg, default, "parameter")
        for arg, kw_default in zip(a.kwonlyargs, a.kw_defaults, strict=True):
            self.check(arg.arg, kw_default, "parameter")
        self.generic_visit(node)

    visit_AsyncFunctionDef = visit_FunctionDef

    def visit_AnnAssign(self, node: ast.AnnAssign) -> None:
        if isinstance(node.target, ast.Name):
            self.check(node.target.id, node.value, "field or constant")
        self.generic_visit(node)

    def visit_Assign(self, node: ast.Assign) -> None:
        if len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            self.check(node.targets[0].id, node.value, "constant")
        self.generic_visit(node)

    def visit_Call(self, node: ast.Call) -> None:
        func = node.func
        called = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""
        for kw in node.keywords:
            if kw.arg is not None and kw.arg not in ("default", "help"):
                self.check(kw.arg, kw.value, f"{called}(...)")
        key = literal(node.args[-2]) if len(node.args) >= 2 else None
        if called in ("get", "pop", "getattr", "setdefault") and isinstance(key, str):
            self.check(key, node.args[-1], f"{called}() fallback of")
        flag = literal(node.args[0]) if node.args else None
        if called == "add_argument" and isinstance(flag, str):
            keywords = {kw.arg: kw.value for kw in node.keywords if kw.arg}
            self.check(flag, keywords.get("default"), "the default of flag")
            text = literal(keywords.get("help"))
            for n in normalized(flag) if isinstance(text, str) else ():
                for s, v in self.by_name.get(n, ()):
                    if any(re.search(rf"(?<![\w.]){re.escape(r)}(?![\w]|\.\d)", str(text)) for r in rendered(v)):
                        self.hit(node, f"flag {flag}'s help states {s.owner}.{s.name}'s default")
        self.generic_visit(node)

    def visit_Constant(self, node: ast.Constant) -> None:
        self.unambiguous(node)

    def visit_Tuple(self, node: ast.Tuple) -> None:
        self.unambiguous(node)
        self.generic_visit(node)

    def unambiguous(self, node: ast.Constant | ast.Tuple) -> None:
        if id(node) in self.skip:
            return
        value = literal(node)
        for meaning, home in self.homes.items():
            if self.rel not in home and same(value, meaning):
                self.hit(node, f"{ast.unparse(node)} outside {', '.join(sorted(home))}")


def restatements(
    root: Path, settings: tuple[Setting, ...], homes: dict[Any, set[str]], *, within: tuple[str, ...] = PACKAGES
) -> list[Restatement]:
    """Every place in ``root``'s packages (those of its paths that start with one of ``within``) that restates a
    setting's default (see the comment above)."""
    found: list[Restatement] = []
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            if not str(path.relative_to(root)).startswith(within):
                continue
            tree = ast.parse(path.read_text(encoding="utf-8"))
            finder = Finder(str(path.relative_to(root)), settings, homes, tree)
            finder.visit(tree)
            found += finder.found
    return sorted(set(found), key=lambda r: (r.path, r.line, r.what))


def unambiguous_homes() -> dict[Any, set[str]]:
    """The literals that mean nothing but a setting's default, and the modules allowed to write them."""
    from pipelines import config
    from streamer import options, sync

    def rel(module: Any) -> str:
        return str(Path(module.__file__).relative_to(ROOT))

    return {
        16000: {rel(sync)},
        (160, 90): {rel(options)},
        "160x90": {rel(options)},
        1883: {rel(config)},
        config.DEFAULT_MQTT_URL: {rel(config)},
    }


# Restatements in files owned elsewhere, still to be cleared (then delete the entry):
# restatements kept on purpose: silero-vad's own input rate, which the analysis's sample_rate does not set
ALLOWED: set[tuple[str, str]] = {("models/speech.py", "16000 outside streamer/sync.py")}


def test_no_default_is_written_twice() -> None:
    found = [r for r in restatements(ROOT, SETTINGS, unambiguous_homes()) if (r.path, r.what) not in ALLOWED]
    assert not found, "defaults restated outside the schema:\n" + "\n".join(map(str, found))


def test_the_restatement_check_finds_what_it_looks_for(tmp_path: Path) -> None:
    """The check can fail: each kind of restatement, written into a scratch package, is found."""
    package = tmp_path / "pipelines"
    package.mkdir()
    (package / "bad.py").write_text(
        "from dataclasses import dataclass\n"
        "HOP_S = 0.1\n"
        "def f(hop: float = 0.1, *, threshold: float = 0.3) -> None: ...\n"
        "@dataclass\nclass C:\n    min_gap: float = 0.6\n"
        "def g(v: dict) -> None:\n    v.pop('hop_ms', 100.0), v.get('prefix', 'streamer'), h(sample=16000)\n"
        "def h(p) -> None:\n    p.add_argument('--min-gap', type=float, help='seconds (default 0.6)')\n"
        "    p.add_argument('--max-batch', type=int, default=64)\n"
        "    FusionModel(tau=10.0, luma=(160, 90), port=1883)\n"
        "x = 0.1 + 1\nlevel = 0.3\nlogger = 'streamer'\n",  # unrelated: not found
    )
    found = {(r.line, r.what) for r in restatements(tmp_path, SETTINGS, unambiguous_homes())}
    lines = sorted({line for line, _ in found})
    assert lines == [2, 3, 6, 8, 10, 11, 12], found
    assert len([f for f in found if f[0] == 3]) == 2 and len([f for f in found if f[0] == 12]) == 3, found


# The commands' own settings (flags only) are looked for where they may be restated. The learning commands'
# (pipelines/learn/options.py) in every package. The benchmarks' (pipelines/bench/options.py) where their command
# is read (pipelines/cli) and in their own benchmark's modules: their names mean other things elsewhere (the
# synthetic source's fps, the throughput clip's 720p30). The impulse server is no such module: a program of its own
# under Debian's python3, importing nothing of the project, whose flags the benchmark always gives. The cluster's
# (pipelines/cluster/options.py) where its command is read and in pipelines/cluster: an address or an interval
# means other things elsewhere. The analyzer's settings a benchmark takes (hop, device, threshold...) are the
# schema's, checked above.
_LIVE_BENCH = ("pipelines/cli", "pipelines/bench/latency.py", "pipelines/bench/capacity.py",
               "pipelines/bench/decode_client.py")  # fmt: skip
COMMAND_SCOPES: dict[str, tuple[str, ...]] = {
    "LatencyOptions": _LIVE_BENCH,
    "CapacityOptions": _LIVE_BENCH,
    "ThroughputOptions": ("pipelines/cli", "pipelines/bench/throughput.py"),
    "LearnOptions": PACKAGES,
    "TrainOptions": PACKAGES,
    "ClusterOptions": ("pipelines/cli", "pipelines/cluster"),
}


def command_restatements(root: Path, options: tuple[type, ...] = COMMAND_OPTIONS) -> list[Restatement]:
    found: list[Restatement] = []
    for cls in options:
        found += restatements(root, settings_of(cls), {}, within=COMMAND_SCOPES[cls.__name__])
    return found


def test_no_command_default_is_written_twice() -> None:
    """On bf1735c this found 51 lines for the benchmarks: every bench flag's argparse default and "(default X)"
    help in pipelines/cli.py and throughput's own main(), and LatencyOptions', CapacityOptions' and
    run_throughput's own defaults; and for the learning commands ``train``'s flags (``--epochs 2000``, ``--lr
    0.05``, ...), ``--parallel 4`` and ``extract(parallel=4)``; and at f567bd9 13 lines for the cluster: the flags of
    ``cluster run``, ``status`` and ``stop`` in pipelines/cli/main.py, ClusterDriver's fields and StreamWorker's
    ``checkpoint_s``."""
    assert set(COMMAND_SCOPES) == {cls.__name__ for cls in COMMAND_OPTIONS}
    found = command_restatements(ROOT)
    assert not found, "command defaults restated outside their options module:\n" + "\n".join(map(str, found))


def test_the_benchmark_check_finds_what_it_looks_for(tmp_path: Path) -> None:
    """The bench flags as bf1735c wrote them, in a scratch tree: each restatement is found."""
    (tmp_path / "pipelines" / "bench").mkdir(parents=True)
    (tmp_path / "pipelines" / "cli.py").write_text(
        "def add(latency, throughput, capacity) -> None:\n"
        "    latency.add_argument('--impulses', type=int, default=50, help='impulses to measure (default 50)')\n"
        "    latency.add_argument('--size', metavar='WxH', help='picture size (640x360)')\n"
        "    throughput.add_argument('--streams', default=[1, 2, 4, 8], help='counts, default 1,2,4,8')\n"
        "    capacity.add_argument('--start', type=int, help='first N tried (8); doubles, then bisects')\n"
        "    latency.add_argument('--workdir', help='default: a temp dir')\n",  # no default: not found
    )
    (tmp_path / "pipelines" / "bench" / "capacity.py").write_text("class CapacityOptions:\n    step: int = 4\n")
    (tmp_path / "pipelines" / "bench" / "throughput.py").write_text(
        "def run_throughput(media, streams, *, repeats: int = 3, seconds: float = 20.0) -> None: ...\n"
        "def make_clip(path, seconds, fps: int = 30) -> None: ...\n"  # the clip's own: latency's fps is not here
    )
    found = {(r.path, r.line) for r in command_restatements(tmp_path, BENCH_OPTIONS)}
    cli, bench = "pipelines/cli.py", "pipelines/bench"
    assert found == {(cli, 2), (cli, 3), (cli, 4), (cli, 5), (f"{bench}/capacity.py", 2),
                     (f"{bench}/throughput.py", 1)}, found  # fmt: skip
    both = [r for r in command_restatements(tmp_path, BENCH_OPTIONS) if r.path == cli and r.line in (2, 4)]
    assert len(both) == 4, both  # the default and the help


# What pipelines/cli.py, learn/train.py and learn/extract.py held before (bf1735c), each a restatement to find
LEARN_OPTIONS = (LearnOptions, TrainOptions)
OLD_LEARN = [
    "sub.add_argument('--parallel', type=int, default=4, help='recordings decoded at once')",
    "sub.add_argument('--parallel', type=int, help='recordings decoded at once (default 4)')",
    "train.add_argument('--fusion', choices=FUSIONS, default='weighted', help='the fusion head')",
    "train.add_argument('--out', type=Path, help='checkpoint to write (fusion.pt)')",
    "train.add_argument('--epochs', type=int, default=2000)",
    "train.add_argument('--patience', type=int, default=100, help='stop after this many epochs')",
    "train.add_argument('--lr', type=float, help=\"Adam's learning rate (0.05)\")",
    "train.add_argument('--val-fraction', type=float, default=0.25)",
    "async def extract(dataset, *, parallel: int = 4) -> None: ...",
    "class TrainOptions:\n    epochs: int = 2000",
]


def learning_restatements_in(tmp_path: Path, source: str) -> list[str]:
    (tmp_path / "pipelines").mkdir()
    (tmp_path / "pipelines" / "old.py").write_text(source + "\n")
    return [r.what for r in command_restatements(tmp_path, LEARN_OPTIONS)]


@pytest.mark.parametrize("source", OLD_LEARN)
def test_the_check_finds_each_learning_default_as_it_was_written(tmp_path: Path, source: str) -> None:
    assert len(learning_restatements_in(tmp_path, source)) == 1, source


def test_the_learning_check_leaves_other_values_alone(tmp_path: Path) -> None:
    """Another value under the same name, or the seed's 0 (too common a value to tie to a setting)."""
    assert not learning_restatements_in(tmp_path, "epochs = 20\nseed = 0\nf(lr=0.1, parallel=8)\n")


# What pipelines/cli/main.py, cluster/driver.py and cluster/worker.py held before ClusterOptions, each a restatement
OLD_CLUSTER = [
    "run.add_argument('--workers-per-node', type=int, default=1, metavar='N', help='analyzer workers per node')",
    "run.add_argument('--workers-per-node', type=int, metavar='N', help='analyzer workers per node (1)')",
    "run.add_argument('--worker-cpus', type=float, default=1.0, metavar='C', help='CPUs Ray reserves per worker')",
    "run.add_argument('--worker-cpus', type=float, metavar='C', help='CPUs Ray reserves per worker (1)')",
    "run.add_argument('--checkpoint-s', type=float, default=5.0, metavar='S')",
    "run.add_argument('--checkpoint-s', type=float, metavar='S', help='seconds between checkpoints (5)')",
    "action.add_argument('--address', default='auto', help='the Ray cluster')",
    "class ClusterDriver:\n    workers_per_node: int = 1",
    "class ClusterDriver:\n    worker_cpus: float = 1.0",
    "class ClusterDriver:\n    checkpoint_s: float = 5.0",
    "def __init__(self, worker_id: str, namespace: str, base: bytes, checkpoint_s: float = 5.0) -> None: ...",
]


def cluster_restatements_in(tmp_path: Path, source: str) -> list[str]:
    (tmp_path / "pipelines" / "cluster").mkdir(parents=True)
    (tmp_path / "pipelines" / "cluster" / "old.py").write_text(source + "\n")
    return [r.what for r in command_restatements(tmp_path, (ClusterOptions,))]


@pytest.mark.parametrize("source", OLD_CLUSTER)
def test_the_check_finds_each_cluster_default_as_it_was_written(tmp_path: Path, source: str) -> None:
    """The flags of ``cluster run`` and ``status`` were written by hand in pipelines/cli/main.py, their defaults
    again in ClusterDriver's fields and StreamWorker's parameters: each of those lines is found."""
    assert len(cluster_restatements_in(tmp_path, source)) == 1, source


def test_the_cluster_check_leaves_other_values_alone(tmp_path: Path) -> None:
    """Another value under the same name, and the common values of a setting named in one word."""
    assert not cluster_restatements_in(tmp_path, "workers_per_node = 2\nf(worker_cpus=0.5)\nlocal = 1\n")


def test_every_schema_class_declares_settings() -> None:
    assert all(settings_of(cls) for cls in SCHEMA)
