"""Sweep benchmarks on ETTh1 (H = 96), each a real `stw sweep` study tracked in MLflow:

  best     the default sweep (lookback chosen by the sweep) with a fixed trial budget: best val/test MSE,
           trials completed/pruned/failed, wall time. Target: best test MSE <= 0.370 within 30 minutes.
  pruning  the same 20-trial budget with --pruner median and --pruner none: wall-time ratio (target <= 0.6)
           and best val MSE gap (target within 2%).
  workers  a fixed 16-trial sweep with 1 and with 2 worker processes: wall-time ratio (target <= 0.65).

    python benchmarks/sweep_ett.py --part all
Writes benchmarks/results/sweep_ett.json and .md (parts not run keep their previous figures).
"""

import argparse
import json
import os
import time
from pathlib import Path

from experiments.sweep.cli import build_plan, sweep_parser
from experiments.sweep.driver import run_sweep

RESULTS = Path(__file__).parent / "results"
# Pruning and worker comparisons use cheaper trials (fewer families and lookbacks) so that each side of a
# comparison fits in minutes; what they compare is relative, on identical budgets and seeds.
COMPARE = [
    "--families",
    "linear,mlp,cnn",
    "data.horizon=96",
    "data.lookback=96",
    "trainer.max_epochs=8",
    "trainer.patience=0",
]


def sweep(study: str, words: list[str], storage_dir: Path) -> dict:
    args = sweep_parser().parse_args(
        ["--study", study, "--storage", f"sqlite:///{storage_dir / 'optuna.db'}", "--quiet", *words]
    )
    plan = build_plan(args)
    started = time.perf_counter()
    study_obj, parent = run_sweep(plan)
    seconds = time.perf_counter() - started
    states = [t.state.name for t in study_obj.trials]
    best = study_obj.best_trial
    row = {
        "study": study,
        "seconds": seconds,
        "load_average_after": os.getloadavg()[0],
        "complete": states.count("COMPLETE"),
        "pruned": states.count("PRUNED"),
        "failed": states.count("FAIL"),
        "best_val_mse": best.value,
        "best_test_mse": best.user_attrs.get("test_mse"),
        "best_family": best.params.get("family"),
        "best_params": best.params,
        "parent_run_id": parent,
    }
    print(json.dumps(row), flush=True)
    return row


def part_best(stamp: str, storage: Path, trials: int, timeout: float) -> dict:
    row = sweep(
        f"bench-best-{stamp}",
        ["--trials", str(trials), "--timeout", str(timeout), "data.horizon=96", "trainer.max_epochs=10"],
        storage,
    )
    return {**row, "trial_budget": trials, "timeout_seconds": timeout}


def part_pruning(stamp: str, storage: Path) -> dict:
    pruned = sweep(f"bench-median-{stamp}", ["--trials", "20", "--pruner", "median", *COMPARE], storage)
    full = sweep(f"bench-nopruner-{stamp}", ["--trials", "20", "--pruner", "none", *COMPARE], storage)
    return {
        "median": pruned,
        "none": full,
        "time_ratio": pruned["seconds"] / full["seconds"],
        "best_val_gap": pruned["best_val_mse"] / full["best_val_mse"] - 1,
    }


def part_workers(stamp: str, storage: Path) -> dict:
    one = sweep(f"bench-1worker-{stamp}", ["--trials", "16", "--pruner", "none", "--workers", "1", *COMPARE], storage)
    two = sweep(f"bench-2workers-{stamp}", ["--trials", "16", "--pruner", "none", "--workers", "2", *COMPARE], storage)
    return {"one": one, "two": two, "time_ratio": two["seconds"] / one["seconds"]}


def markdown(results: dict) -> str:
    lines = ["# Sweep benchmarks on ETTh1 (H = 96, 2-core CPU)", ""]
    if best := results.get("best"):
        lines += [
            "## Default sweep",
            "",
            f"- budget: {best['trial_budget']} trials or "
            f"{best['timeout_seconds'] / 60:.0f} min, whichever ends first; 10 epochs at most per trial",
            f"- trials: {best['complete']} complete, {best['pruned']} pruned, "
            f"{best['failed']} failed in {best['seconds'] / 60:.1f} min",
            f"- best trial: {best['best_family']}, val MSE {best['best_val_mse']:.4f}, test MSE "
            f"{best['best_test_mse']:.4f} (target <= 0.370 within 30 min)",
            "",
        ]
    if pruning := results.get("pruning"):
        lines += [
            "## Pruning (20 trials, median vs none)",
            "",
            f"- wall time: {pruning['median']['seconds']:.0f} s vs {pruning['none']['seconds']:.0f} s, "
            f"ratio {pruning['time_ratio']:.2f} (target <= 0.6)",
            f"- best val MSE: {pruning['median']['best_val_mse']:.4f} vs {pruning['none']['best_val_mse']:.4f}, "
            f"gap {100 * pruning['best_val_gap']:+.1f}% (target within 2%)",
            f"- pruned trials: {pruning['median']['pruned']}",
            "",
        ]
    if workers := results.get("workers"):
        lines += [
            "## Parallel workers (16 trials)",
            "",
            f"- wall time: 2 workers {workers['two']['seconds']:.0f} s vs 1 worker {workers['one']['seconds']:.0f} s, "
            f"ratio {workers['time_ratio']:.2f} (target <= 0.65)",
            "",
        ]
    if earlier := results.get("earlier"):
        lines += ["## Earlier measurements (same script, replaced above)", ""]
        lines += [
            f"- {e['part']} ({e.get('date', '?')}): {e['complete']} complete, {e['pruned']} pruned in "
            f"{e['seconds'] / 60:.1f} min, best val {e['best_val_mse']:.4f}, test {e['best_test_mse']:.4f}"
            for e in earlier
            if e["part"] == "best"
        ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--part", choices=["best", "pruning", "workers", "all"], default="all")
    parser.add_argument(
        "--trials", type=int, default=60, help="trial budget of the 'best' part (the timeout may end it first)"
    )
    parser.add_argument("--timeout", type=float, default=1800, help="seconds for the 'best' part")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "sweep_ett.json"
    results = json.loads(path.read_text()) if path.exists() else {}
    stamp, storage = time.strftime("%Y%m%d-%H%M%S"), Path("mlruns")
    storage.mkdir(exist_ok=True)
    parts = {
        "best": lambda: part_best(stamp, storage, args.trials, args.timeout),
        "pruning": lambda: part_pruning(stamp, storage),
        "workers": lambda: part_workers(stamp, storage),
    }
    for name in parts if args.part == "all" else [args.part]:
        if name in results:  # earlier measurements stay on record
            results.setdefault("earlier", []).append({"part": name, **results[name]})
        results[name] = {**parts[name](), "date": time.strftime("%Y-%m-%d %H:%M")}
        path.write_text(json.dumps(results, indent=2))
        (args.out / "sweep_ett.md").write_text(markdown(results))
    print(markdown(results))


if __name__ == "__main__":
    main()
