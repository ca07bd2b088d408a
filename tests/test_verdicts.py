"""What `stw train` and a sweep's summary say, in words, about a model against the floors it was scored against."""

from types import SimpleNamespace

import optuna
from optuna.distributions import CategoricalDistribution
from optuna.trial import TrialState, create_trial

from experiments.sweep.report import summary_text
from experiments.verdicts import verdict_lines

LEVEL = {"test_mse": 0.512, "baseline_last_mse": 0.9, "baseline_seasonal_mse": 0.498, "baseline_mean_mse": 0.7,
         "baseline_last_mse_original": 3.0, "skill_vs_best_naive": 1 - 0.512 / 0.498}  # fmt: skip


def test_a_model_that_loses_to_its_best_naive_forecast_says_so_naming_it() -> None:
    [line] = verdict_lines(LEVEL)
    assert line.startswith("worse than the seasonal-naive forecast (MSE 0.5120 vs 0.4980, skill -0.0281)")
    assert line.endswith("naive forecasts' MSE: seasonal-naive 0.4980, window-mean 0.7000, repeat-last 0.9000")


def test_beating_every_naive_forecast_and_tying_one_are_said_too() -> None:
    assert verdict_lines({**LEVEL, "test_mse": 0.4})[0].startswith("better than the seasonal-naive forecast")
    assert verdict_lines({**LEVEL, "test_mse": 0.498})[0].startswith("ties the seasonal-naive forecast")


RETURNS = {"test_mse": 1.01, "baseline_zero_mse": 1.0, "baseline_mean_mse": 1.002, "test_hit_rate": 0.51,
           "baseline_always_up_hit_rate": 0.55, "test_ic": 0.02, "test_rank_ic": -0.01,
           "test_backtest_long_flat_sharpe": 0.3, "test_backtest_long_flat_total_return": 0.05,
           "test_backtest_long_flat_max_drawdown": 0.1, "test_backtest_long_short_sharpe": -0.2,
           "test_backtest_long_short_total_return": -0.04, "test_backtest_long_short_max_drawdown": 0.2,
           "baseline_buy_hold_sharpe": 0.9, "baseline_buy_hold_total_return": 0.3, "baseline_buy_hold_max_drawdown": 0.12,
           "skill_vs_best_naive": -0.01}  # fmt: skip


def test_a_return_forecast_is_judged_against_zero_always_up_and_buy_and_hold() -> None:
    naive, direction, backtest = verdict_lines(RETURNS)
    assert naive.startswith("worse than the zero-return forecast (MSE 1.0100 vs 1.0000, skill -0.01)")
    assert (
        direction
        == "worse than always up (hit rate 0.5100 vs 0.5500); information coefficient +0.0200, rank IC -0.0100"
    )
    assert backtest.startswith("backtest after costs (evaluation, not advice): long/flat worse than buy and hold "
                               "(Sharpe 0.3000 vs 0.9000), total return +5.0% vs +30.0%")  # fmt: skip


def test_a_classifier_is_judged_against_the_majority_class() -> None:
    [line] = verdict_lines({"test_acc": 0.53, "baseline_majority_acc": 0.54, "test_mcc": 0.02})
    assert line == "worse than always the most frequent training class (accuracy 0.5300 vs 0.5400); MCC +0.0200"


def study_of(attrs: list[dict]) -> optuna.Study:
    study = optuna.create_study(direction="minimize")
    for number, user_attrs in enumerate(attrs):
        study.add_trial(create_trial(state=TrialState.COMPLETE, value=0.9 + number / 100, params={"family": "linear"},
                                     distributions={"family": CategoricalDistribution(["linear"])},
                                     user_attrs={"mlflow_run_id": f"run{number}", **user_attrs}))  # fmt: skip
    return study


def test_a_sweep_where_nothing_beats_zero_says_so_for_its_chosen_trial_and_counts_the_rest() -> None:
    study = study_of([RETURNS, {**RETURNS, "test_mse": 1.005, "skill_vs_best_naive": -0.005}])
    text = summary_text(study, SimpleNamespace(study="stock-x", metric="val_mse"), "stw ui")
    assert "best trial #0 (linear): val_mse = 0.9000" in text
    assert "on test it is worse than the zero-return forecast (MSE 1.0100 vs 1.0000, skill -0.01)" in text
    assert "completed trials whose test MSE beats their best naive forecast: 0 of 2" in text
