"""Hard budgets, measured: a real `stw sweep` on ETTh1 whose trials would each train for ever (no early stopping,
a huge max_epochs), so every trial ends by a budget: --trial-timeout cuts the first ones, --timeout the last.

Targets (issue 11): no trial runs more than 10% past its trial budget; the sweep ends within 2% of --timeout.

    python benchmarks/sweep_budget.py [--timeout 120 --trial-timeout 40]
Writes benchmarks/results/sweep_budget.json and .md.
"""

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

from experiments.sweep.cli import build_plan, sweep_parser
from experiments.sweep.driver import run_sweep

RESULTS = Path(__file__).parent / "results"
SLOW_TRIALS = ["--families", "linear", "--no-recipes", "--pruner", "none", "data.horizon=96",
               "trainer.max_epochs=100000", "trainer.patience=0", "trainer.limit_train_batches=20"]  # fmt: skip


def measure(timeout: float, trial_timeout: float, trials: int) -> dict:
    with tempfile.TemporaryDirectory(prefix="stw-budget-") as tmp:
        args = sweep_parser().parse_args(
            ["--study", "budget", "--storage", f"sqlite:///{tmp}/optuna.db", "--tracking-uri", f"sqlite:///{tmp}/mlflow.db",
             "--timeout", str(timeout), "--trial-timeout", str(trial_timeout), "--trials", str(trials), "--quiet",
             *SLOW_TRIALS]
        )  # fmt: skip
        plan = build_plan(args)
        started = time.perf_counter()
        study, _ = run_sweep(plan)
        seconds, ended = time.perf_counter() - started, time.time()
    rows = []
    for trial in study.trials:
        took = (trial.datetime_complete - trial.datetime_start).total_seconds() if trial.datetime_complete else None
        rows.append({"trial": trial.number, "state": trial.state.name, "cut_by": trial.user_attrs.get("cut_by"),
                     "seconds": took, "over_trial_budget": took / trial_timeout - 1 if took is not None else None,
                     # from the cut to the trial's end: validating, testing and recording the best checkpoint
                     "closing_seconds": trial.datetime_complete.timestamp() - trial.user_attrs["cut_at"]
                     if trial.datetime_complete and trial.user_attrs.get("cut_at") else None,
                     "val_mse": trial.value, "test_mse": trial.user_attrs.get("test_mse")})  # fmt: skip
    last_trial_end = max(t.datetime_complete.timestamp() for t in study.trials if t.datetime_complete)
    worst = max((r["over_trial_budget"] for r in rows if r["over_trial_budget"] is not None), default=None)
    return {
        "timeout": timeout,
        "trial_timeout": trial_timeout,
        "sweep_seconds": seconds,
        "sweep_vs_timeout": seconds / timeout - 1,
        "worst_trial_vs_budget": worst,
        # the sweep's report and the parent run's close, which the sweep's reserve must hold (budget.REPORT_S)
        "after_last_trial_seconds": ended - last_trial_end,
        "sweep_within_2pct": abs(seconds / timeout - 1) <= 0.02,
        "trials_within_10pct": worst is not None and worst <= 0.10,
        "load_average_after": os.getloadavg()[0],
        "cpus": os.cpu_count(),
        "trials": rows,
    }


def markdown(result: dict) -> str:
    lines = [
        "# Hard budgets (benchmarks/sweep_budget.py)",
        "",
        f"ETTh1 (H = 96), linear trials that never stop by themselves; --timeout {result['timeout']:g} s, "
        f"--trial-timeout {result['trial_timeout']:g} s, {result['cpus']} CPUs, load average "
        f"{result['load_average_after']:.1f} after the run.",
        "",
        f"- sweep wall time {result['sweep_seconds']:.1f} s: {result['sweep_vs_timeout']:+.1%} of --timeout "
        f"(target within 2%: {'met' if result['sweep_within_2pct'] else 'NOT met'})",
        f"- after the last trial: {result['after_last_trial_seconds']:.1f} s of report and closing the parent run",
        f"- worst trial {result['worst_trial_vs_budget']:+.1%} of its trial budget "
        f"(target at most +10%: {'met' if result['trials_within_10pct'] else 'NOT met'})",
        "",
        "| trial | state | cut by | seconds | vs trial budget | closing s | val MSE | test MSE |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in result["trials"]:
        cells = [str(r["trial"]), r["state"], r["cut_by"] or "-",
                 f"{r['seconds']:.1f}" if r["seconds"] is not None else "-",
                 f"{r['over_trial_budget']:+.1%}" if r["over_trial_budget"] is not None else "-",
                 f"{r['closing_seconds']:.1f}" if r["closing_seconds"] is not None else "-",
                 f"{r['val_mse']:.4f}" if r["val_mse"] is not None else "-",
                 f"{r['test_mse']:.4f}" if r["test_mse"] is not None else "-"]  # fmt: skip
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--timeout", type=float, default=120)
    parser.add_argument("--trial-timeout", type=float, default=40)
    parser.add_argument("--trials", type=int, default=6)
    args = parser.parse_args()
    result = measure(args.timeout, args.trial_timeout, args.trials)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "sweep_budget.json").write_text(json.dumps(result, indent=2) + "\n")
    (RESULTS / "sweep_budget.md").write_text(markdown(result))
    print(markdown(result))


if __name__ == "__main__":
    main()
