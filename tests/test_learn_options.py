"""The learning commands' own settings (:mod:`pipelines.learn.options`): flags only, read back into the
dataclasses, and the heads they name are the models' heads.

Before issue 28 ``TrainOptions``' defaults were restated by ``train``'s flags (``--epochs 2000``, ``--lr 0.05``,
...), ``extract(parallel=4)`` by ``--parallel 4``, and ``head_scores`` and ``TrainOptions`` restated the model's
device default. What every command's own settings share (help from the declaration, the defaults, a bad value a
usage error, no default written twice, ``--help`` without torch) is checked in test_settings.py.
"""

from __future__ import annotations

from pathlib import Path

from pipelines.cli.main import build_parser, parse_args
from pipelines.config import SETTINGS as SCHEMA_SETTINGS
from pipelines.flags import values_from
from pipelines.learn.options import FUSIONS, LearnOptions, TrainOptions
from pipelines.settings_doc import settings_markdown
from streamer.settings import LEARN, settings_of


def test_the_flags_give_the_options() -> None:
    args = parse_args(build_parser(), ["train", "data"])
    assert TrainOptions(**values_from(args, TrainOptions), device="cpu") == TrainOptions(device="cpu")
    assert LearnOptions(**values_from(args, LearnOptions)) == LearnOptions()
    args = parse_args(build_parser(), ["train", "data", "--fusion", "mid", "--epochs", "7", "--lr", "0.1",
                                       "--val-fraction", "0.5", "--out", "m.pt", "--parallel", "2"])  # fmt: skip
    options = TrainOptions(**values_from(args, TrainOptions), device="cpu")
    assert (options.fusion, options.epochs, options.lr, options.val_fraction, options.out) == (
        "mid", 7, 0.1, 0.5, Path("m.pt"))  # fmt: skip
    assert LearnOptions(**values_from(args, LearnOptions)) == LearnOptions(parallel=2)
    for command in ("calibrate", "evaluate"):
        args = parse_args(build_parser(), [command, "data", "--parallel", "3"])
        assert LearnOptions(**values_from(args, LearnOptions)) == LearnOptions(parallel=3)


def test_learning_settings_are_flags_only() -> None:
    """Not config file keys, not rows of docs/settings.md: the commands' ``--help`` documents them."""
    settings = (*settings_of(LearnOptions), *settings_of(TrainOptions))
    assert {"LearnOptions", "TrainOptions"}.isdisjoint(s.owner for s in SCHEMA_SETTINGS)
    assert all(not s.file and s.commands and s.commands <= LEARN for s in settings)
    docs = settings_markdown()
    for s in settings:
        assert f"`{s.option}`" not in docs


def test_the_fusions_are_the_heads() -> None:
    from models.heads import HEADS

    assert tuple(HEADS) == FUSIONS
