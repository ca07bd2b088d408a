"""Stock benchmark: the default stock sweep on the shipped tickers, judged the way traders judge a forecast.

A real `stw sweep --data stock` study tracked in MLflow: the default search space and objective (val_mse) over
the default families, on the daily returns of the shipped tickers (all 21 by default, aligned on their common
dates, 2005-2017) with SPY's next close returns as the target, split chronologically (70/15/15 with a horizon's
embargo between the parts). For the trial the sweep chose (best val_mse; test scores play no part in choosing):
  - test MSE against the zero-return forecast (and the best naive forecast),
  - hit rate (sign of the one-step forecast) against always up,
  - information coefficient (Pearson) and rank IC (Spearman) of forecast and realised return,
  - the test-period backtests, long/flat and long/short on the forecast's sign, against buy-and-hold after
    task.cost_bps per trade (default 5): total return, annualised Sharpe, max drawdown, turnover.
An evaluation of forecasts, not advice. Also counted: how many completed trials beat zero on test at all.

    python benchmarks/stock.py [--trials 20] [--timeout 1800] [--tickers spy,aapl] [key=value ...]
Writes benchmarks/results/stock.json and .md (to --out). key=value words fix a config value in every trial.
"""

import argparse
import json
import os
import time
from pathlib import Path

import optuna
from optuna.trial import TrialState

from datamodules.stock import SHA256
from experiments.sweep.cli import build_plan, sweep_parser
from experiments.sweep.driver import run_sweep
from experiments.verdicts import beats_best_naive, verdict_lines
from lightning_modules.backtest import BUY_AND_HOLD, STRATEGIES, STRATEGY_LABELS

RESULTS = Path(__file__).parent / "results"
TARGET_TICKER = "spy"
SHIPPED = [TARGET_TICKER, *sorted(set(SHA256) - {TARGET_TICKER})]
# What the report shows of the chosen trial, as (label, model metric, floor metric, floor label).
COMPARISONS = [
    ("test MSE (scaled)", "test_mse", "baseline_zero_mse", "zero-return forecast"),
    ("hit rate (h = 1)", "test_hit_rate", "baseline_always_up_hit_rate", "always up"),
    ("information coefficient", "test_ic", None, "0"),
    ("rank IC", "test_rank_ic", None, "0"),
    *(
        (
            f"{STRATEGY_LABELS[strategy]} {label}",
            f"test_backtest_{strategy}_{figure}",
            f"baseline_{BUY_AND_HOLD}_{figure}",
            STRATEGY_LABELS[BUY_AND_HOLD],
        )  # fmt: skip
        for strategy in STRATEGIES
        for figure, label in (
            ("total_return", "total return"),
            ("sharpe", "Sharpe"),
            ("max_drawdown", "max drawdown"),
            ("turnover", "turnover"),
        )  # fmt: skip
    ),
]


def run(trials: int, timeout: float, tickers: list[str], overrides: list[str], tracking_uri: str | None) -> dict:
    storage = Path("mlruns")
    storage.mkdir(exist_ok=True)
    study_name = f"bench-stock-{time.strftime('%Y%m%d-%H%M%S')}"
    words = ["--data", "stock", "--study", study_name, "--trials", str(trials), "--timeout", str(timeout),
             "--storage", f"sqlite:///{storage.resolve() / 'optuna.db'}", "--quiet",
             f"data.tickers=[{','.join(tickers)}]", f"data.target={TARGET_TICKER}", *overrides]  # fmt: skip
    if tracking_uri:
        words += ["--tracking-uri", tracking_uri]
    plan = build_plan(sweep_parser().parse_args(words))
    load_before, clock = os.getloadavg()[0], time.perf_counter()
    study, parent = run_sweep(plan)
    seconds = time.perf_counter() - clock
    return {
        **summarise(study),
        "study": study_name,
        "parent_run_id": parent,
        "sweep_seconds": seconds,
        "load_average": [load_before, os.getloadavg()[0]],
        "tickers": tickers,
        "target": TARGET_TICKER,
        "overrides": overrides,
        "trial_budget": trials,
        "timeout": timeout,
    }


def summarise(study: optuna.Study) -> dict:
    states = [trial.state.name for trial in study.trials]
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    counts = {"complete": len(complete), "pruned": states.count("PRUNED"), "failed": states.count("FAIL")}
    if not complete:
        return {"trials": counts, "chosen": None}
    chosen = study.best_trial
    metrics = {name: value for name, value in chosen.user_attrs.items() if isinstance(value, float)}
    return {
        "trials": {**counts, "beating_best_naive_on_test": sum(bool(beats_best_naive(t.user_attrs)) for t in complete)},
        "chosen": {
            "number": chosen.number,
            "family": chosen.params.get("family"),
            "val_mse": chosen.value,
            "params": chosen.params,
            "run_id": chosen.user_attrs.get("mlflow_run_id"),
            "metrics": metrics,
        },
    }


def markdown(results: dict) -> str:
    trials, chosen = results["trials"], results["chosen"]
    lines = [
        "# Stock: default sweep on the shipped tickers, judged as traders judge it (2-core CPU)",
        "",
        f"- {len(results['tickers'])} tickers as inputs ({', '.join(results['tickers'])}), target {results['target']}'s "
        "next close log returns; chronological split",
        f"- study {results['study']}: {trials['complete']} complete, {trials['pruned']} pruned, {trials['failed']} failed "
        f"in {results['sweep_seconds'] / 60:.1f} min (budget {results['trial_budget']} trials, timeout "
        f"{results['timeout']:.0f} s; load average {results['load_average'][0]:.1f} before, "
        f"{results['load_average'][1]:.1f} after); fixed: {' '.join(results['overrides']) or 'nothing'}",
    ]
    if chosen is None:
        return "\n".join([*lines, "", "No trial completed: nothing to report."]) + "\n"
    metrics = chosen["metrics"]
    lines += [
        f"- chosen trial #{chosen['number']} ({chosen['family']}, best val_mse {chosen['val_mse']:.4f}), MLflow run "
        f"{chosen['run_id']}; completed trials beating their best naive forecast on test: "
        f"{trials['beating_best_naive_on_test']} of {trials['complete']}",
        "",
        "| measure (test period) | chosen model | floor | floor's value |",
        "|---|---|---|---|",
    ]
    for label, mine, floor, floor_label in COMPARISONS:
        if mine in metrics:
            value = f"{metrics[floor]:.4f}" if floor else "0"
            lines.append(f"| {label} | {metrics[mine]:.4f} | {floor_label} | {value} |")
    lines += ["", "In words (backtest figures are an evaluation of the forecasts, not advice):", ""]
    lines += [f"- {line}" for line in verdict_lines(metrics)]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=20, help="trial budget (the timeout may end the sweep first)")
    parser.add_argument("--timeout", type=float, default=1800, help="stop starting trials after this many seconds")
    parser.add_argument(
        "--tickers", default=",".join(SHIPPED), help="comma-separated input tickers (default: all shipped)"
    )
    parser.add_argument("--tracking-uri", default=None, help="MLflow store (default: $MLFLOW_TRACKING_URI or mlruns/)")
    parser.add_argument("--out", type=Path, default=RESULTS, help="folder for stock.json and stock.md")
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="fixed config values for every trial")
    args = parser.parse_args()
    tickers = [t.strip().lower() for t in args.tickers.split(",") if t.strip()]
    results = {**run(args.trials, args.timeout, tickers, args.overrides, args.tracking_uri),
               "date": time.strftime("%Y-%m-%d %H:%M")}  # fmt: skip
    args.out.mkdir(parents=True, exist_ok=True)
    report = markdown(results)
    for name, text in (("stock.json", json.dumps(results, indent=2)), ("stock.md", report)):
        (args.out / name).write_text(text)
    print(report)


if __name__ == "__main__":
    main()
