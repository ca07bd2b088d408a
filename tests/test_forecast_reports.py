"""The figures a forecasting run logs: the forecast panels, the error by step ahead and the backtest's equity."""

from pathlib import Path
from types import SimpleNamespace

import matplotlib.dates as mdates
import numpy as np
import pandas as pd

from experiments import plots
from experiments.task_reports import TASK_REPORTS
from lightning_modules.backtest import backtests


def test_every_forecast_panel_shows_its_own_dates_units_and_the_naive_forecasts_beside_the_model() -> None:
    starts = pd.to_datetime(["2016-07-01", "2017-01-10", "2017-06-20"])
    context_time = [pd.date_range(start, periods=8, freq="h") for start in starts]
    target_time = [pd.date_range(times[-1] + pd.Timedelta(hours=1), periods=4, freq="h") for times in context_time]
    values = np.arange(12.0).reshape(3, 4)
    figure = plots.forecast_figure(np.zeros((3, 8)), values, values + 1, context_time, target_time, "OT", "°C",
                                   "linear on ett", baselines={"seasonal-naive": values - 1})  # fmt: skip
    figure.canvas.draw()
    for ax, times in zip(figure.axes, context_time, strict=True):
        low, high = (mdates.num2date(v).replace(tzinfo=None) for v in ax.get_xlim())
        assert low <= times[0] and high >= times[-1] + pd.Timedelta(hours=4)  # this panel's window, not another's
        assert any(label.get_visible() and label.get_text() for label in ax.get_xticklabels())
        assert ax.get_ylabel() == "OT\n(°C)"
        assert [line.get_label() for line in ax.get_lines()] == ["lookback", "seasonal-naive", "actual", "forecast"]
        assert ax.get_lines()[1].get_alpha() < 1  # the naive forecast is drawn faintly


def test_a_forecast_run_reports_error_by_step_and_for_returns_the_equity_of_its_backtest(tmp_path: Path) -> None:
    returns = np.array([0.01, -0.02, 0.015, 0.0, -0.01])
    module = SimpleNamespace(
        baselines={"zero": None},
        errors_by_step={"model": np.array([1.0, 1.2]), "zero": np.array([1.0, 1.0])},
        backtests=backtests(returns + 0.001, returns, 5.0),
        task=SimpleNamespace(cost_bps=5.0),
    )
    days = pd.bdate_range("2017-01-02", periods=12)
    datamodule = SimpleNamespace(spec=SimpleNamespace(lookback=3), split_timestamps=lambda split: days)
    paths = TASK_REPORTS["forecast"].from_test(datamodule, module, tmp_path, "linear on stock")
    assert [path.name for path in paths] == ["horizon_error.png", "equity.png"]
    assert all(path.stat().st_size > 0 for path in paths)
    module.backtests = {}  # a level series: no backtest
    assert [path.name for path in TASK_REPORTS["forecast"].from_test(datamodule, module, tmp_path, "t")] == [
        "horizon_error.png"
    ]
