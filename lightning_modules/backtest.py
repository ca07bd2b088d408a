"""A backtest of return forecasts over the test period: an evaluation of the forecasts, not advice.

Pure functions on day-ordered arrays. Day t's position is decided from the forecast made at day t-1's close for
day t (the one-step-ahead forecast, h = 1) and held over day t, earning that day's simple return
exp(r_t) - 1 of the realised log return r_t. Only h = 1 is traded: a horizon-H model forecasts every day H
times, from H overlapping windows, and trading each of those would hold overlapping bets on the same days.

Costs: every change of position pays `cost_bps` basis points of the amount traded (|p_t - p_(t-1)|, in units of
equity), starting flat, so entering the first position pays too and buy-and-hold pays once; nothing is paid
to close at the end. No risk-free rate, no financing cost for shorts, no slippage beyond the cost per trade.
Sharpe is annualised with sqrt(252) trading days.
"""

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

TRADING_DAYS = 252

# strategy name -> positions (-1 short, 0 flat, 1 long) from the day-ordered one-step forecasts of log returns.
STRATEGIES: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "long_flat": lambda forecast: (forecast > 0).astype(np.float64),
    "long_short": lambda forecast: np.sign(forecast).astype(np.float64),  # flat when the forecast is exactly 0
}
BUY_AND_HOLD = "buy_hold"
STRATEGY_LABELS = {"long_flat": "long/flat", "long_short": "long/short", BUY_AND_HOLD: "buy and hold"}


@dataclass(frozen=True)
class Backtest:
    """One strategy's days: its positions, the amount traded into each, the net simple return and the equity
    (the value of 1 invested at the start) after each day."""

    positions: np.ndarray
    traded: np.ndarray
    daily: np.ndarray
    equity: np.ndarray

    def figures(self) -> dict[str, float]:
        """total_return (equity - 1 at the end), sharpe, max_drawdown (a share of the peak) and turnover."""
        return {
            "total_return": float(self.equity[-1] - 1),
            "sharpe": sharpe(self.daily),
            "max_drawdown": max_drawdown(self.equity),
            "turnover": float(self.traded.mean()),
        }


def run_backtest(positions: np.ndarray, log_returns: np.ndarray, cost_bps: float) -> Backtest:
    """Hold `positions[t]` over day t, whose realised log return is `log_returns[t]`, paying for every trade."""
    positions = np.asarray(positions, dtype=np.float64)
    traded = np.abs(np.diff(positions, prepend=0.0))
    daily = positions * np.expm1(np.asarray(log_returns, dtype=np.float64)) - traded * cost_bps / 1e4
    return Backtest(positions, traded, daily, np.cumprod(1 + daily))


def sharpe(daily: np.ndarray) -> float:
    """Annualised mean over standard deviation (ddof 1) of daily returns; 0 for a strategy that never varies
    (always flat), which has neither return nor risk."""
    spread = daily.std(ddof=1)
    return float(daily.mean() / spread * np.sqrt(TRADING_DAYS)) if spread > 0 else 0.0


def max_drawdown(equity: np.ndarray) -> float:
    """The largest fall from a running peak, as a share of that peak (0.2 = lost 20% from the high); the start
    (equity 1) counts as a peak."""
    path = np.concatenate([[1.0], equity])
    return float((1 - path / np.maximum.accumulate(path)).max())


def backtests(forecast: np.ndarray, log_returns: np.ndarray, cost_bps: float) -> dict[str, Backtest]:
    """Every strategy of STRATEGIES on the forecasts, and buy-and-hold (always long), on the same days."""
    runs = {name: run_backtest(rule(forecast), log_returns, cost_bps) for name, rule in STRATEGIES.items()}
    runs[BUY_AND_HOLD] = run_backtest(np.ones_like(log_returns, dtype=np.float64), log_returns, cost_bps)
    return runs


__all__ = [
    "BUY_AND_HOLD",
    "STRATEGIES",
    "TRADING_DAYS",
    "Backtest",
    "backtests",
    "max_drawdown",
    "run_backtest",
    "sharpe",
]
