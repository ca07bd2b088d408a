"""Naive forecasts: the floor every forecasting run is scored against."""

from dataclasses import replace

import numpy as np
import torch

from datamodules.specs import ForecastSpec
from lightning_modules.baselines import drift, naive_forecasts, repeat_last, seasonal_naive, window_mean


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


def test_drift_continues_the_line_through_the_windows_first_and_last_values() -> None:
    y = drift(series(), horizon=3, target_index=[1])  # channel 1 of window 0 climbs from 10 to 19 over 10 steps
    assert y[0, :, 0].tolist() == [20.0, 21.0, 22.0]
    assert torch.equal(drift(series(1), 2, [0]), repeat_last(series(1), 2, [0]))  # one step has no slope


def test_zero_forecasts_zero_in_original_units_exactly_where_the_scaler_puts_it() -> None:
    spec = ForecastSpec(
        "values", 4, 2, ["r"], ["r"], [0], 5, target_kind="return", target_mean=[0.001], target_std=[0.03]
    )
    zero = naive_forecasts(spec, 5)["zero"](torch.randn(3, 4, 1))
    assert zero.shape == (3, 2, 1)
    scaled_in_the_datamodule = np.float32((0.0 - 0.001) / 0.03)  # float64 arithmetic, then float32, as setup() does
    assert (zero == torch.from_numpy(np.array(scaled_in_the_datamodule))).all()


def test_the_kind_of_target_decides_the_naive_forecasts() -> None:
    level = ForecastSpec("values", 4, 2, ["a"], ["a"], [0], 2)
    returns = replace(level, target_kind="return", target_mean=[0.0], target_std=[1.0])
    assert list(naive_forecasts(level, 2)) == ["last", "seasonal", "mean", "drift"]
    assert list(naive_forecasts(returns, 2)) == ["zero", "last", "seasonal", "mean"]
    assert naive_forecasts(replace(level, target_index=None), 2) == {}  # they repeat inputs the targets are not among
