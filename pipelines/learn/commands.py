"""The commands ``streamer calibrate``, ``streamer train`` and ``streamer evaluate``
(parsers in :mod:`pipelines.cli.main`).

Each reads the labeled data, takes the per-stream and model settings from ``--config`` and flags as ``streamer
run`` does, extracts the features (:mod:`~pipelines.learn.extract`) and reports on stdout; recordings that fail
print one line each on stderr, the others are used, and the exit code is then 3.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipelines.config import (
    EventOptions,
    ModelConfig,
    StreamConfig,
    analysis_settings,
    checkpoint_defaults,
    load_model,
    load_toml,
    merged_stream_values,
    stream_config,
)
from pipelines.flags import flag_values, values_from
from pipelines.learn.extract import RecordingScores, extract, file_spec
from pipelines.learn.labels import Dataset, load_dataset
from pipelines.learn.options import LearnOptions, TrainOptions
from streamer.errors import EXIT_OK, EXIT_SOURCE, ConfigError
from streamer.settings import output_file, setting_of, settings_of
from streamer.sync import SyncOptions

if TYPE_CHECKING:
    from models.heads import Checkpoint


def _say(text: str) -> None:
    print(f"streamer: {text}", file=sys.stderr)


class Prepared:
    """Settings, data and features of one command."""

    def __init__(self, args: argparse.Namespace) -> None:
        doc = load_toml(args.config) if args.config is not None else {}
        defaults, flags, model = analysis_settings(doc, flag_values(args, args.command))
        self.checkpoint: Checkpoint | None = load_model(model.checkpoint) if model.checkpoint is not None else None
        learned = checkpoint_defaults(self.checkpoint) if self.checkpoint is not None else {}
        self.model: ModelConfig = model
        self.values = merged_stream_values(model, learned, defaults, flags, where="settings")
        self.explicit = defaults | flags  # what the user set (not the model's)
        # every recording's settings, as `streamer run` builds a stream's (each recording's own, in extract())
        self.stream: StreamConfig = stream_config(
            file_spec("settings", args.data), self.values, model, where="settings"
        )
        self.events: EventOptions = self.stream.events
        self.sync: SyncOptions = self.stream.sync
        self.alpha, self.beta = self.stream.alpha, self.stream.beta
        self.learn = LearnOptions(**values_from(args, LearnOptions))
        dataset = load_dataset(args.data)
        self.dataset: Dataset = dataset.only(args.label) if args.label else dataset
        self.recordings: list[RecordingScores] = []
        self.failed = 0

    @property
    def extraction(self) -> dict[str, Any]:
        """The settings the features depend on (saved with a trained model)."""
        m = self.model
        hop_ms = setting_of(SyncOptions, "hop").to_config(self.sync.hop)
        return {"hop_ms": round(hop_ms, 3), "tau": m.tau, "luma_size": list(m.luma_size),
                "sample_rate": m.sample_rate, "context_ms": m.context_ms}  # fmt: skip

    async def extract(self) -> None:
        n = len(self.dataset.recordings)

        def start(device: str) -> None:
            _say(f"scoring {n} recording(s) of {self.dataset.source} with the run-time model on {device}")

        timing = {s.key for s in settings_of(SyncOptions) if s.section == "stream"}  # what the features depend on
        stream_values = {k: v for k, v in self.values.items() if k in timing}
        done = 0

        def progress(rec: RecordingScores) -> None:
            nonlocal done
            done += 1
            _say(f"[{done}/{n}] {rec.recording.stream_id}: {len(rec)} timesteps")

        self.recordings, failed = await extract(
            self.dataset, self.model, stream_values, parallel=self.learn.parallel, on_start=start, on_done=progress
        )
        self.failed = len(failed)
        if not self.recordings:
            raise ConfigError(f"data {str(self.dataset.source)!r}: no recording could be read")
        if self.failed:
            _say(f"{self.failed} of {n} recording(s) failed (above) and are left out")

    @property
    def exit_code(self) -> int:
        return EXIT_SOURCE if self.failed else EXIT_OK

    @property
    def n_timesteps(self) -> int:
        return sum(len(r) for r in self.recordings)


def _write_json(path: Path | None, report: dict[str, Any]) -> None:
    if path is not None:
        path.write_text(json.dumps(report, indent=1) + "\n")


async def calibrate_command(args: argparse.Namespace) -> int:
    from pipelines.learn.calibrate import calibrate
    from pipelines.learn.evaluate import evaluate, fused_scores
    from pipelines.learn.report import calibration_report

    p = Prepared(args)
    await p.extract()
    cal = calibrate(p.recordings, p.events)
    current = (p.alpha, p.beta, p.events.threshold)
    before = evaluate(p.recordings, [fused_scores(r, current[0], current[1]) for r in p.recordings], p.events)
    settings: dict[str, Any] = {k: p.explicit[k] for k in ("min_gap", "min_duration", "hop_ms") if k in p.explicit}
    print(calibration_report(cal, current, before.counts, before.roc_auc, settings, len(p.recordings),
                             p.n_timesteps, p.dataset.n_events))  # fmt: skip
    after = evaluate(p.recordings, [fused_scores(r, cal.alpha, cal.beta) for r in p.recordings],
                     replace(p.events, threshold=cal.threshold))  # fmt: skip
    _write_json(args.json, {
        "alpha": cal.alpha, "beta": cal.beta, "threshold": cal.threshold,
        "threshold_range": list(cal.choice.plateau), "alpha_range": list(cal.alpha_range),
        "warnings": list(cal.warnings),
        "roc_auc": {"s": cal.roc_auc, "s_v": cal.roc_auc_video, "s_a": cal.roc_auc_audio},
        "f1_by_alpha": {f"{a:g}": round(f, 4) for a, f in cal.f1_by_alpha.items()},
        "current": {"alpha": current[0], "beta": current[1], **before.as_dict()},
        "calibrated": after.as_dict(),
    })  # fmt: skip
    return p.exit_code


async def train_command(args: argparse.Namespace) -> int:
    from models.heads import save_checkpoint
    from pipelines.learn.train import train

    p = Prepared(args)
    options = TrainOptions(**values_from(args, TrainOptions), device=p.model.device)
    # the file it will write, the default one too: checked now, not after minutes of extraction and training
    output_file(str(setting_of(TrainOptions, "out").option), options.out)
    await p.extract()
    try:
        result = train(p.recordings, options, p.events, extraction=p.extraction)
    except ValueError as exc:
        raise ConfigError(f"train: {exc}") from None
    save_checkpoint(options.out, result.checkpoint)
    validation = result.checkpoint.metrics["validation"]
    v, ts = validation["events"], validation["timesteps"]
    weights = result.checkpoint.weights
    learned = f" (alpha {weights[0]:.2f}, beta {weights[1]:.2f})" if weights is not None else ""
    print("\n".join([
        f"{options.fusion} fusion{learned}: {result.epochs} epochs, best at {result.best_epoch} "
        f"(loss {result.train_loss:.4f}, validation {result.val_loss:.4f})",
        f"trained on {', '.join(result.train)}; validated on {', '.join(result.validation)}",
        f"threshold {result.checkpoint.threshold:g}: validation events P {v['precision']:.2f} R {v['recall']:.2f} "
        f"F1 {v['f1']:.2f}; timestep accuracy {ts['accuracy']:.3f}, ROC-AUC {ts['roc_auc']}",
        f"saved {options.out}: streamer run --model {options.out} SOURCE...",
    ]))  # fmt: skip
    _write_json(args.json, {
        "fusion": options.fusion, "model": str(options.out), "threshold": result.checkpoint.threshold,
        "alpha": weights[0] if weights else None, "beta": weights[1] if weights else None,
        "train": result.train, "validation": result.validation, "epochs": result.epochs,
        "best_epoch": result.best_epoch, "train_loss": result.train_loss, "validation_loss": result.val_loss,
        "validation_metrics": validation, "warnings": list(result.warnings),
    })  # fmt: skip
    return p.exit_code


async def evaluate_command(args: argparse.Namespace) -> int:
    from pipelines.learn.evaluate import evaluate, fused_scores, head_scores
    from pipelines.learn.report import evaluation_table, plot_precision_recall

    p = Prepared(args)
    await p.extract()
    head = p.checkpoint.learned_head if p.checkpoint is not None else None
    if head is not None:
        scores = head_scores(head, p.recordings, p.model.device)
        what = f"learned {head.kind} fusion ({p.model.checkpoint})"
    else:
        alpha, beta = p.alpha, p.beta
        scores = [fused_scores(r, alpha, beta) for r in p.recordings]
        what = f"S = {alpha:g} S_v + {beta:g} S_a"
    ev = evaluate(p.recordings, scores, p.events)
    print(f"{what}, on {p.dataset.source}")
    print(evaluation_table(ev))
    _write_json(args.json, {"fusion": what, **ev.as_dict()})
    if args.plot is not None:
        plot_precision_recall(ev, args.plot, f"{what}\non {p.dataset.source.name}")
    return p.exit_code
