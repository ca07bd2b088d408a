"""Sweep benchmarks on ETTh1 (H = 96), each a real `stw sweep` study tracked in MLflow:

  best     the default sweep bounded by --timeout 1800 alone (lookback chosen by the sweep), chosen by validation:
           its test MSE (target <= 0.355), `--ensemble 5` (its default greedy pick; target <= 0.350) beside the
           mean of the top 5 trials by validation (--ensemble-pick top, for comparison), the best recipe it
           ran, the chosen configuration's 3-seed spread, and how the search kept to its budgets (the search ends
           within 2% of --timeout, no trial more than 10% past its trial budget).
  pruning  the same 20-trial budget with --pruner median and --pruner none: wall-time ratio (target <= 0.6)
           and best val MSE gap (target within 2%).
  workers  a fixed 16-trial sweep with 1 and with 2 worker processes: wall-time ratio (target <= 0.65).
  selection  the selection rules on the same trials: for each seed (--selection-seeds, default 0,1,2), one 10-trial
           linear sweep chosen by val MSE (then --confirm 3 --seeds 2 on it) and one chosen by --val-windows 4
           (a linear trial took 40-270 s on 2 busy cores); the random sampler and no pruner
           give both sweeps of a seed the same configurations, so only the rule differs. The test MSE of each
           rule's choice, and the best test MSE among the trials for reference (never used to choose).

    python benchmarks/sweep_ett.py --part all
Writes benchmarks/results/sweep_ett.json and .md (parts not run keep their previous figures).
"""

import argparse
import json
import os
import time
from pathlib import Path

import optuna
from mlflow.tracking import MlflowClient
from optuna.trial import TrialState

from experiments.ensemble import assemble, load_members, log_ensemble
from experiments.sweep.cli import build_plan, sweep_parser
from experiments.sweep.driver import run_sweep
from experiments.sweep.recipes import RECIPE_ATTR
from experiments.sweep.study import SweepPlan
from experiments.tracking import Tag

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


def run(study: str, words: list[str], storage_dir: Path) -> tuple[optuna.Study, SweepPlan, float]:
    args = sweep_parser().parse_args(
        ["--study", study, "--storage", f"sqlite:///{storage_dir / 'optuna.db'}", "--quiet", *words]
    )
    plan = build_plan(args)
    started = time.perf_counter()
    study_obj, _ = run_sweep(plan)
    return study_obj, plan, time.perf_counter() - started


def summary(study: optuna.Study, plan: SweepPlan, seconds: float) -> dict:
    states = [t.state.name for t in study.trials]
    best = study.best_trial
    row = {
        "study": plan.study,
        "seconds": seconds,
        "load_average_after": os.getloadavg()[0],
        "complete": states.count("COMPLETE"),
        "pruned": states.count("PRUNED"),
        "failed": states.count("FAIL"),
        "best_val_mse": best.value,
        "best_test_mse": best.user_attrs.get("test_mse"),
        "best_family": best.params.get("family"),
        "best_recipe": best.user_attrs.get(RECIPE_ATTR),
        "best_params": best.params,
        "parent_run_id": plan.parent_run_id,
    }
    print(json.dumps(row), flush=True)
    return row


def sweep(study: str, words: list[str], storage_dir: Path) -> dict:
    return summary(*run(study, words, storage_dir))


def part_best(stamp: str, storage: Path, trials: int | None, timeout: float) -> dict:
    """The default sweep bounded by --timeout alone, then the seed spread of its choice (--confirm 1 --seeds 2:
    the chosen configuration retrained with two more seeds), `--ensemble 5` and, for comparison, the mean of the
    top 5 trials by validation. They run after the search, outside --timeout, and none changes which trial the
    search chose."""
    words = ["--timeout", str(timeout), "--confirm", "1", "--seeds", "2", "--ensemble", "5", "data.horizon=96"]
    study, plan, seconds = run(f"bench-best-{stamp}", words + (["--trials", str(trials)] if trials else []), storage)
    row = summary(study, plan, seconds)
    done = [t for t in study.trials if t.datetime_complete]
    last_end = max(t.datetime_complete.timestamp() for t in done)
    over = [(t.datetime_complete - t.datetime_start).total_seconds() / plan.trial_timeout - 1 for t in done]
    recipes = [{"recipe": t.user_attrs[RECIPE_ATTR], "state": t.state.name, "val_mse": t.value,
                "test_mse": t.user_attrs.get("test_mse")} for t in study.trials if RECIPE_ATTR in t.user_attrs]  # fmt: skip
    scored = [r for r in recipes if r["val_mse"] is not None]
    top_recipe = min(scored, key=lambda r: r["val_mse"]) if scored else None
    client = MlflowClient(plan.tracking_uri)
    parent = client.get_run(plan.parent_run_id).data.metrics
    numbers = {t.user_attrs.get("mlflow_run_id"): t for t in study.trials}
    members = (
        client.get_run(client.get_run(plan.parent_run_id).data.tags[Tag.ENSEMBLE_RUN_ID])
        .data.tags[Tag.ENSEMBLE_MEMBERS]
        .split(",")
    )
    ranked = sorted((t for t in study.trials if t.state == TrialState.COMPLETE), key=lambda t: t.value)
    top = log_ensemble(assemble(load_members([t.user_attrs["mlflow_run_id"] for t in ranked[:5]], plan.tracking_uri)),
                       plan.tracking_uri, parent_run_id=plan.parent_run_id, tags={Tag.STUDY: plan.study})  # fmt: skip
    return {
        **row,
        "trial_budget": trials,
        "timeout_seconds": timeout,
        "trial_timeout_seconds": plan.trial_timeout,
        # the search (its last trial closed) against --timeout; the confirmation and the ensemble come after
        "search_seconds": last_end - plan.started,
        "search_vs_timeout": (last_end - plan.started) / timeout - 1,
        "worst_trial_vs_budget": max(over),
        "recipes": recipes,
        "top_recipe": top_recipe,
        "chosen_seeds": parent.get("chosen_seeds"),
        "chosen_test_mse_mean": parent.get("chosen_test_mse_mean"),
        "chosen_test_mse_std": parent.get("chosen_test_mse_std"),
        "chosen_val_mse_mean": parent.get("chosen_val_mse_mean"),
        "ensemble_val_mse": parent.get("ensemble_val_mse"),
        "ensemble_test_mse": parent.get("ensemble_test_mse"),
        "ensemble_members": [
            {
                "trial": numbers[m].number,
                "family": numbers[m].params.get("family"),
                "val_mse": numbers[m].value,
                "test_mse": numbers[m].user_attrs.get("test_mse"),
            }
            for m in members
            if m in numbers
        ],  # fmt: skip
        "top5_ensemble_val_mse": top.metrics["val_mse"],
        "top5_ensemble_test_mse": top.metrics["test_mse"],
    }


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


# Linear trials (DLinear/RLinear-style, lookbacks 96-720, RevIN, the cycle: the space's linear knobs) take
# seconds, so three seeds of two sweeps fit minutes; an mlp or cnn trial at L = 720 took minutes.
SELECTION = ["--trials", "10", "--sampler", "random", "--pruner", "none", "--no-recipes", "--families", "linear",
             "data.horizon=96"]  # fmt: skip


def part_selection(stamp: str, storage: Path, seed_list: list[int], earlier: dict | None) -> dict:
    """The seeds in seed_list are run; those measured before (same script) and not run again are kept."""
    seeds = [row for row in (earlier or {}).get("seeds", []) if row["seed"] not in seed_list]
    for seed in seed_list:
        common = [*SELECTION, "--seed", str(seed)]
        plain, plan, _ = run(f"bench-select-val-{seed}-{stamp}", [*common, "--confirm", "3", "--seeds", "2"], storage)
        windows, _, _ = run(f"bench-select-windows-{seed}-{stamp}", [*common, "--val-windows", "4"], storage)
        parent = MlflowClient(plan.tracking_uri).get_run(plan.parent_run_id).data.metrics
        done = [t for t in plain.trials if t.user_attrs.get("test_mse") is not None]
        seeds.append({
            "seed": seed,
            "same_configurations": [t.params for t in plain.trials] == [t.params for t in windows.trials],
            "val_mse": plain.best_trial.user_attrs["test_mse"],
            "confirm": parent.get("chosen_test_mse_mean"),
            "val_windows": windows.best_trial.user_attrs["test_mse"],
            "best_test_among_trials": min(t.user_attrs["test_mse"] for t in done),
        })  # fmt: skip
        print(json.dumps(seeds[-1]), flush=True)
    seeds.sort(key=lambda row: row["seed"])
    rules = ("val_mse", "confirm", "val_windows", "best_test_among_trials")
    return {"seeds": seeds, "mean": {rule: sum(s[rule] for s in seeds) / len(seeds) for rule in rules}}


def met(ok: bool) -> str:
    return "met" if ok else "NOT met"


def fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def markdown(results: dict) -> str:
    lines = ["# Sweep benchmarks on ETTh1 (H = 96, 2-core CPU)", ""]
    if best := results.get("best"):
        budget = f"{best['trial_budget']} trials or " if best.get("trial_budget") else ""
        lines += [
            "## Default sweep (`stw sweep --data ett --timeout 1800`, H = 96)",
            "",
            f"- budget: {budget}{best['timeout_seconds'] / 60:.0f} min; default epochs, pruner and recipes",
            f"- trials: {best['complete']} complete, {best['pruned']} pruned, {best['failed']} failed",
            f"- chosen by validation: {best['best_family']}"
            + (f" (recipe {best['best_recipe']})" if best.get("best_recipe") else "")
            + f", val MSE {best['best_val_mse']:.4f}, **test MSE {best['best_test_mse']:.4f}** (target <= 0.355: "
            f"{met(best['best_test_mse'] <= 0.355)})",
        ]
        if best.get("ensemble_test_mse") is not None:
            members = ", ".join(f"#{m['trial']} {m['family']} (val {m['val_mse']:.4f})"
                                for m in best.get("ensemble_members", []))  # fmt: skip
            lines.append(f"- `--ensemble 5` (picked greedily on validation: {members or 'members not recorded'}): val "
                         f"MSE {best['ensemble_val_mse']:.4f}, **test MSE {best['ensemble_test_mse']:.4f}** (target "
                         f"<= 0.350: {met(best['ensemble_test_mse'] <= 0.350)})")  # fmt: skip
        if best.get("top5_ensemble_test_mse") is not None:
            lines.append(f"- for comparison, the mean of the top 5 trials by validation (`--ensemble-pick top`): val "
                         f"MSE {best['top5_ensemble_val_mse']:.4f}, test MSE {best['top5_ensemble_test_mse']:.4f}")  # fmt: skip
        if best.get("chosen_test_mse_mean") is not None:
            lines.append(f"- the chosen configuration over {best['chosen_seeds']:.0f} seeds: test MSE "
                         f"{best['chosen_test_mse_mean']:.4f} +- {best['chosen_test_mse_std']:.4f} (sample std)")  # fmt: skip
        if recipe := best.get("top_recipe"):
            lines.append(f"- best recipe by validation: {recipe['recipe']}, val {recipe['val_mse']:.4f}, test "
                         f"{recipe['test_mse']:.4f}; the chosen trial is at least as good on test: "
                         f"{met(best['best_test_mse'] <= recipe['test_mse'])}")  # fmt: skip
        if best.get("search_seconds") is not None:
            lines.append(f"- the search ended {best['search_seconds']:.0f} s after it started, "
                         f"{best['search_vs_timeout']:+.1%} of --timeout (target within 2%: "
                         f"{met(abs(best['search_vs_timeout']) <= 0.02)}); worst trial "
                         f"{best['worst_trial_vs_budget']:+.1%} of its {best['trial_timeout_seconds']:.0f} s budget "
                         f"(target at most +10%: {met(best['worst_trial_vs_budget'] <= 0.10)}); "
                         f"{best['seconds'] / 60:.1f} min in all with the confirmation and the ensemble; load "
                         f"average {best['load_average_after']:.1f} after")  # fmt: skip
        lines += ["", "| recipe | state | val MSE | test MSE |", "|---|---|---|---|"]
        lines += [f"| {r['recipe']} | {r['state']} | {fmt(r['val_mse'])} | {fmt(r['test_mse'])} |"
                  for r in best.get("recipes", [])]  # fmt: skip
        lines.append("")
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
    if selection := results.get("selection"):
        names = {"val_mse": "val MSE (default)", "confirm": "--confirm 3 --seeds 2 (mean of 3 seeds)",
                 "val_windows": "--val-windows 4", "best_test_among_trials": "best test among the trials (reference)"}  # fmt: skip
        lines += [
            f"## Selection rules ({len(selection['seeds'])} seed(s) x 10 random linear trials, no pruner, no recipes)",
            "",
            "Test MSE of the trial each rule chooses (both sweeps of a seed ran the same configurations: "
            + ", ".join(str(s["same_configurations"]) for s in selection["seeds"])
            + ").",
            "",
            "| rule | " + " | ".join(f"seed {s['seed']}" for s in selection["seeds"]) + " | mean |",
            "|---|" + "---|" * (len(selection["seeds"]) + 1),
        ]
        lines += [f"| {name} | " + " | ".join(fmt(s[rule]) for s in selection["seeds"])
                  + f" | {fmt(selection['mean'][rule])} |" for rule, name in names.items()]  # fmt: skip
        lines.append("")
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
    parser.add_argument("--part", choices=["best", "pruning", "workers", "selection", "all"], default="all")
    parser.add_argument(
        "--trials", type=int, default=None, help="trial budget of the 'best' part (default: none, the timeout ends it)"
    )
    parser.add_argument("--timeout", type=float, default=1800, help="seconds for the 'best' part")
    parser.add_argument(
        "--selection-seeds",
        default="0,1,2",
        help="comma-separated sampler seeds the 'selection' part runs (seeds measured before and not named are kept)",
    )
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
        "selection": lambda: part_selection(
            stamp, storage, [int(seed) for seed in args.selection_seeds.split(",")], results.get("selection")
        ),
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
