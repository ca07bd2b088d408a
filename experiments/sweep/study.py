"""The sweep's plan and the Optuna study it opens: storage with heartbeats, a damaged store refused by name, a
sampler seeded from the study's state, and the MLflow run of a trial found and closed when Optuna fails it."""

import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
from mlflow.tracking import MlflowClient
from optuna.exceptions import ExperimentalWarning
from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback
from optuna.trial import FrozenTrial, TrialState
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from datamodules.errors import TrackingError
from experiments import tracking
from experiments.config import metric_mode
from experiments.sweep.budget import REPORT_S, stop_time
from experiments.tracking import Tag

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)
STORE_ATTEMPTS = 5


@dataclass
class SweepPlan:
    """Everything a worker process needs; plain data so it crosses a process boundary."""

    data: str
    families: list[str]
    trials: float  # finished trials to reach: an int, or math.inf for a sweep bounded by its timeout alone
    timeout: float | None
    study: str
    storage: str
    tracking_uri: str
    sampler: str
    pruner: str
    metric: str
    base: dict[str, Any]
    space: dict[str, Any]
    fixed: list[str]
    seed: int = 0
    heartbeat: int = 10
    workers: int = 1
    quiet: bool = False
    max_failures: int = 3
    trial_timeout: float | None = None  # seconds a trial may take (experiments/sweep/budget.py)
    recipes: bool = True  # queue the space's recipes first (experiments/sweep/recipes.py)
    started: float = 0.0  # time.time() when this sweep started: its --timeout counts from here
    confirm: int = (
        0  # top configurations retrained with `seeds` extra seeds after the search (experiments/sweep/confirm.py)
    )
    seeds: int = 2
    first_trial: int = 0  # number of the first trial this sweep (not an earlier run of the study) started
    parent_run_id: str = ""
    ensemble: int = 0  # after the sweep, average up to K trials chosen on validation (0: no ensemble)
    ensemble_pick: str = "greedy"  # how they are chosen (experiments/ensemble_selection.py)
    ensemble_run_id: str = ""
    extra_tags: dict[str, str] = field(default_factory=dict)
    plugins: list[str] = field(default_factory=list)  # --plugin/$STW_PLUGINS modules, imported again by each worker

    def sweep_stop(self, closings: Sequence[float] = ()) -> float | None:
        """time.time() at which trials stop training under --timeout (and no trial starts after), given the
        closing seconds measured so far (experiments/sweep/budget.py)."""
        return stop_time(self.started, self.timeout, closings, tail=REPORT_S) if self.timeout else None


def default_storage() -> str:
    tracking.STORE_DIR.mkdir(exist_ok=True)
    return f"sqlite:///{(tracking.STORE_DIR / 'optuna.db').resolve()}"


def sqlite_file(storage: str) -> Path | None:
    return Path(storage.removeprefix("sqlite:///")) if storage.startswith("sqlite:///") else None


def check_store(storage: str) -> None:
    """An empty file is a valid, empty SQLite database to SQLAlchemy, so a zero-byte optuna.db would silently
    start a new study under the old name; refuse it, and a file that is not SQLite at all, by name."""
    path = sqlite_file(storage)
    if path is None or not path.exists():
        return
    fix = f"restore {path} from a backup, or give --storage a new file (and a new --study name) to start afresh"
    if path.stat().st_size == 0:
        raise TrackingError(f"the study store {path} is an empty file (0 bytes), not the study it held: {fix}")
    with path.open("rb") as file:
        if file.read(16) != b"SQLite format 3\x00":
            raise TrackingError(f"the study store {path} is not an SQLite database (damaged or overwritten): {fix}")


class CloseRunAndRetry(RetryHeartbeatStaleTrialCallback):
    """When Optuna fails a trial whose heartbeat stopped (its process was killed), its MLflow run is closed KILLED
    at that moment, whichever worker or resumed sweep notices, and the trial is retried once."""

    def __init__(self, plan: SweepPlan) -> None:
        super().__init__(max_retry=1)
        self.plan = plan

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        close_trial_run(MlflowClient(self.plan.tracking_uri), self.plan, trial, "its sweep process was killed")
        super().__call__(study, trial)


def make_storage(plan: SweepPlan) -> optuna.storages.BaseStorage:
    """RDB URLs get heartbeats and retries of crashed trials; journal files (path ending .log) do not."""
    if not plan.storage.startswith(("sqlite", "postgresql", "mysql")):
        return optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(plan.storage))
    check_store(plan.storage)
    engine = {"connect_args": {"timeout": 60}} if plan.storage.startswith("sqlite") else None
    with warnings.catch_warnings():
        # Heartbeats and the retry callback are marked experimental in Optuna 5; they are what crash-safety rests on.
        warnings.simplefilter("ignore", ExperimentalWarning)
        return RDBStorage(tracking.database_url(plan.storage), engine_kwargs=engine, heartbeat_interval=plan.heartbeat,
                          grace_period=3 * plan.heartbeat, heartbeat_stale_trial_callback=CloseRunAndRetry(plan))  # fmt: skip


def make_sampler(name: str, seed: int) -> optuna.samplers.BaseSampler:
    samplers = {
        "tpe": lambda: optuna.samplers.TPESampler(seed=seed),
        "random": lambda: optuna.samplers.RandomSampler(seed=seed),
        "cmaes": lambda: optuna.samplers.CmaEsSampler(seed=seed, warn_independent_sampling=False),
    }
    return samplers[name]()


def make_pruner(name: str, max_epochs: int = 6) -> optuna.pruners.BasePruner:
    """Trials report their validation metric once per epoch (step = epoch, from 0), so the multi-fidelity pruners
    count resources in epochs: rungs at 1, 3, 9... epochs up to the trials' max_epochs."""
    pruners = {
        "median": lambda: optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=1),
        "hyperband": lambda: optuna.pruners.HyperbandPruner(
            min_resource=1, max_resource=max_epochs, reduction_factor=3
        ),
        "halving": lambda: optuna.pruners.SuccessiveHalvingPruner(min_resource=1, reduction_factor=3),
        "none": lambda: optuna.pruners.NopPruner(),
    }
    return pruners[name]()


def open_study(plan: SweepPlan, worker: int = 0) -> optuna.Study:
    """The plan's study, created on first use. Its sampler's seed comes from the plan's seed, the trials the study
    already holds and the worker, so a resumed study or a second worker never replays the same proposals; a
    fresh study with one worker is seeded with the plan's seed alone, so it is repeatable."""
    direction = "maximize" if metric_mode(plan.metric) == "max" else "minimize"
    for attempt in range(STORE_ATTEMPTS):
        try:
            study = optuna.create_study(storage=make_storage(plan), study_name=plan.study, direction=direction,
                                        pruner=make_pruner(plan.pruner, plan.base["trainer"]["max_epochs"]),
                                        load_if_exists=True)  # fmt: skip
            held = len(study.get_trials(deepcopy=False))
            break
        except IntegrityError:
            # Machines starting on a new database at once race to create Optuna's tables; the loser retries.
            if attempt == STORE_ATTEMPTS - 1:
                raise
            time.sleep(0.5 * (attempt + 1))
        except SQLAlchemyError as error:
            reason = getattr(error, "orig", None) or error
            raise TrackingError(f"cannot open the study store {plan.storage}: {type(error).__name__}: {reason}; "
                                "check the URL, or restore a damaged file from a backup") from None  # fmt: skip
    study.sampler = make_sampler(plan.sampler, plan.seed + 10_007 * held + 1_000_003 * worker)
    return study


def failures(study: optuna.Study, plan: SweepPlan) -> int:
    """Trials of this sweep (not of earlier runs of the study) that failed, surplus ones aside."""
    return sum(1 for t in study.get_trials(deepcopy=False, states=(TrialState.FAIL,))
               if t.number >= plan.first_trial and not t.user_attrs.get("surplus"))  # fmt: skip


def trial_run_id(client: MlflowClient, plan: SweepPlan, trial: FrozenTrial | optuna.Trial) -> str | None:
    """The MLflow run of a trial: stored on it when training starts, else found by its tags (a trial that
    failed before training has no run ID attribute yet)."""
    if run_id := trial.user_attrs.get("mlflow_run_id"):
        return run_id
    experiment = client.get_experiment_by_name(plan.data)
    if experiment is None:
        return None
    runs = client.search_runs([experiment.experiment_id],
                              f"tags.`{Tag.STUDY}` = '{plan.study}' and tags.`{Tag.TRIAL_NUMBER}` = '{trial.number}'",
                              order_by=["attributes.start_time DESC"], max_results=1)  # fmt: skip
    return runs[0].info.run_id if runs else None


def close_trial_run(client: MlflowClient, plan: SweepPlan, trial: FrozenTrial, why: str) -> None:
    """Close a killed trial's run KILLED (if it is still open), saying why."""
    run_id = trial_run_id(client, plan, trial)
    if run_id and client.get_run(run_id).info.status == "RUNNING":
        client.set_tag(run_id, Tag.TRIAL_STATE, "FAIL")
        client.set_tag(run_id, Tag.ERROR, f"the trial was failed: {why}")
        client.set_terminated(run_id, "KILLED")
