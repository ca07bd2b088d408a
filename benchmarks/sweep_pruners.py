"""Which pruner should `stw sweep` default to? The same sweep on ETTh1 (H = 96) under the same wall-clock budget,
seed and recipes with each pruner: the chosen trial's validation MSE (what the sweep optimises) and its test MSE
(reported, never used to choose), and how many trials each pruner let the budget hold.

The comparison needs long sweeps on a quiet machine (the default is 1800 s per pruner, 2 hours in all); the
default pruner stays `median` until it has been run there. A smoke run checks the script itself:
    python benchmarks/sweep_pruners.py --timeout 60 --trials 4 --smoke
Writes benchmarks/results/sweep_pruners.json and .md (a smoke run writes sweep_pruners_smoke.*).
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
PRUNERS = ("median", "hyperband", "halving", "none")
# A smoke run: a few batches per epoch, so each pruner's sweep takes about --timeout seconds at most.
SMOKE = ["trainer.limit_train_batches=5", "trainer.limit_val_batches=5", "trainer.limit_test_batches=5"]


def sweep(pruner: str, timeout: float, trials: int, seed: int, extra: list[str]) -> dict:
    with tempfile.TemporaryDirectory(prefix="stw-pruners-") as tmp:
        args = sweep_parser().parse_args(
            ["--study", f"pruner-{pruner}", "--storage", f"sqlite:///{tmp}/optuna.db", "--tracking-uri",
             f"sqlite:///{tmp}/mlflow.db", "--pruner", pruner, "--timeout", str(timeout), "--trials", str(trials),
             "--seed", str(seed), "--quiet", "data.horizon=96", *extra]
        )  # fmt: skip
        started = time.perf_counter()
        study, _ = run_sweep(build_plan(args))
        seconds = time.perf_counter() - started
    states = [t.state.name for t in study.trials]
    complete = [t for t in study.trials if t.state.name == "COMPLETE"]
    best = study.best_trial if complete else None
    return {
        "pruner": pruner,
        "seconds": seconds,
        "complete": states.count("COMPLETE"),
        "pruned": states.count("PRUNED"),
        "failed": states.count("FAIL"),
        "best_val_mse": best.value if best else None,
        "best_test_mse": best.user_attrs.get("test_mse") if best else None,
        "best_family": best.params.get("family") if best else None,
        "best_recipe": best.user_attrs.get("recipe") if best else None,
        "load_average_after": os.getloadavg()[0],
    }


def markdown(rows: list[dict], timeout: float, smoke: bool, recipes: bool = True) -> str:
    def number(value: float | None) -> str:
        return f"{value:.4f}" if value is not None else "-"

    lines = [
        "# Pruners under one budget (benchmarks/sweep_pruners.py)"
        + (" - SMOKE RUN, not a measurement" if smoke else ""),
        "",
        f"ETTh1 (H = 96), --timeout {timeout:g} s per pruner, the default space "
        f"{'and recipes' if recipes else 'without recipes (sampled trials only)'}, sampler seed the same for each; "
        "the chosen trial is the best by validation MSE.",
        "",
        "| pruner | seconds | complete | pruned | failed | chosen family (recipe) | val MSE | test MSE | load after |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(f"| {r['pruner']} | {r['seconds']:.0f} | {r['complete']} | {r['pruned']} | {r['failed']} | "
                     f"{r['best_family']} ({r['best_recipe'] or 'sampled'}) | {number(r['best_val_mse'])} | "
                     f"{number(r['best_test_mse'])} | {r['load_average_after']:.1f} |")  # fmt: skip
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--timeout", type=float, default=1800)
    parser.add_argument("--trials", type=int, default=200, help="a target the budget should not reach")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--pruners", default=",".join(PRUNERS))
    parser.add_argument("--smoke", action="store_true", help="a few batches per epoch: checks the script only")
    parser.add_argument("--no-recipes", action="store_true",
                        help="sampled trials only: on a short budget the recipes, which every pruner runs alike, "
                        "would take most of it")  # fmt: skip
    args = parser.parse_args()
    rows = [
        sweep(
            p, args.timeout, args.trials, args.seed, (SMOKE if args.smoke else []) + ["--no-recipes"] * args.no_recipes
        )
        for p in args.pruners.split(",")
    ]
    name = "sweep_pruners_smoke" if args.smoke else "sweep_pruners"
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{name}.json").write_text(
        json.dumps({"timeout": args.timeout, "recipes": not args.no_recipes, "rows": rows}, indent=2) + "\n"
    )
    (RESULTS / f"{name}.md").write_text(markdown(rows, args.timeout, args.smoke, not args.no_recipes))
    print(markdown(rows, args.timeout, args.smoke, not args.no_recipes))


if __name__ == "__main__":
    main()
