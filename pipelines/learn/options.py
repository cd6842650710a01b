"""The learning commands' own settings: declared once here, flags of the command line only.

``streamer calibrate``, ``train`` and ``evaluate`` read the analysis settings as ``streamer run`` does (the
config file and its flags, :mod:`pipelines.config`); what they take besides is declared here with
:func:`~streamer.settings.setting` (default, check, help): how many recordings are decoded at once
(:class:`LearnOptions`) and how ``train`` trains (:class:`TrainOptions`). The commands' flags are built from these
declarations (:func:`pipelines.flags.add_setting_flags`) and read back into the dataclasses
(:func:`~pipelines.flags.values_from`: a flag not given leaves the default here); they are not config file
keys (``file=False``: a site's config describes its streams, not a training run), so ``docs/settings.md`` does
not list them: ``--help`` does.

Light (no torch): ``streamer --help`` and ``streamer train --help`` build the flags from it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from streamer.settings import LEARN, choice, integer, number, output_file, setting

TRAIN = frozenset({"train"})
FUSIONS = ("weighted", "late", "mid", "attention")  # the heads of models.heads.HEADS (a test keeps them equal)


def _flag(default: Any, commands: frozenset[str], **declared: Any) -> Any:
    """A setting of the learning commands: a flag only, outside any config table."""
    return setting(default, section="top", file=False, commands=commands, **declared)


@dataclass(frozen=True, kw_only=True)
class LearnOptions:
    """What every learning command takes besides the analysis settings."""

    parallel: int = _flag(4, LEARN, check=integer(1, 256), metavar="N", help="recordings decoded at once")


@dataclass(frozen=True, kw_only=True)
class TrainOptions:
    """How ``streamer train`` trains (:func:`pipelines.learn.train.train`) and where it saves the model (``out``,
    written by the command). ``device`` is the model's (``[device]``, ``--device``): it has no default here."""

    fusion: str = _flag(
        "weighted", TRAIN, check=choice(*FUSIONS),
        help="weighted (learnable alpha, beta), late (product of per-modality probabilities), mid (features "
        "concatenated into an MLP) or attention",
    )  # fmt: skip
    out: Path = _flag(Path("fusion.pt"), TRAIN, check=output_file, metavar="FILE",  # noqa: RUF009 - a field()
                      help="checkpoint to write")  # fmt: skip
    epochs: int = _flag(2000, TRAIN, check=integer(1, 1_000_000), metavar="N", help="at most this many epochs")
    patience: int = _flag(100, TRAIN, check=integer(1, 1_000_000), metavar="N",
                          help="stop after this many epochs without progress on the validation recordings")  # fmt: skip
    lr: float = _flag(0.05, TRAIN, check=number(0, lo_open=True), metavar="LR", help="Adam's learning rate")
    val_fraction: float = _flag(0.25, TRAIN, check=number(0, 1, lo_open=True), metavar="F",
                                help="the share of the recordings kept for validation, at least one")  # fmt: skip
    seed: int = _flag(0, TRAIN, check=integer(0, 2**32 - 1), metavar="N",
                      help="the split's and the initialization's seed")  # fmt: skip
    device: str
