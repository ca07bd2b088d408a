"""Argument handling for `stw sweep`: turns the command line into a SweepPlan and prints the summary.

The parser needs nothing heavy, so `stw sweep --help` and argument errors answer at once; the driver (Optuna,
Lightning, MLflow) is imported once the arguments are known to be good.
"""

import argparse
import math
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from experiments import tracking
from experiments.sweep.budget import (
    DEFAULT_TRIALS,
    TIMED_SWEEP_MAX_FAILURES,
    TIMED_SWEEP_TRIALS,
    TRIAL_FLOOR_S,
    TRIAL_SHARE,
    default_trial_timeout,
    default_trials,
)

if TYPE_CHECKING:
    from experiments.sweep.study import SweepPlan

EPILOG = """examples:
  stw sweep                                   a small default sweep on ETTh1 (a few minutes on 2 cores)
  stw sweep --families rnn,transformer --trials 40 --timeout 1800 --workers 2
  stw sweep --study my-study                  resume: completed trials are kept, crashed ones retried
  stw sweep --val-windows 4 --confirm 3 --seeds 2
                                              choose by the mean over 4 validation blocks, then retrain the top 3
                                              with 2 more seeds each and keep the best mean
  stw sweep --space narrow.yaml optim.lr=0.001 trainer.max_epochs=20
                                              narrow the space from a file; key=value fixes a knob

Several machines: point every machine at one PostgreSQL study storage and one MLflow server, e.g.
  stw sweep --study big --storage postgresql://user:pw@db/optuna --tracking-uri http://mlflow:5000 --workers 2
on each machine; Optuna hands every process distinct trials.
"""


def sweep_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="stw sweep",
        description="Optuna sweep over model families and their knobs; every trial is a nested "
        "MLflow run holding everything a `stw train` run holds.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--data", default="ett", help="registered dataset (default: ett)")
    parser.add_argument(
        "--families",
        default=None,
        help="comma-separated families the study chooses among (default: the space's sweep_families for the "
        "dataset, e.g. ETT's adds segrnn,sparsetsf; else linear,cnn,rnn,transformer,cnn_rnn_transformer for "
        "forecasting and the same without linear for classification)",
    )
    parser.add_argument(
        "--trials",
        type=int,
        default=None,
        help="the study's target of finished (complete or pruned) trials; a resumed study runs the rest (default: "
        f"{DEFAULT_TRIALS}; with --timeout, as many as the budget holds)",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=None,
        help="wall-clock budget of the whole sweep in seconds: running trials stop training when the time to close "
        "is left (1.5 x the slowest closing measured in this sweep plus the report; before any: 5%%, at least 20 s; "
        "at most a quarter), test their best checkpoint so far and are recorded (tag stw.cut_by); no trial starts "
        "after that. Alone, without --trials, the sweep runs trials until it ends",
    )
    parser.add_argument(
        "--trial-timeout",
        type=float,
        default=None,
        help="seconds one trial may take, cut the same way (tag stw.cut_by=trial_timeout); default with --timeout: "
        f"{TRIAL_SHARE:g} x timeout x workers / trials (trials counted as {TIMED_SWEEP_TRIALS} without --trials), at "
        f"least {TRIAL_FLOOR_S:g} s; none without --timeout",
    )
    parser.add_argument(
        "--no-recipes",
        dest="recipes",
        action="store_false",
        help="do not start with the search space's known recipes (its recipes: section)",
    )
    parser.add_argument(
        "--study", default=None, help="study name; an existing name resumes it (default: <data>-<time>)"
    )
    parser.add_argument(
        "--storage",
        default=None,
        help="Optuna storage URL (default: sqlite:///mlruns/optuna.db); postgresql://... for several "
        "machines; a file path ending in .log for a journal file",
    )
    parser.add_argument("--workers", type=int, default=1, help="worker processes on this machine (default: 1)")
    parser.add_argument("--sampler", choices=["tpe", "random", "cmaes"], default="tpe")
    parser.add_argument(
        "--pruner",
        choices=["median", "hyperband", "halving", "none"],
        # halving: under one 400 s budget on ETTh1 it ran the most trials and chose the best on validation of the
        # four (benchmarks/results/sweep_pruners.md).
        default="halving",
        help="median: stop a trial below the median of earlier ones at the same epoch; hyperband / halving "
        "(successive halving): multi-fidelity over epochs, rungs at 1, 3, 9... epochs (default: %(default)s, "
        "chosen by benchmarks/sweep_pruners.py)",
    )
    parser.add_argument(
        "--metric",
        default=None,
        help="validation metric to optimise (default: val_mse for forecasting, val_f1 for classification)",
    )
    parser.add_argument(
        "--val-windows", type=int, default=1, metavar="K",
        help="forecasting: score validation in K consecutive blocks of windows (task.val_windows) and optimise "
        "their mean, val_mse_windows, unless --metric says otherwise (default: 1, one score over the period)",
    )  # fmt: skip
    parser.add_argument(
        "--confirm", type=int, default=0, metavar="K",
        help="after the search, retrain the top K configurations with --seeds extra seeds each and choose the one "
        "with the best mean validation score (default: 0, no confirmation)",
    )  # fmt: skip
    parser.add_argument(
        "--seeds", type=int, default=2, metavar="S", help="extra seeds per confirmed configuration (default: 2)"
    )
    parser.add_argument("--config", type=Path, default=None, help="base run config (YAML) every trial starts from")
    parser.add_argument(
        "--space",
        type=Path,
        default=None,
        help="search-space YAML merged over the default (see experiments/sweep/search_space.yaml)",
    )
    parser.add_argument("--seed", type=int, default=0, help="sampler seed")
    parser.add_argument(
        "--max-failures", type=int, default=None,
        help="stop once this many trials have failed in this sweep (default: the larger of 3 and --trials; "
        f"{TIMED_SWEEP_MAX_FAILURES} with --timeout alone); "
        "failed trials never count towards --trials",
    )  # fmt: skip
    parser.add_argument(
        "--heartbeat",
        type=int,
        default=10,
        help="seconds between trial heartbeats; a trial silent for 3 beats is failed and retried",
    )
    parser.add_argument(
        "--tracking-uri",
        default=None,
        help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI or sqlite:///mlruns/mlflow.db)",
    )
    parser.add_argument("--ensemble", type=int, default=0, metavar="K",
                        help="after the sweep, average up to K completed trials as an ensemble run nested under the "
                        "sweep's parent, reported beside the best trial; --ensemble-pick says which")  # fmt: skip
    parser.add_argument("--ensemble-pick", choices=("greedy", "top"), default="greedy",
                        help="greedy (default): from the best trial, add one at a time the trial whose joining most "
                        "improves the mean's validation score, stopping at K or when none does (a weaker model "
                        "whose errors differ can join); top: the K best trials by the validation metric")  # fmt: skip
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="fixed config values for every trial")
    return parser


def _overrides(words: list[str]) -> dict[str, Any]:
    from datamodules.errors import ConfigError

    flat = {}
    for word in words:
        key, sep, value = word.partition("=")
        if not sep:
            raise ConfigError(f"expected key=value, got {word!r}")
        flat[key.removeprefix("--")] = yaml.safe_load(value)
    return flat


def check_storage_url(storage: str) -> None:
    """A study store that cannot be created fails after the data is read and the parent run opened; check first."""
    from datamodules.errors import ConfigError

    kinds = ("sqlite:///", "postgresql://", "postgresql+", "mysql://", "mysql+")
    if "://" in storage and not storage.startswith(kinds):
        raise ConfigError(f"--storage {storage}: not a storage URL stw knows; use sqlite:///path/optuna.db, "
                          "postgresql://user:password@host/db, or a file path ending in .log (an Optuna journal)")  # fmt: skip
    path = Path(storage.removeprefix("sqlite:///")) if storage.startswith("sqlite:///") else None
    if path is None and "://" not in storage:
        path = Path(storage)  # a journal file
    if path is not None and not path.parent.is_dir():
        raise ConfigError(f"--storage {storage}: the folder {path.parent} does not exist; create it or choose another")
    if path is not None and path.is_dir():
        raise ConfigError(f"--storage {storage}: {path} is a folder; name a file in it, e.g. {path / 'optuna.db'}")


def build_plan(args: argparse.Namespace) -> "SweepPlan":
    from datamodules import dataset_class
    from datamodules.errors import ConfigError
    from experiments.config import config_from_dict, read_config_file
    from experiments.devices import check_placement
    from experiments.plugins import explicit_modules
    from experiments.sweep.driver import SWEEP_DEFAULTS
    from experiments.sweep.space import deep_merge, default_families, load_space, nest
    from experiments.sweep.study import SweepPlan, default_storage
    from lightning_modules import TASKS
    from lightning_modules.val_windows import WINDOWS_METRIC

    if (args.trials is not None and args.trials < 1) or args.workers < 1:
        raise ConfigError(
            f"--trials and --workers must be at least 1, got --trials {args.trials} --workers {args.workers}"
        )
    if args.timeout is not None and args.timeout <= 0:
        raise ConfigError(f"--timeout must be a number of seconds above 0, got {args.timeout:g}")
    if args.ensemble and args.ensemble < 2:
        raise ConfigError(f"--ensemble {args.ensemble}: an ensemble averages two or more trials; give K >= 2")
    if args.trial_timeout is not None and args.trial_timeout <= 0:
        raise ConfigError(f"--trial-timeout must be a number of seconds above 0, got {args.trial_timeout:g}")
    if args.max_failures is not None and args.max_failures < 1:
        raise ConfigError(f"--max-failures must be at least 1, got {args.max_failures}")
    if args.storage:
        check_storage_url(args.storage)
    if args.val_windows < 1 or args.confirm < 0 or args.seeds < 1:
        raise ConfigError(f"--val-windows and --seeds must be at least 1 and --confirm at least 0, got --val-windows "
                          f"{args.val_windows} --confirm {args.confirm} --seeds {args.seeds}")  # fmt: skip
    task = TASKS[dataset_class(args.data).task]
    if args.val_windows > 1 and WINDOWS_METRIC not in task.monitorable:
        raise ConfigError(f"--val-windows applies to forecasting datasets; {args.data} is a {dataset_class(args.data).task} "
                          "dataset: drop --val-windows")  # fmt: skip
    space = load_space(args.space)
    families = (
        [f.strip() for f in args.families.split(",") if f.strip()]
        if args.families
        else default_families(space, args.data, task.sweep_families)
    )
    fixed = _overrides(args.overrides)
    if args.val_windows > 1:
        fixed["task.val_windows"] = args.val_windows
    base_file = read_config_file(args.config) if args.config else {}
    base = deep_merge(deep_merge(SWEEP_DEFAULTS, base_file), nest({**fixed, "data.name": args.data}))
    for family in families:  # fail before the study starts: unknown family, typo in a key, devices it cannot use
        check_placement(config_from_dict(deep_merge(base, {"model": {"family": family}})))
    trials = default_trials(args.trials, args.timeout)
    metric = args.metric or (WINDOWS_METRIC if args.val_windows > 1 else task.sweep_metric)
    return SweepPlan(
        data=args.data,
        families=families,
        trials=trials,
        timeout=args.timeout,
        study=args.study or f"{args.data}-{time.strftime('%Y%m%d-%H%M%S')}",
        storage=args.storage or default_storage(),
        tracking_uri=tracking.default_tracking_uri(args.tracking_uri),
        sampler=args.sampler,
        pruner=args.pruner,
        metric=metric,
        base=base,
        space=space,
        fixed=sorted(fixed),
        seed=args.seed,
        heartbeat=args.heartbeat,
        workers=args.workers,
        quiet=args.quiet,
        max_failures=args.max_failures or (TIMED_SWEEP_MAX_FAILURES if math.isinf(trials) else max(3, trials)),
        ensemble=args.ensemble,
        ensemble_pick=args.ensemble_pick,
        trial_timeout=args.trial_timeout or default_trial_timeout(args.timeout, args.workers, trials),
        recipes=args.recipes,
        plugins=explicit_modules(),
        confirm=args.confirm,
        seeds=args.seeds,
    )


def trial_count(plan: "SweepPlan") -> str:
    return f"trials for {plan.timeout:g} s" if math.isinf(plan.trials) else f"{plan.trials} trials"


def sweep_main(args: argparse.Namespace) -> int:
    from experiments.sweep.driver import run_sweep
    from experiments.sweep.report import summary_text
    from experiments.train import is_quiet

    args.quiet = args.quiet or is_quiet()
    plan = build_plan(args)
    print(
        f"study {plan.study} on {plan.data}: {trial_count(plan)} over {', '.join(plan.families)}; "
        f"optimising {plan.metric} (storage {plan.storage})",
        flush=True,
    )
    study, parent = run_sweep(plan)
    ui = "stw ui" + (
        f" --tracking-uri {plan.tracking_uri}" if plan.tracking_uri != tracking.default_tracking_uri() else ""
    )
    print(summary_text(study, plan, ui))
    if plan.ensemble_run_id:
        from experiments.sweep.report import ensemble_text

        print(ensemble_text(study, plan))
    if plan.confirm:
        from mlflow.tracking import MlflowClient

        from experiments.sweep.confirm import confirm_text, confirmation

        print(confirm_text(confirmation(MlflowClient(plan.tracking_uri), plan, study), plan))
    print(
        f"sweep parent run: {parent}; resume or extend with: stw sweep --data {plan.data} --study {plan.study} --trials N"
    )
    return 0
