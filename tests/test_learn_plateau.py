"""The selection rules calibration and training share (:mod:`pipelines.learn.evaluate`: the run of thresholds,
the weight nearest balanced, the tolerance, the robust F1, the bound warnings), by hand."""

from __future__ import annotations

import pytest

from pipelines.learn.evaluate import Run, bound_warning, nearest_within, robust_f1, tolerance, widest_run


@pytest.mark.parametrize(
    ("values", "tol", "centre", "inside", "expected"),
    [
        ([0.1, 0.8, 0.8, 0.8, 0.8, 0.9, 0.0], 0.1, 3, False, Run(3, 1, 5)),  # the best at the edge: centre is as good
        ([0.1, 0.8, 0.8, 0.8, 0.8, 0.9, 0.0], 0.05, 3, False, Run(5, 5, 5)),  # a tolerance that keeps the 0.8s out
        ([0.9, 0.9, 0.1, 0.9, 0.9, 0.9, 0.9], 0.0, 2, False, Run(1, 0, 1)),  # as near and as high: the lower
        ([0.9, 0.85, 0.1, 0.9, 0.95], 0.1, 2, False, Run(3, 3, 4)),  # as near: the higher
        ([0.9, 0.9, 0.9, 0.9, 0.9, 0.9, 0.1], 0.0, 6, False, Run(5, 0, 5)),  # the nearest, at the run's edge
        ([0.9, 0.9, 0.9, 0.9, 0.9, 0.9, 0.1], 0.0, 6, True, Run(4, 0, 5)),  # inside: one step from the worse point
        ([0.9, 0.9, 0.9, 0.9, 0.9, 0.9, 0.1], 0.0, 0, True, Run(0, 0, 5)),  # the grid's end has nothing beyond it
        ([0.1, 0.9, 0.9, 0.1], 0.0, 0, True, Run(1, 1, 2)),  # a run of two inside the grid: its middle (the lower)
        ([0.9, 0.9, 0.1, 0.9, 0.9], 0.0, 2, True, Run(0, 0, 1)),  # inside, as near and as high: the lower
        ([0.9, 0.85, 0.1, 0.9, 0.95], 0.1, 2, True, Run(4, 3, 4)),  # inside, as near: the higher
    ],
)
def test_nearest_within_by_hand(values: list[float], tol: float, centre: int, inside: bool, expected: Run) -> None:
    assert nearest_within(values, tol, centre=centre, inside=inside) == expected


def test_the_tolerance_is_one_standard_error() -> None:
    assert tolerance(1.0, 10) == 0.0  # perfectly separated: only the best
    assert tolerance(0.8, 100) == pytest.approx(0.04)
    assert tolerance(0.8, 25) == pytest.approx(0.08)  # a smaller set tells less: a wider plateau


def test_robust_f1_is_the_worst_within_the_shift() -> None:
    thresholds = [0.1, 0.2, 0.3, 0.4, 0.5]
    f1 = [0.5, 0.9, 0.8, 0.9, 0.0]
    assert robust_f1(thresholds, f1, 0.1).tolist() == [0.5, 0.5, 0.8, 0.0, 0.0]
    assert robust_f1(thresholds, f1, 0.0).tolist() == f1


def test_widest_run_counts_only_runs_holding_an_anchor() -> None:
    good = [True, True, True, False, True, True, True, True]
    assert widest_run(good, [1.0] * 8) == Run(5, 4, 7)
    assert widest_run(good, [1.0] * 8, anchors=[False, True] + [False] * 6) == Run(1, 0, 2)
    with pytest.raises(ValueError, match="no run"):
        widest_run(good, [1.0] * 8, anchors=False)


GRID = [0.1, 0.2, 0.3, 0.4, 0.5]


@pytest.mark.parametrize(
    ("run", "plateau", "expected"),
    [
        (Run(4, 4, 4), True, "t 0.5 is at the top of the searched range 0.1-0.5; up"),
        (Run(0, 0, 1), False, "t 0.1 is at the bottom of the searched range 0.1-0.5; down"),
        (Run(3, 2, 4), True, "t 0.4 is the middle of 0.3-0.5, which reaches the top of the searched range 0.1-0.5; up"),
        (Run(3, 2, 4), False, None),  # a plateau at the end of a range that is all there is (alpha 0-1): no word
        (Run(2, 1, 3), True, None),
    ],
)
def test_bound_warning_names_the_end(run: Run, plateau: bool, expected: str | None) -> None:
    assert bound_warning("t", GRID, run, top="up", bottom="down", plateau=plateau) == expected


def test_bound_warning_says_how_the_choice_sits_in_its_plateau() -> None:
    line = bound_warning("t", GRID, Run(1, 0, 2), top="up", bottom="down", plateau=True, chosen="the nearest to 0.2")
    searched = "the searched range 0.1-0.5"
    assert line == f"t 0.2 is the nearest to 0.2 of 0.1-0.3, which reaches the bottom of {searched}; down"
