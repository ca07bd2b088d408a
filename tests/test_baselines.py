"""Naive forecasts: the floor every forecasting run is scored against."""

import torch

from lightning_modules.baselines import repeat_last, seasonal_naive, window_mean


def series(length: int = 10) -> torch.Tensor:
    """Two windows, three channels: value = 100 * window + 10 * channel + step."""
    steps = torch.arange(length, dtype=torch.float32)
    return torch.stack([torch.stack([100 * b + 10 * c + steps for c in range(3)], dim=-1) for b in range(2)])


def test_repeat_last_repeats_the_last_value_of_each_target_channel():
    y = repeat_last(series(), horizon=4, target_index=[2, 0])
    assert y.shape == (2, 4, 2)
    assert y[1, :, 0].tolist() == [129.0] * 4 and y[1, :, 1].tolist() == [109.0] * 4


def test_seasonal_naive_repeats_the_last_season_and_is_contiguous():
    y = seasonal_naive(series(), horizon=5, target_index=[0], season=3)
    assert y[0, :, 0].tolist() == [7.0, 8.0, 9.0, 7.0, 8.0]
    assert y.is_contiguous()  # torchmetrics views its inputs


def test_seasonal_naive_falls_back_to_repeat_last_when_the_lookback_is_shorter_than_a_season():
    assert torch.equal(seasonal_naive(series(4), 2, [1], season=24), repeat_last(series(4), 2, [1]))


def test_window_mean_forecasts_the_lookback_mean():
    assert window_mean(series(), horizon=3, target_index=[1])[0, :, 0].tolist() == [14.5] * 3
