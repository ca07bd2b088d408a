"""Naive forecasts scored on the same test windows as the model, so every metric has a floor to beat.

Each works on scaled inputs x [B, L, C] and returns [B, H, K] for the target channels `target_index`. Which
ones a run is scored against follows from what its targets are (`spec.target_kind`, set by the dataset): every
series gets repeat-last, seasonal naive and the window mean; a level series also gets drift (the line through the
window's first and last values, continued), and a return series gets zero, "no change", the forecast a return
model must beat. A skill is 1 - MSE / MSE of a naive forecast: above 0 beats it, 0 ties it, below 0 loses to it.
"""

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import torch
from torch import Tensor

from datamodules.specs import ForecastSpec

Baseline = Callable[[Tensor], Tensor]  # scaled x [B, L, C] -> forecast [B, H, K]


def repeat_last(x: Tensor, horizon: int, target_index: list[int]) -> Tensor:
    return x[:, -1:, target_index].repeat(1, horizon, 1)


def seasonal_naive(x: Tensor, horizon: int, target_index: list[int], season: int) -> Tensor:
    """Repeat the last full season; falls back to repeat-last when the lookback is shorter than a season."""
    if season > x.shape[1]:
        return repeat_last(x, horizon, target_index)
    last_season = x[:, -season:, target_index]
    reps = -(-horizon // season)  # ceil division
    return last_season.repeat(1, reps, 1)[:, :horizon].contiguous()


def window_mean(x: Tensor, horizon: int, target_index: list[int]) -> Tensor:
    return x[:, :, target_index].mean(dim=1, keepdim=True).repeat(1, horizon, 1)


def drift(x: Tensor, horizon: int, target_index: list[int]) -> Tensor:
    """The last value plus h times the window's average step (Hyndman's drift method); repeat-last for one step."""
    values = x[:, :, target_index]
    if values.shape[1] < 2:
        return repeat_last(x, horizon, target_index)
    slope = (values[:, -1:] - values[:, :1]) / (values.shape[1] - 1)
    steps = torch.arange(1, horizon + 1, dtype=x.dtype, device=x.device).view(1, -1, 1)
    return values[:, -1:] + steps * slope


def zero_change(x: Tensor, horizon: int, zero: Tensor) -> Tensor:
    """0 in original units for every step: `zero` [K] is where 0 lands after scaling (-mean / std)."""
    return zero.to(x).expand(len(x), horizon, -1).contiguous()


@dataclass(frozen=True)
class NaiveForecast:
    """A naive forecast: how people call it, and how to build it for a spec and a season."""

    label: str
    build: Callable[[ForecastSpec, int], Baseline]


def scaled_zero(spec: ForecastSpec) -> Tensor:
    """Where 0 in original units lands after scaling, per target, as float32: computed as the datamodule scales
    (in float64, then rounded), so a value that is exactly 0 in the file equals it exactly."""
    mean, std = (torch.tensor(values, dtype=torch.float64) for values in (spec.target_mean, spec.target_std))
    return ((0 - mean) / std).float()


NAIVE_FORECASTS: dict[str, NaiveForecast] = {
    "last": NaiveForecast(
        "repeat-last", lambda s, _: partial(repeat_last, horizon=s.horizon, target_index=s.target_index)
    ),
    "seasonal": NaiveForecast(
        "seasonal-naive",
        lambda s, season: partial(seasonal_naive, horizon=s.horizon, target_index=s.target_index, season=season),
    ),
    "mean": NaiveForecast(
        "window-mean", lambda s, _: partial(window_mean, horizon=s.horizon, target_index=s.target_index)
    ),
    "drift": NaiveForecast("drift", lambda s, _: partial(drift, horizon=s.horizon, target_index=s.target_index)),
    "zero": NaiveForecast("zero-return", lambda s, _: partial(zero_change, horizon=s.horizon, zero=scaled_zero(s))),
}
# spec.target_kind -> the naive forecasts that make sense for it. A return's window mean is the price's drift.
BASELINES_FOR: dict[str, tuple[str, ...]] = {
    "level": ("last", "seasonal", "mean", "drift"),
    "return": ("zero", "last", "seasonal", "mean"),
}


def naive_forecasts(spec: ForecastSpec, season: int) -> dict[str, Baseline]:
    """Name -> baseline for the spec's kind of target; the names become `baseline_<name>_<metric>` in MLflow.

    None when the targets are not among the inputs (target_index None): naive forecasts repeat the inputs.
    """
    if spec.target_index is None:
        return {}
    return {name: NAIVE_FORECASTS[name].build(spec, season) for name in BASELINES_FOR[spec.target_kind]}


def skill(mse: float, baseline_mse: float) -> float:
    """1 - mse / baseline_mse; two perfect forecasts tie (0), and any error against a perfect one is -inf."""
    if baseline_mse > 0:
        return 1 - mse / baseline_mse
    return 0.0 if mse == 0 else float("-inf")


def best_naive(baseline_mse: dict[str, float]) -> str:
    """The naive forecast with the lowest MSE (the first listed on a tie)."""
    return min(baseline_mse, key=baseline_mse.__getitem__)


__all__ = [
    "BASELINES_FOR",
    "NAIVE_FORECASTS",
    "best_naive",
    "drift",
    "naive_forecasts",
    "repeat_last",
    "scaled_zero",
    "seasonal_naive",
    "skill",
    "window_mean",
    "zero_change",
]
