"""What a finished sweep leaves on its parent MLflow run and prints in the terminal."""

import tempfile
import warnings
from pathlib import Path
from typing import Any

import optuna
import pandas as pd
import yaml
from mlflow.entities import Param
from mlflow.tracking import MlflowClient
from optuna.trial import TrialState

from experiments.tracking import Tag
from experiments.verdicts import beats_best_naive, verdict_lines

PLOTS = {
    "optimization_history": (
        optuna.visualization.plot_optimization_history,
        optuna.visualization.matplotlib.plot_optimization_history,
    ),
    "param_importances": (
        optuna.visualization.plot_param_importances,
        optuna.visualization.matplotlib.plot_param_importances,
    ),
    "parallel_coordinate": (
        optuna.visualization.plot_parallel_coordinate,
        optuna.visualization.matplotlib.plot_parallel_coordinate,
    ),
    "intermediate_values": (
        optuna.visualization.plot_intermediate_values,
        optuna.visualization.matplotlib.plot_intermediate_values,
    ),
}


def counterpart_on_test(metric: str) -> str:
    """The test score reported beside a validation metric: val_mse -> test_mse, val_f1 -> test_f1, and the
    multi-window val_mse_windows -> test_mse (the test period is scored whole); val_loss -> test_mse."""
    name = metric.removeprefix("val_").removeprefix("best_").removesuffix("_windows")
    return "test_mse" if name == "loss" else f"test_{name}"


def trials_table(study: optuna.Study) -> pd.DataFrame:
    """One row per trial: number, state, family, recipe, objective, test metrics, duration, the budget that cut it
    (if one did), MLflow run ID."""
    rows = []
    for trial in study.get_trials(deepcopy=False):
        if trial.user_attrs.get("surplus"):  # started after the target was reached; never trained
            continue
        duration = (
            (trial.datetime_complete - trial.datetime_start).total_seconds()
            if trial.datetime_complete and trial.datetime_start
            else None
        )
        rows.append(
            {
                "trial": trial.number,
                "state": trial.state.name,
                "family": trial.params.get("family"),
                "recipe": trial.user_attrs.get("recipe"),
                "value": trial.value,
                "test_mse": trial.user_attrs.get("test_mse"),
                "skill_vs_best_naive": trial.user_attrs.get("skill_vs_best_naive"),
                "seconds": duration,
                "cut_by": trial.user_attrs.get("cut_by"),
                "run_id": trial.user_attrs.get("mlflow_run_id"),
                "error": trial.user_attrs.get("error"),
            }
        )
    return pd.DataFrame(rows)


def _plots(study: optuna.Study, folder: Path) -> list[Path]:
    """HTML (interactive) and PNG of each Optuna plot; a plot that needs more trials than ran is skipped."""
    import matplotlib.pyplot as plt

    written = []
    for name, (interactive, static) in PLOTS.items():
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                interactive(study).write_html(folder / f"{name}.html", include_plotlyjs="cdn")
                axes = static(study)
                figure = (axes.flat[0] if hasattr(axes, "flat") else axes).get_figure()
                figure.set_size_inches(9, 5)
                figure.tight_layout()
                figure.savefig(folder / f"{name}.png", dpi=110)
                plt.close(figure)
            written += [folder / f"{name}.html", folder / f"{name}.png"]
        except (ValueError, RuntimeError, ZeroDivisionError):
            continue  # e.g. importances need two completed trials with varying params
    return written


def report_sweep(client: MlflowClient, plan: Any, study: optuna.Study) -> None:
    """Log best value/params, best child run, the trials table, the search space and Optuna's plots."""
    run_id = plan.parent_run_id
    table = trials_table(study)
    counts = table["state"].value_counts().to_dict() if len(table) else {}
    for state in ("COMPLETE", "PRUNED", "FAIL"):
        client.log_metric(run_id, f"trials_{state.lower()}", counts.get(state, 0))
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        table.to_csv(folder / "trials.csv", index=False)
        (folder / "search_space.yaml").write_text(yaml.safe_dump(plan.space, sort_keys=False))
        for path in [folder / "trials.csv", folder / "search_space.yaml", *_plots(study, folder)]:
            client.log_artifact(run_id, str(path), artifact_path=None if path.suffix in (".csv", ".yaml") else "plots")
    completed = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if not completed:
        return
    best = study.best_trial
    client.log_metric(run_id, f"best_{plan.metric}", best.value)
    for name, value in best.user_attrs.items():
        if isinstance(value, float):
            client.log_metric(run_id, f"best_{name}", value)
    client.log_batch(run_id, params=[Param(f"best.{k}", str(v)) for k, v in best.params.items()])
    client.set_tag(run_id, "stw.best_run_id", best.user_attrs.get("mlflow_run_id", ""))
    client.set_tag(run_id, "stw.best_trial", str(best.number))


def summary_text(study: optuna.Study, plan: Any, ui_command: str) -> str:
    """The closing terminal summary: every trial, then the chosen one (best by the validation metric) against every
    floor it was scored against on test, in words, and how many trials beat their best naive forecast at all."""
    table = trials_table(study)
    lines = [
        f"study {plan.study}: {len(table)} trials "
        + ", ".join(f"{n} {s.lower()}" for s, n in table["state"].value_counts().items())
        if len(table)
        else "no trials"
    ]
    if len(table):
        shown = table.drop(columns=["error"]).sort_values("value", ascending=study.direction.name == "MINIMIZE")
        lines.append(shown.to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    completed = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if completed:
        best = study.best_trial
        attrs = best.user_attrs
        lines.append(f"\nbest trial #{best.number} ({best.params.get('family')}): {plan.metric} = {best.value:.4f}")
        test_name = counterpart_on_test(plan.metric)
        if test_name in attrs:  # beside its validation score; the choice never looks at it
            lines.append(f"  {test_name} = {attrs[test_name]:.4f} (test, shown beside: never used to choose or rank)")
        lines.append(f"  MLflow run: {attrs.get('mlflow_run_id')}")
        lines += [f"  on test it is {line}" for line in verdict_lines(attrs)]
        beats = [beats_best_naive(trial.user_attrs) for trial in completed]
        if any(b is not None for b in beats):
            lines.append(f"  completed trials whose test MSE beats their best naive forecast: {sum(map(bool, beats))} "
                         f"of {len(completed)}")  # fmt: skip
    lines.append(f"\nopen the MLflow UI: {ui_command}")
    return "\n".join(lines)


def ensemble_text(study: optuna.Study, plan: Any) -> str:
    """The ensemble beside the best single trial: the validation objective both were chosen by, then the matching
    test score, and which trials it averages."""
    ensemble = MlflowClient(plan.tracking_uri).get_run(plan.ensemble_run_id).data
    best = study.best_trial
    test_metric = plan.metric.replace("val_", "test_", 1)
    members = ensemble.tags.get(Tag.ENSEMBLE_MEMBERS, "").split(",")
    rows = [
        [f"best trial #{best.number}", best.value, best.user_attrs.get(test_metric)],
        [f"ensemble of {len(members)} trials", ensemble.metrics.get(plan.metric), ensemble.metrics.get(test_metric)],
    ]
    table = pd.DataFrame(rows, columns=["model", plan.metric, test_metric])
    numbers = {trial.user_attrs.get("mlflow_run_id"): trial.number for trial in study.trials}
    picked = ", ".join(f"#{numbers[run_id]}" if run_id in numbers else run_id for run_id in members)
    how = {"greedy": f"picked greedily by the mean's {plan.metric}", "top": f"the top {len(members)} by {plan.metric}"}
    return (f"\nensemble run {plan.ensemble_run_id} (trials {picked}: {how[plan.ensemble_pick]}):\n"
            + table.to_string(index=False, float_format=lambda v: f"{v:.4f}"))  # fmt: skip
