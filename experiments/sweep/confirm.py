"""`stw sweep --confirm K --seeds S`: the top K configurations retrained with S extra seeds, chosen by mean val score.

One seed's validation score is partly luck, and the search picks the luckiest: after the search, the K completed
trials with the best objective are each retrained S more times with seeds seed+1..seed+S (same config otherwise),
as nested runs under the sweep's parent (role `confirm`, tagged with the trial and run they confirm). The chosen
configuration is the one with the best MEAN validation score over its seeds, the original trial's included; test
scores are reported beside, mean and spread, and never take part in the choice. A confirm run's validation score
is its best logged epoch of the sweep's metric, which is the checkpoint it was tested with, as for a trial.

Crash-safe like the trials: a re-run of the sweep with the same --study reuses every FINISHED confirm run, closes
one left RUNNING by a killed process as KILLED, and retrains only what is missing. The confirmation runs in the
process that started the sweep, after its workers, one run at a time and outside --timeout; when several machines
sweep one study, pass --confirm to one of them only (another would take its running confirm runs for killed ones).
"""

import math
import statistics
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import optuna
import pandas as pd
from mlflow.entities import Run
from mlflow.tracking import MlflowClient
from optuna.trial import FrozenTrial, TrialState

from experiments.config import metric_mode
from experiments.logged_run import fetch_run
from experiments.sweep.report import counterpart_on_test
from experiments.sweep.study import SweepPlan
from experiments.tracking import Tag
from experiments.train import run_training


@dataclass
class Confirmed:
    """One confirmed configuration: its source trial and the validation and test scores of each of its seeds."""

    trial: int
    run_id: str
    family: str | None
    seeds: list[int] = field(default_factory=list)
    val: list[float] = field(default_factory=list)
    test: list[float] = field(default_factory=list)

    @staticmethod
    def spread(values: list[float]) -> float:
        """Sample standard deviation (n - 1); NaN with fewer than two values."""
        return statistics.stdev(values) if len(values) > 1 else math.nan

    def stats(self, test_name: str, metric: str) -> dict[str, float]:
        tests = [v for v in self.test if not math.isnan(v)]
        return {
            "seeds": len(self.val),
            f"{metric}_mean": statistics.fmean(self.val),
            f"{metric}_std": self.spread(self.val),
            f"{test_name}_mean": statistics.fmean(tests) if tests else math.nan,
            f"{test_name}_std": self.spread(tests),
        }


def choose(val_scores: dict[int, list[float]], mode: str) -> int:
    """The key whose scores have the best mean ("min" or "max"); ties go to the first listed (the better
    single-seed trial, as top_trials orders them). Only validation scores are passed in: test never chooses."""
    means = {key: statistics.fmean(scores) for key, scores in val_scores.items() if scores}
    best = min if mode == "min" else max
    return best(means, key=means.__getitem__)


def top_trials(study: optuna.Study, k: int) -> list[FrozenTrial]:
    """The k completed trials with the best objective, best first (trial number breaks ties)."""
    sign = 1 if study.direction.name == "MINIMIZE" else -1
    done = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    return sorted(done, key=lambda t: (sign * t.value, t.number))[:k]


def extra_seeds(seed: int, count: int) -> list[int]:
    return [seed + i for i in range(1, count + 1)]


def confirm_runs(client: MlflowClient, plan: SweepPlan, trial: int) -> list[Run]:
    """Every confirm run this sweep's parent holds for one trial, any status."""
    experiment = client.get_run(plan.parent_run_id).info.experiment_id
    where = (f"tags.`{Tag.PARENT}` = '{plan.parent_run_id}' and tags.`{Tag.ROLE}` = 'confirm' "
             f"and tags.`{Tag.CONFIRMS_TRIAL}` = '{trial}'")  # fmt: skip
    return client.search_runs([experiment], where, order_by=["attributes.start_time ASC"])


def finished_by_seed(client: MlflowClient, plan: SweepPlan, trial: int) -> dict[int, Run]:
    """The FINISHED confirm runs of a trial by seed; runs a killed process left RUNNING are closed KILLED."""
    finished = {}
    for run in confirm_runs(client, plan, trial):
        if run.info.status == "RUNNING":
            client.set_tag(run.info.run_id, Tag.ERROR, "the sweep process was killed during this confirm run")
            client.set_terminated(run.info.run_id, "KILLED")
        elif run.info.status == "FINISHED":
            finished.setdefault(int(run.data.tags[Tag.SEED]), run)
    return finished


def best_logged(client: MlflowClient, run_id: str, metric: str) -> float:
    """The best epoch's value of a validation metric: the score of the checkpoint the run tested."""
    values = [m.value for m in client.get_metric_history(run_id, metric)]
    if not values:
        return math.nan
    return min(values) if metric_mode(metric) == "min" else max(values)


def run_confirmation(client: MlflowClient, plan: SweepPlan, study: optuna.Study) -> None:
    """Train every extra seed of the top trials that has no FINISHED confirm run yet. A seed whose run fails is
    reported and left out (a re-run of the sweep tries it again); an interrupt stops the sweep as usual."""
    for trial in top_trials(study, plan.confirm):
        source = trial.user_attrs["mlflow_run_id"]
        with fetch_run(source, plan.tracking_uri) as run:
            config = run.config()
        done = finished_by_seed(client, plan, trial.number)
        for seed in extra_seeds(config["seed"], plan.seeds):
            if seed in done:
                continue
            tags = {Tag.ROLE: "confirm", Tag.STUDY: plan.study, Tag.CONFIRMS_TRIAL: str(trial.number),
                    Tag.CONFIRMS_RUN: source, **plan.extra_tags}  # fmt: skip
            try:
                run_training({**config, "seed": seed}, plan.tracking_uri, quiet=True, parent_run_id=plan.parent_run_id,
                             tags=tags, run_name=f"confirm-{trial.number}-seed{seed}")  # fmt: skip
            except Exception as error:  # noqa: BLE001 - the other seeds and configurations still count
                print(f"stw sweep: confirm run of trial {trial.number} with seed {seed} failed ({type(error).__name__}: "
                      f"{error}); the configuration is scored on its other seeds", file=sys.stderr)  # fmt: skip


def confirmation(client: MlflowClient, plan: SweepPlan, study: optuna.Study) -> list[Confirmed]:
    """Each top trial's scores over its seeds, the original first, read back from the tracking store."""
    test_name = counterpart_on_test(plan.metric)
    confirmed = []
    for trial in top_trials(study, plan.confirm):
        item = Confirmed(trial.number, trial.user_attrs["mlflow_run_id"], trial.params.get("family"))
        original = client.get_run(item.run_id)
        item.seeds.append(int(original.data.tags[Tag.SEED]))
        item.val.append(trial.value)
        item.test.append(original.data.metrics.get(test_name, math.nan))
        for seed, run in sorted(finished_by_seed(client, plan, trial.number).items()):
            item.seeds.append(seed)
            item.val.append(best_logged(client, run.info.run_id, plan.metric))
            item.test.append(run.data.metrics.get(test_name, math.nan))
        confirmed.append(item)
    return confirmed


def chosen(confirmed: list[Confirmed], plan: SweepPlan) -> Confirmed:
    winner = choose({item.trial: item.val for item in confirmed}, metric_mode(plan.metric))
    return next(item for item in confirmed if item.trial == winner)


def confirm_table(confirmed: list[Confirmed], plan: SweepPlan) -> pd.DataFrame:
    """One row per confirmed configuration, best mean validation score first."""
    test_name = counterpart_on_test(plan.metric)
    rows = [{"trial": c.trial, "family": c.family, **c.stats(test_name, plan.metric), "run_id": c.run_id}
            for c in confirmed]  # fmt: skip
    return pd.DataFrame(rows).sort_values(f"{plan.metric}_mean", ascending=metric_mode(plan.metric) == "min")


def record_confirmation(client: MlflowClient, plan: SweepPlan, confirmed: list[Confirmed]) -> None:
    """The parent run's record: the chosen configuration's tags and its mean and spread of validation and test
    scores (chosen_<metric>_mean, ..._std, chosen_<test>_mean, ..._std), and every row in confirm.csv."""
    if not confirmed:
        return
    winner = chosen(confirmed, plan)
    client.set_tag(plan.parent_run_id, Tag.CHOSEN_TRIAL, str(winner.trial))
    client.set_tag(plan.parent_run_id, Tag.CHOSEN_RUN_ID, winner.run_id)
    for name, value in winner.stats(counterpart_on_test(plan.metric), plan.metric).items():
        if not math.isnan(value):
            client.log_metric(plan.parent_run_id, f"chosen_{name}", value)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "confirm.csv"
        confirm_table(confirmed, plan).to_csv(path, index=False)
        client.log_artifact(plan.parent_run_id, str(path))


def confirm_text(confirmed: list[Confirmed], plan: SweepPlan) -> str:
    """The terminal's account of the confirmation: every configuration's mean and spread, and the choice."""
    if not confirmed:
        return "\nconfirmation: no completed trial to confirm"
    winner = chosen(confirmed, plan)
    table = confirm_table(confirmed, plan).drop(columns=["run_id"])
    return "\n".join([
        f"\nconfirmation: the top {len(confirmed)} configurations with {plan.seeds} extra seeds each, ranked by mean "
        f"{plan.metric} (std over seeds, n - 1); test scores are shown, never used to choose",
        table.to_string(index=False, float_format=lambda v: f"{v:.4f}"),
        f"chosen: trial #{winner.trial} ({winner.family}), run {winner.run_id}",
    ])  # fmt: skip


def confirm(client: MlflowClient, plan: SweepPlan, study: optuna.Study) -> list[Confirmed]:
    """Run what is missing of the confirmation, record it on the parent run, and return it."""
    run_confirmation(client, plan, study)
    confirmed = confirmation(client, plan, study)
    record_confirmation(client, plan, confirmed)
    return confirmed
