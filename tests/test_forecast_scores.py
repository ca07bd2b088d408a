"""What a forecasting run's test scores say, on tiny constructed series whose right answers are known by hand."""

import lightning.pytorch as pl
import numpy as np
import pytest
import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader

from datamodules.specs import ForecastSpec
from experiments.config import parse_run_args
from lightning_modules.baselines import seasonal_naive
from lightning_modules.forecast_training import ForecastingModule


class Fixed(nn.Module):
    """A stand-in model whose forecast is a given function of the input window."""

    def __init__(self, forecast) -> None:
        super().__init__()
        self.forecast = forecast

    def forward(self, x: Tensor, start: Tensor | None = None) -> Tensor:
        return self.forecast(x)


def scored(spec: ForecastSpec, forecast, windows: list[tuple[Tensor, Tensor]], *words: str) -> tuple:
    """Test `forecast` (scaled x -> scaled forecast) on the given (x, y) batches, served as the datasets serve
    them, with each window's first row; (module, logged scores)."""
    config = parse_run_args(["--data", "ett", "--model", "linear", *words])
    module = ForecastingModule(config, spec)
    module.model = Fixed(forecast)
    trainer = pl.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False)
    batches = [(x, y, torch.zeros(len(x), dtype=torch.long)) for x, y in windows]
    return module, trainer.test(module, dataloaders=DataLoader(batches, batch_size=None), verbose=False)[0]


def windows_of(series: Tensor, lookback: int, horizon: int) -> tuple[Tensor, Tensor]:
    """Every stride-1 window of a [T, C] series whose targets are all its channels: x [N, L, C], y [N, H, C]."""
    n = len(series) - lookback - horizon + 1
    x = torch.stack([series[i : i + lookback] for i in range(n)])
    y = torch.stack([series[i + lookback : i + lookback + horizon] for i in range(n)])
    return x, y


def level_spec(lookback: int, horizon: int, season: int, **fields) -> ForecastSpec:
    return ForecastSpec("values", lookback, horizon, ["a"], ["a"], [0], season, **fields)


# A series that repeats every 4 steps exactly: seasonal naive is perfect on it, repeat-last is not.
PERIODIC = torch.tensor([0.0, 1.0, 3.0, -1.0] * 6).unsqueeze(-1)


def test_a_model_as_good_as_seasonal_naive_on_a_seasonal_series_has_no_skill_against_the_best_naive() -> None:
    x, y = windows_of(PERIODIC, lookback=8, horizon=4)
    spec = level_spec(8, 4, season=4)
    module, scores = scored(spec, lambda x: seasonal_naive(x, 4, [0], 4), [(x, y)])
    assert scores["baseline_seasonal_mse"] == 0.0 and scores["test_mse"] == 0.0
    assert scores["skill_vs_best_naive"] == 0.0 and module.best_naive == "seasonal"  # not positive
    assert scores["skill_vs_seasonal"] == 0.0
    assert scores["skill_vs_last"] == 1.0  # beating a baseline this weak flatters, which is why it is not the headline
    assert {"skill_vs_mean", "skill_vs_drift"} <= scores.keys() and "baseline_zero_mse" not in scores


def test_skill_against_the_best_naive_is_against_the_lowest_baseline_mse() -> None:
    x, y = windows_of(PERIODIC + 0.5 * torch.randn(len(PERIODIC), 1, generator=torch.Generator().manual_seed(0)), 8, 4)
    module, scores = scored(level_spec(8, 4, season=4), lambda x: torch.zeros(len(x), 4, 1), [(x, y)])
    baselines = {name: scores[f"baseline_{name}_mse"] for name in ("last", "seasonal", "mean", "drift")}
    best = min(baselines, key=baselines.get)
    assert module.best_naive == best
    assert scores["skill_vs_best_naive"] == pytest.approx(1 - scores["test_mse"] / baselines[best])
    assert scores["skill_vs_best_naive"] == pytest.approx(min(scores[f"skill_vs_{n}"] for n in baselines))


def test_mase_and_original_unit_errors_equal_a_hand_computation() -> None:
    # Scaled targets 1, -1, 0.5 and a forecast of 0 throughout; the scaler maps v -> 10 + 2 v, and the training
    # rows' seasonal-naive MAE was 4 in original units.
    spec = level_spec(2, 1, season=1, target_mean=[10.0], target_std=[2.0], naive_mae=[4.0], positive_targets=True)
    x = torch.zeros(3, 2, 1)
    y = torch.tensor([1.0, -1.0, 0.5]).view(3, 1, 1)
    _, scores = scored(spec, lambda x: torch.zeros(len(x), 1, 1), [(x[:2], y[:2]), (x[2:], y[2:])])
    errors = np.array([2.0, -2.0, 1.0])  # original forecast 10 against 12, 8 and 11
    assert scores["test_mae_original"] == pytest.approx(np.abs(errors).mean())
    assert scores["test_mse_original"] == pytest.approx((errors**2).mean())
    assert scores["test_mase"] == pytest.approx(np.abs(errors).mean() / 4.0)
    smape = np.mean(2 * np.abs(errors) / (np.abs([12.0, 8.0, 11.0]) + 10.0))
    assert scores["test_smape"] == pytest.approx(smape, rel=1e-6)
    assert scores["test_mse"] == pytest.approx((1 + 1 + 0.25) / 3)  # the scaled scores stay what they were


def test_smape_is_left_out_when_training_targets_can_be_zero_or_negative() -> None:
    spec = level_spec(2, 1, season=1, target_mean=[0.0], target_std=[1.0], naive_mae=[1.0])
    _, scores = scored(spec, lambda x: x[:, -1:], [(torch.ones(2, 2, 1), torch.ones(2, 1, 1))])
    assert "test_smape" not in scores and "test_mase" in scores


def test_mse_by_step_is_kept_for_every_forecaster_and_averages_to_the_mse() -> None:
    x, y = windows_of(torch.arange(12.0).unsqueeze(-1), lookback=3, horizon=3)
    module, scores = scored(level_spec(3, 3, season=2), lambda x: x[:, -1:].repeat(1, 3, 1), [(x, y)])
    # Repeating the last value of a line that climbs by 1 a step misses step h by h.
    np.testing.assert_allclose(module.errors_by_step["model"], [1.0, 4.0, 9.0])
    np.testing.assert_allclose(module.errors_by_step["drift"], [0.0, 0.0, 0.0], atol=1e-10)
    assert module.errors_by_step["model"].mean() == pytest.approx(scores["test_mse"])


def return_spec(**fields) -> ForecastSpec:
    # A daily log return series scaled by mean 0.001 and std 0.01.
    return ForecastSpec("values", 2, 2, ["r"], ["r"], [0], 5, target_kind="return", main_target="r",
                        target_mean=[0.001], target_std=[0.01], naive_mae=[0.01], **fields)  # fmt: skip


def test_return_targets_are_scored_against_zero_and_by_sign_correlation_and_backtest() -> None:
    realised = np.array([0.01, -0.02, 0.0, 0.03, -0.01, 0.02])  # original units, one per test day
    forecast = np.array([0.005, 0.01, -0.002, 0.004, -0.001, -0.003])
    scale = lambda v: torch.tensor((v - 0.001) / 0.01, dtype=torch.float32).view(-1, 1, 1)  # noqa: E731
    y, pred = scale(realised).repeat(1, 2, 1), scale(forecast).repeat(1, 2, 1)  # step 2 is not traded
    x = torch.arange(6.0).view(6, 1, 1).repeat(1, 2, 1)  # window i -> forecast i
    module, scores = scored(return_spec(), lambda x: pred[x[:, 0, 0].long()], [(x[:4], y[:4]), (x[4:], y[4:])])
    assert scores["baseline_zero_mse"] == pytest.approx(float(((scale(np.zeros(6)) - scale(realised)) ** 2).mean()))
    assert "baseline_drift_mse" not in scores and {"skill_vs_zero", "skill_vs_best_naive"} <= scores.keys()
    # Up (above 0) or not: right on days 1, 3, 4, 5 (day 3 is flat; a forecast below 0 says "not up").
    assert scores["test_hit_rate"] == pytest.approx(4 / 6)
    assert scores["baseline_always_up_hit_rate"] == pytest.approx(3 / 6)
    assert scores["test_ic"] == pytest.approx(np.corrcoef(forecast, realised)[0, 1], abs=1e-5)
    ranks = lambda v: np.argsort(np.argsort(v))  # noqa: E731  (no ties here)
    assert scores["test_rank_ic"] == pytest.approx(np.corrcoef(ranks(forecast), ranks(realised))[0, 1], abs=1e-5)
    long_flat = module.backtests["long_flat"]
    np.testing.assert_array_equal(long_flat.positions, [1, 1, 0, 1, 0, 0])
    assert scores["test_backtest_long_flat_total_return"] == pytest.approx(long_flat.equity[-1] - 1)
    assert scores["baseline_buy_hold_turnover"] == pytest.approx(1 / 6)  # bought on the first day, then held
    assert scores["test_backtest_long_short_turnover"] == pytest.approx((1 + 0 + 2 + 2 + 2 + 0) / 6)


def test_a_forecast_that_never_varies_has_an_information_coefficient_of_zero() -> None:
    y = torch.randn(5, 2, 1, generator=torch.Generator().manual_seed(1))
    _, scores = scored(return_spec(), lambda x: torch.full((len(x), 2, 1), 0.3), [(torch.zeros(5, 2, 1), y)])
    assert scores["test_ic"] == 0.0 and scores["test_rank_ic"] == 0.0
