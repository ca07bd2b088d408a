"""`stw runs`, `stw show` and `stw compare`: logged runs as tables, read from any MLflow tracking URI.

`stw runs` lists an experiment's (or a sweep's) runs best first, built on mlflow.search_runs; `stw show` prints
one run whole with the command that reproduces it; `stw compare` puts runs side by side: the params that differ,
their metrics, and optionally their learning curves in one PNG.
"""

import argparse
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
from mlflow.tracking._tracking_service.utils import _use_tracking_uri  # private, but mlflow is pinned (3.17.2)

from experiments import plots
from experiments.config import metric_mode
from experiments.logged_run import CONFIG, LoggedRun, RunError, fetch_run
from experiments.tables import text_table
from experiments.tracking import TOOL, Tag, default_tracking_uri, is_final_metric

# Params worth a column in a listing, by their flat config key; the rest are one `stw show` away.
KEY_PARAMS = {"data.lookback": "lookback", "data.horizon": "horizon", "optim.lr": "lr", "seed": "seed"}
# Validation and test scores shown when any listed run has them (forecasting and classification runs differ).
KEY_METRICS = ["val_loss", "val_mse", "val_f1", "test_mse", "test_mae", "test_mase", "test_acc", "test_f1",
               "skill_vs_best_naive", "test_hit_rate"]  # fmt: skip
CURVES = ("train_loss", "val_loss")
# What `stw runs` ranks by unless told otherwise (the first any listed run has; `stw runs --help` names them): a
# validation metric, since choosing a model by its test score turns the test set into a validation set and its
# figure then overstates how the model does on data it has not seen.
DEFAULT_RANKING = ("val_mse", "val_f1", "val_loss")


@contextmanager
def tracking_uri_for_search(uri: str) -> Iterator[None]:
    """mlflow.search_runs reads the global tracking URI, and setting it also sets $MLFLOW_TRACKING_URI:
    both are put back afterwards, so a listing never redirects later runs."""
    saved = os.environ.get("MLFLOW_TRACKING_URI")
    try:
        with _use_tracking_uri(uri):
            yield
    finally:
        if saved is None:
            os.environ.pop("MLFLOW_TRACKING_URI", None)
        else:
            os.environ["MLFLOW_TRACKING_URI"] = saved


def _number(text: Any) -> Any:
    """A param (MLflow stores them as text) as a number where it is one, so it sorts and aligns as one."""
    try:
        return int(text)
    except (TypeError, ValueError):
        try:
            return float(text)
        except (TypeError, ValueError):
            return text


def kind(tags: dict[str, Any]) -> str:
    """train, trial, sweep or reproduction: how the run came to be (search_runs gives a missing tag as NaN)."""
    if isinstance(tags.get(Tag.REPRODUCES), str):
        return "reproduction"
    role = tags.get(Tag.ROLE)
    return role if isinstance(role, str) else "train"


def search(tracking_uri: str, data: str | None, sweep: str | None) -> pd.DataFrame:
    """The st-workbench runs of one experiment, of one sweep (its trials), or of every experiment."""
    where = f"tags.`{Tag.TOOL}` = '{TOOL}'"
    if sweep:
        with fetch_run(sweep, tracking_uri) as parent:
            scope = {"experiment_ids": [parent.run.info.experiment_id]}
        where += f" and tags.`{Tag.PARENT}` = '{sweep}'"
    elif data:
        scope = {"experiment_names": [data]}
        if mlflow.MlflowClient(tracking_uri).get_experiment_by_name(data) is None:
            raise RunError(
                f"no experiment {data!r} in {tracking_uri}; runs of dataset {data} are logged there by "
                f"`stw train --data {data}`"
            )
    else:
        scope = {"search_all_experiments": True}
    with tracking_uri_for_search(tracking_uri):
        return mlflow.search_runs(filter_string=where, output_format="pandas", **scope)


def listing(found: pd.DataFrame) -> pd.DataFrame:
    """One row per run: who it is, its key params and scores, and how it ended."""
    rows = []
    for _, run in found.iterrows():
        tags = {k.removeprefix("tags."): v for k, v in run.items() if k.startswith("tags.")}
        row = {
            "run_id": run["run_id"],
            "name": tags.get("mlflow.runName"),
            "kind": kind(tags),
            "data": tags.get(Tag.DATA),
            "family": tags.get(Tag.FAMILY),
        }
        row |= {short: _number(run.get(f"params.{key}")) for key, short in KEY_PARAMS.items()}
        row |= {name: value for name, value in run.items() if name.startswith("metrics.")}
        started, ended = run["start_time"], run["end_time"]
        row |= {
            "status": run["status"],
            "started": started.strftime("%Y-%m-%d %H:%M:%S"),
            "duration_s": round((ended - started).total_seconds(), 1) if pd.notna(ended) else None,
        }
        rows.append(row)
    return pd.DataFrame(rows)


def ranked(table: pd.DataFrame, metric: str, top: int) -> tuple[pd.DataFrame, str]:
    """Best first by `metric` (runs without it last), cut to `top` rows (0: all), with a line saying what was done."""
    column = f"metrics.{metric}"
    if column in table and table[column].notna().any():
        table = table.sort_values(column, ascending=metric_mode(metric) == "min", na_position="last", kind="stable")
        order = f"ranked by {metric}, best first"
    else:
        table = table.sort_values("started", ascending=False, kind="stable")
        order = f"newest first (no run has {metric}; choose one with --metric)"
    shown = table if top <= 0 else table.head(top)
    scores = [f"metrics.{name}" for name in dict.fromkeys([*KEY_METRICS, metric]) if f"metrics.{name}" in table]
    keep = [c for c in table.columns if not c.startswith("metrics.") and c not in ("status", "started", "duration_s")]
    shown = shown[[*keep, *scores, "status", "started", "duration_s"]]
    shown = shown.dropna(axis=1, how="all").rename(columns=lambda c: c.removeprefix("metrics."))
    return shown, f"{len(shown)} of {len(table)} runs, {order}"


def sweep_metric(sweep: str | None, tracking_uri: str | None) -> str | None:
    """The validation metric a sweep optimised (its parent's stw.metric tag), for ranking its runs by it."""
    if not sweep:
        return None
    return mlflow.MlflowClient(default_tracking_uri(tracking_uri)).get_run(sweep).data.tags.get("stw.metric")


def validation_metric(table: pd.DataFrame, preferred: str | None) -> str:
    """What `stw runs` ranks by when not told: a sweep's objective `preferred` at each run's tested checkpoint
    (best_<objective>, logged by experiments.train), or as last logged; else the first validation metric of
    DEFAULT_RANKING any listed run has; never a test metric."""
    chosen = [f"best_{preferred}", preferred] if preferred else []
    for name in (*chosen, *DEFAULT_RANKING):
        if f"metrics.{name}" in table and table[f"metrics.{name}"].notna().any():
            return name
    return preferred or DEFAULT_RANKING[0]


def render(table: pd.DataFrame, fmt: str) -> str:
    if fmt == "csv":
        return table.to_csv(index=False).rstrip("\n")
    if fmt == "json":
        return table.to_json(orient="records", indent=2)
    rows = [[None if pd.isna(v) else v for v in row] for row in table.itertuples(index=False)]
    return text_table(list(table.columns), rows, digits=4)


def runs_main(args: argparse.Namespace) -> int:
    found = search(default_tracking_uri(args.tracking_uri), args.data, args.sweep)
    smoke_column = f"tags.{Tag.SMOKE_CHECK}"
    hidden = found[smoke_column].notna() if smoke_column in found and not args.smoke else pd.Series(False, found.index)
    found = found[~hidden]
    if found.empty:
        print(
            "no st-workbench runs found"
            + (f" ({hidden.sum()} smoke-check runs hidden; --smoke lists them)" if hidden.any() else "")
        )
        return 0
    table = listing(found)
    metric = args.metric or validation_metric(table, sweep_metric(args.sweep, args.tracking_uri))
    table, summary = ranked(table, metric, args.top)
    print(render(table, args.format))
    if args.format == "table":
        smoke = f"; {hidden.sum()} runs on smoke-check datasets hidden (--smoke lists them)" if hidden.any() else ""
        print(f"\n{summary}{smoke}; `stw show RUN_ID` for one run, `stw reproduce RUN_ID` to retrain it")
    return 0


def show_text(run: LoggedRun, reproduce_command: str) -> str:
    info = run.run.info
    parts = [
        f"run {info.run_id} ({info.run_name}), experiment {info.experiment_id}, {info.status}, kind {kind(run.tags)}"
    ]
    artifacts = run.artifact_paths()
    config = run.text(CONFIG).rstrip() if CONFIG in artifacts else "(no config.yaml: not a training run)"
    parts += ["", "config:", _indent(config)]
    parts += [
        "",
        "metrics:",
        _indent(text_table(["metric", "value"], [[k, v] for k, v in sorted(run.metrics.items())], digits=9)),
    ]
    parts += [
        "",
        "tags:",
        _indent(
            text_table(
                ["tag", "value"], [[k, v] for k, v in sorted(run.tags.items()) if not k.startswith("mlflow.log-model")]
            )
        ),
    ]
    parts += ["", "artifacts:", _indent("\n".join(artifacts) or "(none)")]
    if CONFIG in artifacts and any(is_final_metric(name) for name in run.metrics):
        parts += ["", f"reproduce it: {reproduce_command}"]
    elif kind(run.tags) == "sweep":
        parts += ["", f"a sweep: reproduce one of its trials, listed by `stw runs --sweep {info.run_id}`"]
    return "\n".join(parts)


def _indent(text: str) -> str:
    return "\n".join("  " + line for line in text.splitlines())


def show_main(args: argparse.Namespace) -> int:
    command = f"stw reproduce {args.run_id}" + (f" --tracking-uri {args.tracking_uri}" if args.tracking_uri else "")
    with fetch_run(args.run_id, args.tracking_uri) as run:
        print(show_text(run, command))
    return 0


def label(run: LoggedRun) -> str:
    return f"{run.run_id[:8]} {run.tags.get(Tag.FAMILY, '')}".strip()


def differing_params(runs: list[LoggedRun]) -> list[list[Any]]:
    """[param, value in run 1, value in run 2, ...] for every param whose value is not the same in all runs."""
    names = sorted(set().union(*(run.run.data.params for run in runs)))
    rows = [[name, *(run.run.data.params.get(name) for run in runs)] for name in names]
    return [row for row in rows if len(set(row[1:])) > 1]


def side_by_side_metrics(runs: list[LoggedRun]) -> list[list[Any]]:
    names = sorted(set().union(*(run.metrics for run in runs)), key=lambda name: (not is_final_metric(name), name))
    return [[name, *(run.metrics.get(name) for run in runs)] for name in names]


def learning_histories(run: LoggedRun) -> dict[str, list[tuple[int, float]]]:
    """Each curve's values in logging order, numbered as epochs (one point per epoch is logged)."""
    histories = {}
    for name in CURVES:
        points = sorted(run.client.get_metric_history(run.run_id, name), key=lambda m: (m.step, m.timestamp))
        histories[name] = [(epoch, point.value) for epoch, point in enumerate(points)]
    return histories


def compare_main(args: argparse.Namespace) -> int:
    if len(args.run_ids) < 2:
        raise RunError("stw compare needs two or more run IDs; list runs with `stw runs`")
    plot = Path(args.plot) if args.plot else None
    runs = [fetch_run(run_id, args.tracking_uri) for run_id in args.run_ids]
    headers = ["param", *(label(run) for run in runs)]
    params = differing_params(runs)
    print("params that differ:")
    print(_indent(text_table(headers, params)) if params else "  (none: every param is the same)")
    print("\nmetrics:")
    print(_indent(text_table(["metric", *headers[1:]], side_by_side_metrics(runs), digits=6)))
    if plot:
        histories = {label(run): learning_histories(run) for run in runs}
        plots.compare_learning_curves(histories, plot, f"{len(runs)} runs")
        print(f"\nlearning curves: {plot}")
    return 0
