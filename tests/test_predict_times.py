"""How `stw predict` dates forecasts past the end of its input and turns forecast log returns into prices."""

import numpy as np
import pandas as pd

from datamodules.stock import prices_from_log_returns
from experiments.predict import business_days, forecast_times, regular_spacing


def test_business_days_skip_weekends_after_the_last_date() -> None:
    thursday = pd.DatetimeIndex(["2017-11-08", "2017-11-09"])
    assert list(business_days(thursday, np.array([1, 2, 3, 2]))) == list(
        pd.to_datetime(["2017-11-10", "2017-11-13", "2017-11-14", "2017-11-13"])
    )


def test_rows_inside_the_input_keep_its_dates_and_later_ones_follow_its_calendar() -> None:
    days = pd.DatetimeIndex(["2017-11-08", "2017-11-09", "2017-11-10"])  # Wednesday to Friday
    times = forecast_times(days, np.array([1, 2, 3, 4]), business_days)
    assert list(times) == list(pd.to_datetime(["2017-11-09", "2017-11-10", "2017-11-13", "2017-11-14"]))
    hours = pd.date_range("2018-01-01", periods=3, freq="h")
    assert forecast_times(hours, np.array([3]), regular_spacing)[0] == pd.Timestamp("2018-01-01 03:00")
    irregular = pd.DatetimeIndex(["2018-01-01", "2018-01-02", "2018-01-04"])
    assert forecast_times(irregular, np.array([2, 3]), regular_spacing).isna().tolist() == [False, True]


def test_prices_compound_the_forecast_log_returns_from_the_last_close() -> None:
    log_returns = np.array([[[0.01], [-0.02], [0.005]]])  # one window, three steps, one target
    prices = prices_from_log_returns(np.array([[100.0]]), log_returns)
    expected = [100 * np.exp(0.01), 100 * np.exp(0.01 - 0.02), 100 * np.exp(0.01 - 0.02 + 0.005)]
    np.testing.assert_allclose(prices[0, :, 0], expected, rtol=1e-12)
    np.testing.assert_allclose(prices[0, 1:, 0] / prices[0, :-1, 0], np.exp([-0.02, 0.005]), rtol=1e-12)
