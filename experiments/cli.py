"""`stw`: the workbench's command line. Each subcommand is a thin entry point over experiments/*."""

import argparse
import importlib
import subprocess
import sys
from collections.abc import Callable

from experiments.config import parse_run_args
from experiments.interrupts import stop_like_ctrl_c
from experiments.tracking import default_tracking_uri

USAGE = """stw <command> [options]

commands:
  train      train one model on one dataset, tracked in MLflow
  sweep      Optuna sweep over families and knobs; every trial a nested MLflow run
  reproduce  retrain a logged run (or sweep trial) by its run ID and compare its metrics
  runs       list the runs of an experiment or a sweep, best first
  show       one run: config, metrics, tags, artifacts and the command that reproduces it
  compare    runs side by side: differing params, metrics, learning curves
  predict    predict new data with a logged run's model and preprocessing
  ui         open the MLflow UI on the local store
`stw <command> --help` explains each one.

Data is read from $STW_DATA_DIR (default ./data) and fetched on first use where a public source exists.
Runs go to $MLFLOW_TRACKING_URI, default sqlite:///mlruns/mlflow.db with artifacts under mlruns/.
"""


def _run_options(argv: list[str]) -> tuple[str | None, bool | None, list[str]]:
    """--tracking-uri and --quiet belong to the command, not to the run config."""
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--tracking-uri")
    parser.add_argument("--quiet", action="store_true")
    known, rest = parser.parse_known_args(argv)
    return known.tracking_uri, known.quiet or None, rest


def train(argv: list[str]) -> int:
    """stw train --data ett --model lstm [--config FILE.yaml] [key=value ...] [--tracking-uri URI] [--quiet]"""
    from experiments.train import run_training

    if any(a in ("-h", "--help") for a in argv):
        print(
            "Extra options: --tracking-uri URI (default $MLFLOW_TRACKING_URI or sqlite:///mlruns/mlflow.db), "
            "--quiet (no progress bar). Plain key=value words work like --key=value.\n"
        )
    tracking_uri, quiet, rest = _run_options(argv)
    config = parse_run_args(rest)
    result = run_training(config, tracking_uri, quiet=quiet)
    print(f"run {result.run_id} (experiment {config['data']['name']}):")
    for name in sorted(result.metrics):
        if name.startswith(("test_", "baseline_", "skill")):
            print(f"  {name:28s} {result.metrics[name]:.4f}")
    print(f"compare it in the MLflow UI: stw ui{' --tracking-uri ' + tracking_uri if tracking_uri else ''}")
    return 0


def ui(argv: list[str]) -> int:
    """Start `mlflow ui` on 127.0.0.1 on the default store and print its URL."""
    parser = argparse.ArgumentParser(prog="stw ui", description="Open the MLflow UI on the local run store.")
    parser.add_argument(
        "--tracking-uri", help="backend store (default: $MLFLOW_TRACKING_URI or sqlite:///mlruns/mlflow.db)"
    )
    parser.add_argument("--port", type=int, default=5000)
    args = parser.parse_args(argv)
    uri = default_tracking_uri(args.tracking_uri)
    print(f"MLflow UI for {uri} at http://127.0.0.1:{args.port}  (Ctrl-C stops it)", flush=True)
    command = [
        sys.executable,
        "-m",
        "mlflow",
        "ui",
        "--backend-store-uri",
        uri,
        "--host",
        "127.0.0.1",
        "--port",
        str(args.port),
    ]
    return subprocess.call(command)


# Command -> "module:function"; imported on use so `stw --help` and `stw ui` stay fast.
COMMANDS: dict[str, str] = {
    "train": "experiments.cli:train",
    "sweep": "experiments.sweep.cli:sweep_main",
    "reproduce": "experiments.reproduce:reproduce_main",
    "runs": "experiments.run_views:runs_main",
    "show": "experiments.run_views:show_main",
    "compare": "experiments.run_views:compare_main",
    "predict": "experiments.predict:predict_main",
    "ui": "experiments.cli:ui",
}


def command(name: str) -> Callable[[list[str]], int]:
    module, function = COMMANDS[name].split(":")
    return getattr(importlib.import_module(module), function)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in COMMANDS:
        print(USAGE)
        return 0 if not argv or argv[0] in ("-h", "--help") else 2
    stop_like_ctrl_c()
    try:
        return command(argv[0])(argv[1:])
    except KeyboardInterrupt as stop:
        print(f"stw {argv[0]}: {stop or 'interrupted'}", file=sys.stderr)  # runs and sweeps are closed as KILLED
        return 130
    except ValueError as error:  # DataError, ConfigError and invalid model options: a message, not a traceback
        print(f"stw {argv[0]}: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
