"""What ``calibrate``, ``train`` and ``evaluate`` print and draw: terminal tables, a config snippet, the plot."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pipelines.learn.calibrate import Calibration
from pipelines.learn.evaluate import SHIFT, Evaluation
from pipelines.learn.metrics import EventCounts


def _f(x: float | None, digits: int = 2) -> str:
    return "-" if x is None else f"{x:.{digits}f}"


def _row(cells: Sequence[str], widths: Sequence[int]) -> str:
    return "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths, strict=True)))


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    return [_row(header, widths), *(_row(r, widths) for r in rows)]


def calibration_report(
    cal: Calibration, current: tuple[float, float, float], before: EventCounts, before_auc: float | None,
    settings: dict[str, Any], n_recordings: int, n_timesteps: int, n_events: int,
) -> str:  # fmt: skip
    """The result as TOML: a commented table, then the ``[defaults]`` to paste (so ``> tuned.toml`` works)."""
    after = cal.choice.counts
    rows = [
        ["current", _f(current[0]), _f(current[1]), _f(current[2]), _f(before.precision), _f(before.recall),
         _f(before.f1), _f(before_auc, 3)],
        ["calibrated", _f(cal.alpha), _f(cal.beta), _f(cal.threshold), _f(after.precision), _f(after.recall),
         _f(after.f1), _f(cal.roc_auc, 3)],
    ]  # fmt: skip
    lines = [
        f"{n_recordings} recordings, {n_timesteps} timesteps, {n_events} labeled events; events matched at IoU >= 0.3",
        *table(["", "alpha", "beta", "threshold", "precision", "recall", "event F1", "ROC-AUC"], rows),
        f"timestep ROC-AUC of S_v alone {_f(cal.roc_auc_video, 3)}, of S_a alone {_f(cal.roc_auc_audio, 3)}",
        *plateau_lines(cal),
        *(f"warning: {w}" for w in cal.warnings),
        "",
        "paste into the config file of `streamer run`, or run with "
        f"--alpha {cal.alpha:g} --beta {cal.beta:g} --threshold {cal.threshold:g}:",
    ]
    snippet = ["[defaults]", f"alpha = {cal.alpha:g}", f"beta = {cal.beta:g}", f"threshold = {cal.threshold:g}"]
    snippet += [f"{key} = {value:g}" for key, value in settings.items()]
    return "\n".join([*(f"# {line}".rstrip() for line in lines), *snippet])


def plateau_lines(cal: Calibration) -> list[str]:
    """How the choice was made (:mod:`pipelines.learn.calibrate`): the plateaus it was taken from."""
    c = cal.choice
    low, high = c.plateau
    a_low, a_high = cal.alpha_range
    # calibrate always chooses with ``prefer`` (the default threshold)
    how, f1 = f"the nearest to the default {c.prefer:g} of {low:g}-{high:g}", f"F1 over +-{SHIFT:g}"
    where = f"threshold {c.threshold:g} is {how}, where {f1} stays within {c.tolerance:.3f} (one standard error) of "
    return [
        f"{where}{c.level:.3f},",
        f"  the best F1 that holds with the scores shifted by up to +-{SHIFT:g}; the best single threshold gives "
        f"{c.best_f1:.3f}, {c.threshold:g} gives {c.counts.f1:.3f}",
        f"alpha {cal.alpha:g} is the nearest to balanced inside {a_low:g}-{a_high:g}, the weights whose thresholds do "
        f"as well within {cal.alpha_tolerance:.3f}",
    ]


def evaluation_table(ev: Evaluation) -> str:
    def cells(name: str, c: EventCounts, acc: float, auc: float | None) -> list[str]:
        return [name, str(c.labeled), str(c.detected), str(c.matched), _f(c.precision), _f(c.recall), _f(c.f1),
                _f(acc), _f(auc, 3)]  # fmt: skip

    rows = [cells(r.stream_id, r.counts, r.accuracy, r.roc_auc) for r in ev.recordings]
    rows.append(cells("all", ev.counts, ev.accuracy, ev.roc_auc))
    header = ["recording", "labeled", "detected", "matched", "precision", "recall", "F1", "accuracy", "ROC-AUC"]
    lines = table(header, rows)
    lines.insert(len(lines) - 1, "-" * len(lines[0]))
    o = ev.options
    lines.append(f"threshold {o.threshold:g}, min_gap {o.min_gap:g} s, min_duration {o.min_duration:g} s, "
                 f"clear {o.clear:g}; {ev.timesteps} timesteps; events matched at IoU >= 0.3")  # fmt: skip
    if any(label for label in ev.label_recall):
        found = ", ".join(f"{label or '(none)'} {f}/{n}" for label, (f, n) in ev.label_recall.items())
        lines.append(f"found per label: {found}")
    return "\n".join(lines)


def plot_precision_recall(ev: Evaluation, path: Path, title: str) -> None:
    """Event-level precision and recall over thresholds, the timestep curve, and the operating point."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 5.2))
    _, precision, recall = zip(*ev.event_curve, strict=True)
    ax.plot(recall, precision, "o-", ms=2.5, label="events (IoU >= 0.3), threshold swept 0.02-0.99")
    tp, tr = ev.timestep_curve
    ax.plot(tr, tp, "-", alpha=0.6, label=f"timesteps (ROC-AUC {_f(ev.roc_auc, 3)})")
    c = ev.counts
    point = f"threshold {ev.options.threshold:g}: P {c.precision:.2f} R {c.recall:.2f} F1 {c.f1:.2f}"
    ax.plot([c.recall], [c.precision], "r*", ms=14, label=point)
    ax.set(xlabel="recall", ylabel="precision", xlim=(-0.02, 1.02), ylim=(-0.02, 1.05), title=title)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower left", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
