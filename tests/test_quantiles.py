"""The models' window quantiles (models/quantiles.py) are torch.nanquantile's, from partial or shorter sorts."""

from __future__ import annotations

import numpy as np
import torch

from models.audio import AudioActivity
from models.quantiles import lower_quantiles, upper_quantile
from models.slots import Rounds


def _window() -> torch.Tensor:
    rng = np.random.default_rng(0)
    window = torch.from_numpy(rng.normal(size=(5, 160, 11)).astype(np.float32))
    window[:, 40:43] = window[:, 40:41]  # ties
    window[1, :110] = torch.nan  # a young window: 50 entries so far
    window[2, :159] = torch.nan  # one
    window[3] = torch.nan  # none yet
    window[4, 7:90, 3] = torch.nan  # one column short of entries
    return window


def test_upper_quantile_is_torch_nanquantile() -> None:
    window = _window()
    for q in (0.5, 0.9, 0.98, 1.0):
        got = upper_quantile(window, ~window.isnan(), q)
        assert torch.equal(got.isnan(), window.isnan().all(dim=1))
        assert torch.allclose(got, torch.nanquantile(window, q, dim=1), atol=1e-6, equal_nan=True), q


def test_lower_quantiles_are_torch_nanquantile() -> None:
    window = _window()
    qs = torch.tensor([0.0, 0.25, 0.5, 0.9])
    got = lower_quantiles(window, ~window.isnan(), qs)
    assert torch.allclose(got, torch.nanquantile(window, qs, dim=1), atol=1e-6, equal_nan=True)


def test_a_mask_alike_for_a_rows_columns() -> None:
    window = _window().nan_to_num(0.0)
    valid = torch.zeros(5, 160, 1, dtype=torch.bool)
    valid[:, ::3] = True
    valid[2] = False
    expected = torch.nanquantile(torch.where(valid, window, torch.nan), 0.9, dim=1)
    assert torch.allclose(upper_quantile(window, valid, 0.9), expected, atol=1e-6, equal_nan=True)


def test_newest_are_the_entries_youngest_in_age() -> None:
    width = 12
    for rounds, before in (
        (Rounds.distinct(torch.tensor([0, 1, 2])), torch.tensor([0.0, 5.0, 29.0])),
        (Rounds(torch.tensor([4, 4, 6]), torch.tensor([0, 1, 0]), 2), torch.tensor([3.0, 4.0, 9.0])),
    ):
        ages = rounds.ages(before, width)
        newest = rounds.newest(before, width, 5)
        assert torch.equal(ages.gather(1, newest), torch.arange(5).expand(3, 5))


def test_audio_background_and_texture_match_the_full_sort() -> None:
    """The audio model's floor, spread and texture: as torch.nanquantile over the masked windows gave them."""
    model = AudioActivity()
    rng = np.random.default_rng(1)
    steps = model.levels.shape[1]
    series = torch.from_numpy(rng.normal(-40, 6, size=(3, steps, model.bands + 1)).astype(np.float32))
    series[1, : steps - 30] = torch.nan
    ages = torch.from_numpy(rng.permutation(steps)).expand(3, steps).unsqueeze(2)
    recent = torch.where(ages < model.window_steps, series, torch.nan)
    q = torch.nanquantile(recent, model.quartiles, dim=1)
    floor, sigma = model.background(recent)
    assert torch.allclose(floor, q[1], equal_nan=True)
    assert torch.allclose(sigma, torch.maximum((q[1] - q[0]) / 0.674, model.min_devs), equal_nan=True)
    old = torch.where(ages >= model.lag_steps, series, torch.nan)
    expected = torch.nan_to_num(torch.nanquantile(old, model.texture_q, dim=1), nan=-torch.inf)
    assert torch.allclose(model.texture(series, ages >= model.lag_steps), expected)
