"""Naive forecasts scored on the same test windows as the model, so every metric has a floor to beat.

All work on scaled inputs x [B, L, C] and return [B, H, K] for the target channels `target_index`.
"""

from collections.abc import Callable

from torch import Tensor


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


def naive_forecasts(season: int) -> dict[str, Callable[[Tensor, int, list[int]], Tensor]]:
    """Name -> baseline; the names become `baseline_<name>_<metric>` in MLflow."""
    return {
        "last": repeat_last,
        "seasonal": lambda x, h, idx: seasonal_naive(x, h, idx, season),
        "mean": window_mean,
    }


__all__ = ["naive_forecasts", "repeat_last", "seasonal_naive", "window_mean"]
