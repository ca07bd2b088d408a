"""Plain-language verdicts on a run's final metrics: does the model beat the floors it was scored against?

`stw train` prints them under the metrics and a sweep's summary under its chosen trial, so a model that loses to
a naive forecast, to always-up or to buy-and-hold says so in words, not only through a skill below 0.
"""

import re
from collections.abc import Callable

from lightning_modules.backtest import BUY_AND_HOLD, STRATEGIES, STRATEGY_LABELS
from lightning_modules.baselines import NAIVE_FORECASTS, best_naive, skill

NAIVE_MSE = re.compile(r"^baseline_(\w+)_mse$")


def compared(what: str, model: float, floor: float, against: str, higher_is_better: bool, detail: str = "") -> str:
    """'better than / worse than / ties <against> (<what> model vs floor<detail>)'."""
    if model == floor:
        verdict = "ties"
    else:
        verdict = "better than" if (model > floor) == higher_is_better else "worse than"
    return f"{verdict} {against} ({what} {model:.4f} vs {floor:.4f}{detail})"


def naive_label(name: str) -> str:
    return NAIVE_FORECASTS[name].label if name in NAIVE_FORECASTS else name


def against_naive(metrics: dict[str, float]) -> str | None:
    """The test MSE against the best naive forecast's, then every naive forecast's MSE, best first."""
    naive = {match.group(1): value for key, value in metrics.items() if (match := NAIVE_MSE.match(key))}
    if "test_mse" not in metrics or not naive:
        return None
    best = best_naive(naive)
    # The skill shows how large a difference is that four decimals of MSE may not (0.2477 vs 0.2477).
    detail = f", skill {skill(metrics['test_mse'], naive[best]):+.3g}"
    line = compared("MSE", metrics["test_mse"], naive[best], f"the {naive_label(best)} forecast", False, detail)
    ranked = ", ".join(f"{naive_label(name)} {value:.4f}" for name, value in sorted(naive.items(), key=lambda i: i[1]))
    return f"{line}; naive forecasts' MSE: {ranked}"


def against_always_up(metrics: dict[str, float]) -> str | None:
    if "test_hit_rate" not in metrics:
        return None
    line = compared("hit rate", metrics["test_hit_rate"], metrics["baseline_always_up_hit_rate"], "always up", True)
    return f"{line}; information coefficient {metrics['test_ic']:+.4f}, rank IC {metrics['test_rank_ic']:+.4f}"


def against_buy_and_hold(metrics: dict[str, float]) -> str | None:
    """Each backtest strategy's Sharpe against buy-and-hold's, after the run's trading costs."""
    hold = f"baseline_{BUY_AND_HOLD}_"
    if f"{hold}sharpe" not in metrics:
        return None
    lines = []
    for name in STRATEGIES:
        mine = f"test_backtest_{name}_"
        line = compared("Sharpe", metrics[f"{mine}sharpe"], metrics[f"{hold}sharpe"], "buy and hold", True)
        lines.append(f"{STRATEGY_LABELS[name]} {line}, total return {metrics[f'{mine}total_return']:+.1%} vs "
                     f"{metrics[f'{hold}total_return']:+.1%}, max drawdown {metrics[f'{mine}max_drawdown']:.1%} vs "
                     f"{metrics[f'{hold}max_drawdown']:.1%}")  # fmt: skip
    return "backtest after costs (evaluation, not advice): " + "; ".join(lines)


def against_majority(metrics: dict[str, float]) -> str | None:
    if "baseline_majority_acc" not in metrics or "test_acc" not in metrics:
        return None
    return compared("accuracy", metrics["test_acc"], metrics["baseline_majority_acc"],
                    "always the most frequent training class", True) + f"; MCC {metrics.get('test_mcc', float('nan')):+.4f}"  # fmt: skip


# What each verdict compares; a verdict whose metrics a run lacks says nothing.
VERDICTS: dict[str, Callable[[dict[str, float]], str | None]] = {
    "naive forecasts": against_naive,
    "always up": against_always_up,
    "buy and hold": against_buy_and_hold,
    "majority class": against_majority,
}


def verdict_lines(metrics: dict[str, float]) -> list[str]:
    """One sentence per floor the run was scored against."""
    return [line for verdict in VERDICTS.values() if (line := verdict(metrics))]


def beats_best_naive(metrics: dict[str, float]) -> bool | None:
    """Whether the test MSE is below every naive forecast's; None for runs without naive forecasts."""
    skill = metrics.get("skill_vs_best_naive")
    return None if skill is None else skill > 0


__all__ = ["VERDICTS", "beats_best_naive", "compared", "verdict_lines"]
