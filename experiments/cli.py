"""`stw`: the workbench's command line, and its error boundary.

Every command's arguments are parsed here (the sweep's in experiments/sweep/cli.py) before anything heavy is
imported, so `--help` and argument errors answer at once; the command's work is in its own module, imported
on use. User errors (the StwError family) are printed as one message with exit code 2, `--debug` shows their
traceback too; any other exception is a bug and keeps its traceback.
"""

import argparse
import importlib
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from experiments.interrupts import stop_like_ctrl_c
from experiments.plugins import split_plugin_options

USAGE = """stw [--debug] [--plugin MODULE]... <command> [options]

commands:
  train      train one model on one dataset, tracked in MLflow
  sweep      Optuna sweep over families and knobs; every trial a nested MLflow run
  ensemble   average the forecasts or class probabilities of finished runs of one dataset, as a new run
  reproduce  retrain a logged run (or sweep trial, or ensemble) by its run ID and compare its metrics
  runs       list the runs of an experiment or a sweep, best first
  show       one run: config, metrics, tags, artifacts and the command that reproduces it
  compare    runs side by side: differing params, metrics, learning curves
  predict    predict new data with a logged run's model and preprocessing
  ui         open the MLflow UI on the local store
`stw <command> --help` explains each one. --debug shows the traceback of user errors too.
--plugin MODULE (repeatable, also after the command; or $STW_PLUGINS=mod_a,mod_b) imports your own datasets and
model families from a module on PYTHONPATH or in the current directory; installed packages register theirs
through the entry-point groups stw.datasets and stw.families.

Data is read from $STW_DATA_DIR (default ./data) and fetched on first use where a public source exists.
Runs go to $MLFLOW_TRACKING_URI, default sqlite:///mlruns/mlflow.db with artifacts under mlruns/.
"""
TRACKING_HELP = "MLflow tracking URI (default: $MLFLOW_TRACKING_URI or sqlite:///mlruns/mlflow.db)"
PREDICT_FORMATS = """input and output, per dataset (the run's fitted preprocessing is applied; nothing is refitted):
  ett, stock  one CSV (stock: one price file per ticker, named after it, e.g. spy.us.txt or SPY.csv) in the
              training data's format. A window is every `lookback` consecutive rows, the last ones included,
              whose forecast runs past the file's end; --future keeps only that last window's forecast.
              Output: one row per (window end, step): window_end (the window's last row), step (1..horizon),
              timestamp (the file's own row inside the file; past its end, ett continues the file's regular
              spacing and stock counts business days, Monday to Friday, exchange holidays not skipped), then
              per target, in original units:
                ett    <channel>_forecast, <channel>_actual (empty past the file's end)
                stock  <ticker>_close_log_return_forecast and _actual (the day's log return of the close),
                       <ticker>_close_price_forecast (the window end's close compounded by the forecast log
                       returns: close * exp(r_1 + ... + r_step)) and <ticker>_close_price_actual
  table       one CSV or Parquet file with the run's date column, targets and inputs, at the run's frequency
              (data.fill applies as in training). Output as for ett: window_end, step, timestamp (past the
              file's end, the run's frequency continued), <target>_forecast, <target>_actual.
  stock-direction
              price files as for stock. Output: window_end, move_end (the business day whose close is compared
              with window_end's), label (up or down), prob_down, prob_up; --future: the last window only.
  sms         a UTF-8 text file, one raw message per line. Output: text, label, prob_<class> per class.
  moving-shapes, hmdb51-samples, video-folder
              one clip per input: a video file (.avi, .mp4, ...) or a folder of frame images, sampled like a
              test clip. Output: clip (the input's path), label, prob_<class>.
  gestures    keypoint CSVs with the 16 keypoint columns; one row per window of data.clip_len frames, one
              starting every data.stride frames. Output: file, first_frame, last_frame, label, prob_<class>.
A run with a residual cycle (task.cycle_len) reads each window's phase from its rows' times: row 0 is the
training series' first timestamp and one row follows every step of its spacing, so a file may start anywhere on
that grid (rows past its end continue the count); a row off the grid is refused, and a run whose training series
has no single spacing (trading days) cannot predict from new files.
Numbers are written with 6 significant digits.
"""


def train_main(argv: list[str]) -> int:
    """stw train --data ett --model lstm [--config FILE.yaml] [key=value ...] [--tracking-uri URI] [--quiet]"""
    from experiments.config import parse_run_args
    from experiments.devices import relaunchable
    from experiments.tracking import final_metrics
    from experiments.train import run_training
    from experiments.verdicts import verdict_lines

    if any(a in ("-h", "--help") for a in argv):
        print("Extra options: --tracking-uri URI (default $MLFLOW_TRACKING_URI or sqlite:///mlruns/mlflow.db), "
              "--quiet (no progress bar), --plugin MODULE (your own datasets and families, see `stw --help`). "
              "Plain key=value words work like --key=value.\n")  # fmt: skip
    options = argparse.ArgumentParser(add_help=False)  # these belong to the command, not to the run config
    options.add_argument("--tracking-uri")
    options.add_argument("--quiet", action="store_true")
    known, rest = options.parse_known_args(argv)
    config = parse_run_args(rest)
    with relaunchable():
        result = run_training(config, known.tracking_uri, quiet=known.quiet or None)
    print(f"run {result.run_id} (experiment {config['data']['name']}):")
    final = final_metrics(result.metrics)
    for name, value in sorted(final.items()):
        print(f"  {name:38s} {value:.6g}")  # returns' errors in original units are around 1e-4
    if verdicts := verdict_lines(final):
        print("on the test set, the model is:")
        for line in verdicts:
            print(f"  {line}")
    print(f"compare it in the MLflow UI: stw ui{' --tracking-uri ' + known.tracking_uri if known.tracking_uri else ''}")
    if result.status != "FINISHED":
        print(f"stw train: the run closed {result.status}: recording its artifacts failed (see its stw.close_error tag)",
              file=sys.stderr)  # fmt: skip
        return 1
    return 0


def runs_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="stw runs", description="List logged runs, best first, built on mlflow.search_runs."
    )
    parser.add_argument(
        "--data", default=None, help="dataset whose experiment to list (default: every st-workbench experiment)"
    )
    parser.add_argument("--sweep", default=None, metavar="PARENT_RUN_ID", help="list the trials of this sweep")
    parser.add_argument("--top", type=int, default=10, help="show the best N runs; 0 shows all (default: 10)")
    parser.add_argument("--metric", default=None,
                        help="rank by this metric, in its own direction (losses ascending, scores descending; default: "
                             "a validation metric: a sweep's own objective, else the first of "
                             "val_mse, val_f1, val_loss that the runs have). Test scores are shown beside; "
                             "ranking by one (--metric test_mse) is choosing on the test set")  # fmt: skip
    parser.add_argument(
        "--format", choices=["table", "csv", "json"], default="table", help="output format (default: table)"
    )
    parser.add_argument("--smoke", action="store_true",
                        help="also list runs on smoke-check datasets (hmdb51-samples), whose test scores are training fit")  # fmt: skip
    parser.add_argument("--tracking-uri", default=None, help=TRACKING_HELP)
    return parser


def show_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="stw show", description="One run: config, metrics, tags, artifacts, and "
                                     "the command that reproduces it.")  # fmt: skip
    parser.add_argument("run_id", metavar="RUN_ID")
    parser.add_argument("--tracking-uri", default=None, help=TRACKING_HELP)
    return parser


def compare_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="stw compare", description="Runs side by side: the params that differ and "
                                     "every metric; optionally their learning curves as a PNG.")  # fmt: skip
    parser.add_argument("run_ids", nargs="+", metavar="RUN_ID")
    parser.add_argument(
        "--plot", default=None, metavar="FILE.png", help="also draw the runs' train and val loss curves"
    )
    parser.add_argument("--tracking-uri", default=None, help=TRACKING_HELP)
    return parser


def reproduce_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="stw reproduce", description="Retrain a logged run (a `stw train` run or a sweep trial) from its saved "
        "config, on the same data, code and packages, and compare its final metrics with the original's. "
        "Exit 0: reproduced; 1: a metric differs beyond --tolerance; 2: refused (the message says what differs).")  # fmt: skip
    parser.add_argument("run_id", metavar="RUN_ID", help="MLflow run ID (see `stw runs`)")
    parser.add_argument("placement", nargs="*", metavar="trainer.KEY=VALUE",
                        help="train on other devices than the run did: trainer.accelerator, devices, strategy or "
                        "num_nodes (e.g. trainer.accelerator=cpu for a GPU run, trainer.devices=2)")  # fmt: skip
    parser.add_argument("--tracking-uri", default=None, help="MLflow tracking URI holding the run, e.g. http://host:5000 "
                        "(default: $MLFLOW_TRACKING_URI or sqlite:///mlruns/mlflow.db); the reproduction is logged there too")  # fmt: skip
    parser.add_argument("--tolerance", type=float, default=None,
                        help="largest absolute difference of a final metric that still counts as reproduced (default: "
                        "0 on the run's device type, model and count; on others, where bit-for-bit is out of reach, "
                        "a small tolerance that a note states)")  # fmt: skip
    parser.add_argument("--allow-code-change", action="store_true",
                        help="retrain even if the project code differs from the run's commit or has uncommitted changes")  # fmt: skip
    parser.add_argument(
        "--allow-data-change", action="store_true", help="retrain even if the data's fingerprint differs from the run's"
    )
    parser.add_argument("--data-root", default=None, metavar="DIR",
                        help="your data folder (default: $STW_DATA_DIR, else ./data); the run's stored data.root and "
                        "cache_dir are never followed, and a differing one is listed")  # fmt: skip
    parser.add_argument("--allow-package-change", action="store_true",
                        help="retrain even if torch, lightning, numpy or another recorded package has another version")  # fmt: skip
    parser.add_argument("--quiet", action="store_true", help="no progress bar or model summary")
    return parser


def ensemble_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="stw ensemble", description="Average the forecasts (or class probabilities) of finished runs of one "
        "dataset on the same test windows, scored and tracked as a new run (role ensemble) like any run. The runs "
        "must share the dataset, its files and its data options; only data.lookback may differ.")  # fmt: skip
    parser.add_argument("run_ids", nargs="+", metavar="RUN_ID", help="two or more member runs (see `stw runs`)")
    parser.add_argument("--data-root", default=None, metavar="DIR",
                        help="your data folder (default: $STW_DATA_DIR, else ./data); the runs' stored data.root is "
                        "never followed")  # fmt: skip
    parser.add_argument("--tracking-uri", default=None, help=TRACKING_HELP)
    parser.add_argument("--quiet", action="store_true", help="no model summary or Lightning messages")
    return parser


def predict_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="stw predict", epilog=PREDICT_FORMATS, formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Predict new data with a logged run's best checkpoint and the preprocessing it was trained "
        "with; writes a CSV.")  # fmt: skip
    parser.add_argument("run_id", metavar="RUN_ID", help="MLflow run ID of a finished run (see `stw runs`)")
    parser.add_argument("--input", nargs="+", required=True, metavar="FILE",
                        help="new data in the training data's format (see below)")  # fmt: skip
    parser.add_argument("--output", required=True, metavar="FILE", help="CSV to write the predictions to")
    parser.add_argument("--future", "--last", dest="future", action="store_true",
                        help="dated series only: just the forecast that starts after the input's last row (the "
                        "window ending there), instead of one for every window")  # fmt: skip
    parser.add_argument("--tracking-uri", default=None, help=TRACKING_HELP)
    return parser


def ui_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="stw ui", description="Open the MLflow UI on the local run store, on "
                                     "127.0.0.1 (this machine only). Ctrl-C or SIGTERM stops it and its workers.")  # fmt: skip
    parser.add_argument(
        "--tracking-uri", help="backend store (default: $MLFLOW_TRACKING_URI or sqlite:///mlruns/mlflow.db)"
    )
    parser.add_argument("--port", type=int, default=5000)
    return parser


def ui_main(args: argparse.Namespace) -> int:
    """`mlflow ui` in its own process group, so stopping stw stops every server process it started."""
    from experiments.tracking import default_tracking_uri

    uri = default_tracking_uri(args.tracking_uri)
    print(f"MLflow UI for {uri} at http://127.0.0.1:{args.port}  (Ctrl-C stops it)", flush=True)
    command = [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", uri, "--host", "127.0.0.1",
               "--port", str(args.port)]  # fmt: skip
    server = subprocess.Popen(command, start_new_session=True)
    try:
        return server.wait()
    finally:
        if server.poll() is None:
            os.killpg(server.pid, signal.SIGTERM)
            try:
                server.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(server.pid, signal.SIGKILL)
                server.wait()


def sweep_parser() -> argparse.ArgumentParser:
    from experiments.sweep.cli import sweep_parser

    return sweep_parser()


# Command -> (its argument parser, or None when the command parses its own words; "module:function" doing the work;
# whether it builds datasets or models, so plugins are imported first: after its arguments are parsed).
COMMANDS: dict[str, tuple[Callable[[], argparse.ArgumentParser] | None, str, bool]] = {
    "train": (None, "experiments.cli:train_main", True),  # its parser is built from the registries
    "sweep": (sweep_parser, "experiments.sweep.cli:sweep_main", True),
    "ensemble": (ensemble_parser, "experiments.ensemble:ensemble_main", True),
    "reproduce": (reproduce_parser, "experiments.reproduce:reproduce_main", True),
    "runs": (runs_parser, "experiments.run_views:runs_main", False),
    "show": (show_parser, "experiments.run_views:show_main", False),
    "compare": (compare_parser, "experiments.run_views:compare_main", False),
    "predict": (predict_parser, "experiments.predict:predict_main", True),
    "ui": (ui_parser, "experiments.cli:ui_main", False),
}


# Options that name a file a command writes when its work is done: checked before the work starts.
OUTPUT_OPTIONS = {"output": "--output", "plot": "--plot"}


def check_outputs(args: argparse.Namespace) -> None:
    from datamodules.errors import ConfigError

    for name, option in OUTPUT_OPTIONS.items():
        if (value := getattr(args, name, None)) is None:
            continue
        path = Path(value)
        if not path.parent.is_dir():
            raise ConfigError(f"{option} {path}: the folder {path.parent} does not exist; create it or write elsewhere")
        if path.is_dir():
            raise ConfigError(f"{option} {path}: is a folder; give a file name in it")
        if not os.access(path.parent, os.W_OK):
            raise ConfigError(f"{option} {path}: the folder {path.parent} is not writable; write elsewhere")


def run_command(name: str, words: list[str], plugins: Sequence[str] = ()) -> int:
    parser, target, builds = COMMANDS[name]
    module, function = target.split(":")
    arguments = words
    if parser is not None:
        # Intermixed: key=value words may sit between options (`stw sweep a=1 --trials 5 b=2`).
        arguments = parser().parse_intermixed_args(words)
        check_outputs(arguments)
    if builds:
        from experiments.plugins import load_plugins

        load_plugins(plugins)
    return getattr(importlib.import_module(module), function)(arguments)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    try:
        plugins, argv = split_plugin_options(argv)
    except ValueError as error:
        print(f"stw: error: {error}", file=sys.stderr)
        return 2
    debug = "--debug" in argv[:1]
    argv = argv[1:] if debug else argv
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in COMMANDS:
        print(USAGE, file=sys.stdout if not argv or argv[0] in ("-h", "--help") else sys.stderr)
        return 0 if not argv or argv[0] in ("-h", "--help") else 2
    stop_like_ctrl_c()
    try:
        return run_command(argv[0], argv[1:], plugins)
    except KeyboardInterrupt as stop:
        print(f"stw {argv[0]}: {stop or 'interrupted'}", file=sys.stderr)  # runs and sweeps are closed as KILLED
        return 130
    except Exception as error:
        # Imported here: whatever raised a user error has imported its family already, and `--help` stays light.
        from datamodules.errors import StwError

        if debug or not isinstance(error, StwError):
            raise
        print(f"stw {argv[0]}: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
