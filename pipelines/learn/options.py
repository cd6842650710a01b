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

from streamer.settings import LEARN, choice, command_setting, integer, number, output_file

TRAIN = frozenset({"train"})
FUSIONS = ("weighted", "late", "mid", "attention")  # the heads of models.heads.HEADS (a test keeps them equal)


@dataclass(frozen=True, kw_only=True)
class LearnOptions:
    """What every learning command takes besides the analysis settings."""

    parallel: int = command_setting(4, LEARN, check=integer(1, 256), metavar="N", help="recordings decoded at once")


@dataclass(frozen=True, kw_only=True)
class TrainOptions:
    """How ``streamer train`` trains (:func:`pipelines.learn.train.train`) and where it saves the model (``out``,
    written by the command). ``device`` is the model's (``[device]``, ``--device``): it has no default here."""

    fusion: str = command_setting(
        "weighted",
        TRAIN,
        check=choice(*FUSIONS),
        help="weighted (learnable alpha, beta), late (product of per-modality probabilities), mid (features "
        "concatenated into an MLP) or attention",
    )
    out: Path = command_setting(  # noqa: RUF009 - a field()
        Path("fusion.pt"), TRAIN, check=output_file, metavar="FILE", help="checkpoint to write"
    )
    epochs: int = command_setting(
        2000, TRAIN, check=integer(1, 1_000_000), metavar="N", help="at most this many epochs"
    )
    patience: int = command_setting(
        100,
        TRAIN,
        check=integer(1, 1_000_000),
        metavar="N",
        help="stop after this many epochs without progress on the validation recordings",
    )
    lr: float = command_setting(0.05, TRAIN, check=number(0, lo_open=True), metavar="LR", help="Adam's learning rate")
    val_fraction: float = command_setting(
        0.25,
        TRAIN,
        check=number(0, 1, lo_open=True),
        metavar="F",
        help="the share of the recordings kept for validation, at least one",
    )
    seed: int = command_setting(
        0, TRAIN, check=integer(0, 2**32 - 1), metavar="N", help="the split's and the initialization's seed"
    )
    device: str
