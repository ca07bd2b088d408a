"""The test-period backtest of return forecasts, against a hand computation on a 10-day toy series."""

import math
import statistics

import numpy as np
import pytest

from lightning_modules.backtest import backtests, max_drawdown, run_backtest, sharpe

# Ten trading days: realised log returns, and the one-step forecasts made the evening before each day.
RETURNS = [0.01, -0.02, 0.015, 0.0, -0.01, 0.02, 0.005, -0.005, 0.01, -0.015]
FORECASTS = [0.002, -0.001, 0.003, 0.001, -0.002, 0.004, -0.001, 0.002, 0.001, -0.003]
COST_BPS = 10  # 0.1% of every amount traded


def by_hand(positions: list[int]) -> dict[str, float]:
    """The same bookkeeping written out day by day: start flat, pay for each change, compound simple returns."""
    equity, peak, worst, held, daily, traded = 1.0, 1.0, 0.0, 0, [], 0
    for position, log_return in zip(positions, RETURNS, strict=True):
        change = abs(position - held)
        day = position * (math.exp(log_return) - 1) - change * COST_BPS / 10_000
        equity *= 1 + day
        peak = max(peak, equity)
        worst = max(worst, 1 - equity / peak)
        daily.append(day)
        traded += change
        held = position
    return {
        "total_return": equity - 1,
        "sharpe": statistics.mean(daily) / statistics.stdev(daily) * math.sqrt(252),
        "max_drawdown": worst,
        "turnover": traded / len(positions),
    }


def test_long_flat_and_long_short_follow_the_sign_of_the_forecast_and_pay_for_every_trade() -> None:
    runs = backtests(np.array(FORECASTS), np.array(RETURNS), COST_BPS)
    np.testing.assert_array_equal(runs["long_flat"].positions, [1, 0, 1, 1, 0, 1, 0, 1, 1, 0])
    np.testing.assert_array_equal(runs["long_short"].positions, [1, -1, 1, 1, -1, 1, -1, 1, 1, -1])
    np.testing.assert_array_equal(runs["buy_hold"].positions, np.ones(10))
    for name, positions in (
        ("long_flat", [1, 0, 1, 1, 0, 1, 0, 1, 1, 0]),
        ("long_short", [1, -1, 1, 1, -1, 1, -1, 1, 1, -1]),
        ("buy_hold", [1] * 10),
    ):
        expected = by_hand(positions)
        assert runs[name].figures() == pytest.approx(expected, rel=1e-12), name


def test_the_first_days_of_the_long_flat_equity_curve_written_out() -> None:
    run = run_backtest(np.array([1, 0, 1]), np.array(RETURNS[:3]), COST_BPS)
    day1 = math.exp(0.01) - 1 - 0.001  # buy: the day's gain less 0.1% of the equity traded
    day2 = -0.001  # sell before a falling day: only the cost
    day3 = math.exp(0.015) - 1 - 0.001
    np.testing.assert_allclose(run.daily, [day1, day2, day3], rtol=1e-12)
    np.testing.assert_allclose(run.equity, np.cumprod([1 + day1, 1 + day2, 1 + day3]), rtol=1e-12)
    assert run.figures()["turnover"] == 1.0


def test_costs_lower_every_figure_of_a_trading_strategy_and_cost_buy_and_hold_once() -> None:
    free = backtests(np.array(FORECASTS), np.array(RETURNS), 0.0)
    paid = backtests(np.array(FORECASTS), np.array(RETURNS), COST_BPS)
    assert paid["long_short"].figures()["total_return"] < free["long_short"].figures()["total_return"]
    hold_gap = free["buy_hold"].equity / paid["buy_hold"].equity
    np.testing.assert_allclose(hold_gap, hold_gap[0])  # one entry cost, compounded along, never paid again


def test_drawdown_counts_the_start_as_a_peak_and_a_flat_strategy_has_no_sharpe() -> None:
    assert max_drawdown(np.array([0.9, 0.95, 0.8, 1.2])) == pytest.approx(0.2)
    assert max_drawdown(np.array([1.1, 1.2])) == 0.0
    assert sharpe(np.zeros(10)) == 0.0
