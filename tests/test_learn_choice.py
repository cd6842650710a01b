"""How calibration and training choose a setting (issue 28): a threshold on a plateau of good event F1 that holds
when the scores shift, not its best single point (calibration: the nearest to the default; training: the
middle); of the good weights, the nearest to balanced; and a word when the choice sits at an end of what was
searched.

The recordings are made here as score arrays (no media): each event is a run of timesteps at a known score, so
the event F1 of every threshold is known by hand.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from pipelines.config import EventOptions
from pipelines.learn.calibrate import calibrate
from pipelines.learn.evaluate import Choice, best_threshold, detect, fused_scores
from pipelines.learn.extract import RecordingScores
from pipelines.learn.labels import LabeledEvent, Recording
from pipelines.learn.metrics import EventCounts
from pipelines.learn.report import calibration_report

HOP = 0.1
Bump = tuple[float, float, float, bool]  # start (s), S_v, S_a, labeled; each bump lasts 1 s


def recording(name: str, bumps: Sequence[Bump], *, duration: float = 60.0, floor: float = 0.0) -> RecordingScores:
    """Scores ``floor`` everywhere but the bumps; S_v and S_a as given (with alpha = beta = 0.5 no mix is asked,
    best_threshold gets ``s_v`` itself as the score)."""
    t = np.round(np.arange(0.0, duration, HOP), 3)
    s_v, s_a = np.full(len(t), floor), np.full(len(t), floor)
    for start, v, a, _ in bumps:
        inside = (t >= start - 1e-9) & (t < start + 1.0 - 1e-9)
        s_v[inside], s_a[inside] = v, a
    events = tuple(LabeledEvent(start, start + 1.0) for start, _, _, labeled in bumps if labeled)
    ones = np.ones(len(t))
    values = {"s_v": s_v, "s_a": s_a, "has_v": ones, "has_a": ones}
    return RecordingScores(Recording(Path(f"{name}.mkv"), name, events), HOP, t, values)


def choose(recs: Sequence[RecordingScores]) -> Choice:
    return best_threshold(recs, [r.values["s_v"] for r in recs], EventOptions(min_gap=0.3))


def spiked(floor: float) -> list[RecordingScores]:
    """4 recordings of 5 labeled events at S 0.705 and one unlabeled bump at 0.665, over a floor: thresholds up to
    the floor merge everything into one event, then up to 0.66 they find the 20 events and the 4 bumps (F1 0.91),
    0.67-0.70 the events alone (F1 1, the best single point), above 0.70 nothing: a cliff next to the best point,
    as on real recordings where one sense alone reaches S 0.5. S_v = S_a: every alpha sees the same S."""
    return [recording(f"r{i}", [(s, 0.705, 0.705, True) for s in (5, 15, 25, 35, 45)] + [(52, 0.665, 0.665, False)],
                      floor=floor) for i in range(4)]  # fmt: skip


def test_the_middle_of_a_plateau_is_chosen_not_its_best_point_at_the_edge() -> None:
    # training's rule (a new head has no setting to keep), on the recordings of :func:`spiked` over a floor of 0.15
    choice = choose(spiked(0.15))
    # the best F1 that holds with the scores shifted by up to 0.03 is 0.91; the plateau within one standard error
    # of it is 0.16-0.70 (the spike is part of it, not the reason for it); its middle is 0.43, far from both
    # cliffs (the old rule chose 0.68, the middle of the spike)
    assert (choice.threshold, choice.plateau) == (0.43, (0.16, 0.70))
    assert choice.counts.f1 == pytest.approx(40 / 44) and choice.warning is None


@pytest.mark.parametrize(
    ("floor", "threshold", "plateau"),
    [
        (0.15, 0.3, (0.19, 0.67)),  # the default holds as well as any within one standard error: it stays
        (0.40, 0.44, (0.44, 0.67)),  # it merges the events: the nearest whose +-0.03 holds, not 0.41 by the floor
    ],
)
def test_calibration_moves_the_default_threshold_only_as_far_as_the_labels_ask(
    floor: float, threshold: float, plateau: tuple[float, float]
) -> None:
    # the recordings of the test above: the best F1 that holds with the scores shifted by up to 0.03 is 0.91;
    # thresholds whose whole +-0.03 keeps F1 within one standard error (0.064) of it run from 0.03 over the floor
    # to 0.67. Not the spike at 0.67-0.70 by the cliff (the old rule: 0.68), nor the middle (0.43 with floor 0.15):
    # on the real-world set the nearest to the default held out F1 as well and kept more classes of events
    cal = calibrate(spiked(floor), EventOptions(min_gap=0.3))
    assert (cal.threshold, cal.choice.plateau, cal.alpha) == (threshold, plateau, 0.5)
    assert cal.choice.counts.f1 == pytest.approx(40 / 44) and not cal.warnings
    report = calibration_report(cal, (0.5, 0.5, 0.3), EventCounts(), None, {}, 4, 2400, 20)
    assert f"threshold {threshold:g} is the nearest to the default 0.3 of {plateau[0]:g}-{plateau[1]:g}" in report


def test_a_calibrated_threshold_whose_plateau_reaches_an_end_says_so() -> None:
    # one labeled sound and one unlabeled one as loud: every threshold up to 0.5 gives F1 0.67, and one standard
    # error of an F1 measured on one event is 0.47, so everything from the bottom of the range up is as good
    recs = [recording("one", [(5, 0.0, 1.0, True), (15, 0.0, 1.0, False)])]
    cal = calibrate(recs, EventOptions(min_gap=0.3))
    assert (cal.threshold, cal.choice.plateau) == (0.3, (0.02, 0.47))
    assert cal.warnings == (
        "threshold 0.3 is the nearest to 0.3 of 0.02-0.47, which reaches the bottom of the searched range 0.02-0.99; "
        "the best may lie beyond it: check the choice on recordings not in this set (streamer evaluate)",
    )


def test_a_choice_whose_plateau_reaches_the_top_of_the_searched_thresholds_says_so() -> None:
    # 4 labeled events at S 0.998 per recording and 12 false alarms over 0.4-0.95: each higher threshold removes
    # more of them, F1 rises up to the top of the searched range (``train --fusion mid`` did this on the
    # real-world set, a head whose scores crowd near 1, and chose 0.99 without a word)
    recs = [recording(f"r{i}", [(2 + 4 * k, 0.998, 0.0, True) for k in range(4)]
                      + [(20 + 3 * k, float(x), 0.0, False) for k, x in enumerate(np.linspace(0.4, 0.95, 12))])
            for i in range(10)]  # fmt: skip
    choice = choose(recs)
    assert (choice.threshold, choice.plateau) == (0.97, (0.96, 0.99))
    assert choice.warning == (
        "threshold 0.97 is the middle of 0.96-0.99, which reaches the top of the searched range 0.02-0.99; "
        "the best may lie beyond it: check the choice on recordings not in this set (streamer evaluate)"
    )


def test_calibration_takes_the_good_weights_nearest_to_balanced() -> None:
    # sounds are the events (S_a 1), a moving picture is not (S_v 1 at other times): every alpha below 0.5 can
    # separate them (alpha < threshold <= 1 - alpha), alpha 0 most widely; each holds F1 1 with the scores
    # shifted by 0.03, so 0-0.45 are all as good. The old rule took alpha 0 (video ignored, the widest threshold
    # range), the middle of the plateau 0.2; the labels ask no more than to weight the picture below the sound:
    # the nearest to balanced, but not 0.45, one step from the weights that cannot tell them apart
    recs = [recording(f"r{i}", [(5, 0.0, 1.0, True), (15, 1.0, 0.0, False), (25, 0.0, 1.0, True),
                                (35, 1.0, 0.0, False), (45, 0.0, 1.0, True)]) for i in range(6)]  # fmt: skip
    cal = calibrate(recs, EventOptions(min_gap=0.3))
    assert cal.alpha == 0.4 and cal.beta == 0.6 and cal.choice.counts.f1 == 1.0
    assert cal.alpha_range == (0.0, 0.45)
    # at 0.4 the picture scores 0.4 and the sounds 0.6: the threshold nearest the default that keeps 0.03 from both
    assert (cal.threshold, cal.choice.plateau) == (0.44, (0.44, 0.57)) and not cal.warnings
    report = calibration_report(cal, (0.5, 0.5, 0.3), EventCounts(), None, {}, 6, 3600, 18)
    assert "alpha 0.4 is the nearest to balanced inside 0-0.45" in report
    low, high = cal.choice.plateau
    assert f"threshold {cal.threshold:g} is the nearest to the default 0.3 of {low:g}-{high:g}" in report


def test_a_sense_the_labels_do_not_speak_against_keeps_its_weight() -> None:
    # the calibration set: sounds are the events (S_a 1), a busy picture is not (S_v 0.6 at other times, no sound):
    # alpha 0-0.55 separate them (1 - alpha over 0.6 alpha by more than the shift). Its middle, 0.25, weights
    # the picture down further than these labels ask, and another recording of the same scene where someone
    # walks by (S_v 1, labeled) then scores 0.25, under the threshold (0.3); the weights nearest to balanced
    # inside the plateau (0.5) find it
    recs = [recording(f"r{i}", [(5, 0.0, 1.0, True), (15, 0.6, 0.0, False), (25, 0.0, 1.0, True),
                                (35, 0.6, 0.0, False), (45, 0.0, 1.0, True)]) for i in range(6)]  # fmt: skip
    cal = calibrate(recs, EventOptions(min_gap=0.3))
    assert (cal.alpha, cal.alpha_range) == (0.5, (0.0, 0.55)) and cal.choice.counts.f1 == 1.0
    walk = recording("walk", [(5, 1.0, 0.0, True), (15, 0.6, 0.0, False), (25, 0.0, 1.0, True)])
    s = fused_scores(walk, cal.alpha, cal.beta)
    found = EventCounts.of(detect(walk, s, EventOptions(threshold=cal.threshold, min_gap=0.3)),
                           walk.recording.intervals)  # fmt: skip
    assert (found.matched, found.detected, found.labeled) == (2, 2, 2)


def test_calibration_names_a_weight_at_its_bound() -> None:
    # quiet sounds are the events (S_a 0.6), a picture that moves with a louder hum (S_v 1, S_a 0.5) is not: the
    # hum scores 0.5 + 0.5 alpha, the sounds 0.6 (1 - alpha), so only alpha 0 (the video left out) separates
    # them by more than a shift of 0.03; the report says so
    recs = [recording(f"r{i}", [(5, 0.0, 0.6, True), (15, 1.0, 0.5, False), (25, 0.0, 0.6, True),
                                (35, 1.0, 0.5, False), (45, 0.0, 0.6, True)]) for i in range(6)]  # fmt: skip
    cal = calibrate(recs, EventOptions(min_gap=0.3))
    assert cal.alpha == 0.0 and cal.choice.counts.f1 == 1.0
    assert cal.warnings == ("alpha 0 is at the bottom of the searched range 0-1; S_v is not used (alpha 0)",)
    report = calibration_report(cal, (0.5, 0.5, 0.3), EventCounts(), None, {}, 6, 3600, 18)
    assert "\n# warning: alpha 0 is at the bottom of the searched range 0-1; S_v is not used (alpha 0)\n" in report
