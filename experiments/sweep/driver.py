"""`stw sweep`: an Optuna study over families and their knobs; every trial is a nested MLflow run.

One parent MLflow run per study (reopened on resume), one child per trial holding everything a `stw train`
run holds. The study lives in an RDB storage with heartbeats, so trials of a killed sweep are failed and
retried on resume and their MLflow runs closed as KILLED. `--workers N` runs N processes on the study.
"""

import multiprocessing
import os
import sys
import time
import warnings
from dataclasses import dataclass, field
from typing import Any

import optuna
import torch
from lightning.pytorch.callbacks import Callback
from mlflow.tracking import MlflowClient
from optuna.exceptions import ExperimentalWarning
from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback
from optuna.study import MaxTrialsCallback
from optuna.trial import TrialState
from optuna_integration import PyTorchLightningPruningCallback

from experiments import tracking
from experiments.config import config_from_dict, datamodule_for, metric_mode
from experiments.interrupts import stop_like_ctrl_c
from experiments.sweep.report import report_sweep
from experiments.sweep.space import deep_merge, nest, sample_overrides
from experiments.tracking import Tag, TrackedRun, final_metrics
from experiments.train import run_training

# A sweep's default epochs: enough for the ranking of families to settle, small enough for a few-minute demo.
SWEEP_DEFAULTS = {"trainer": {"max_epochs": 6, "progress": False}}


@dataclass
class SweepPlan:
    """Everything a worker process needs; plain data so it crosses a process boundary."""

    data: str
    families: list[str]
    trials: int
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
    first_trial: int = 0  # number of the first trial this sweep (not an earlier run of the study) started
    parent_run_id: str = ""
    extra_tags: dict[str, str] = field(default_factory=dict)


def default_storage() -> str:
    tracking.STORE_DIR.mkdir(exist_ok=True)
    return f"sqlite:///{(tracking.STORE_DIR / 'optuna.db').resolve()}"


def make_storage(plan: SweepPlan) -> optuna.storages.BaseStorage | str:
    """RDB URLs get heartbeats and retries of crashed trials; journal files (path ending .log) do not."""
    if not plan.storage.startswith(("sqlite", "postgresql", "mysql")):
        return optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(plan.storage))
    engine = {"connect_args": {"timeout": 60}} if plan.storage.startswith("sqlite") else None
    with warnings.catch_warnings():
        # Heartbeats and the retry callback are marked experimental in Optuna 5; they are what crash-safety rests on.
        warnings.simplefilter("ignore", ExperimentalWarning)
        return RDBStorage(plan.storage, engine_kwargs=engine, heartbeat_interval=plan.heartbeat,
                          grace_period=3 * plan.heartbeat,
                          heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(max_retry=1))  # fmt: skip


def make_sampler(name: str, seed: int) -> optuna.samplers.BaseSampler:
    samplers = {
        "tpe": lambda: optuna.samplers.TPESampler(seed=seed),
        "random": lambda: optuna.samplers.RandomSampler(seed=seed),
        "cmaes": lambda: optuna.samplers.CmaEsSampler(seed=seed, warn_independent_sampling=False),
    }
    return samplers[name]()


def make_pruner(name: str) -> optuna.pruners.BasePruner:
    pruners = {
        "median": lambda: optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=1),
        "hyperband": lambda: optuna.pruners.HyperbandPruner(),
        "none": lambda: optuna.pruners.NopPruner(),
    }
    return pruners[name]()


def open_study(plan: SweepPlan) -> optuna.Study:
    direction = "maximize" if metric_mode(plan.metric) == "max" else "minimize"
    return optuna.create_study(
        storage=make_storage(plan),
        study_name=plan.study,
        direction=direction,
        sampler=make_sampler(plan.sampler, plan.seed),
        pruner=make_pruner(plan.pruner),
        load_if_exists=True,
    )


class LinkTrialToRun(Callback):
    """Stores the child run's ID on the Optuna trial as soon as training starts."""

    def __init__(self, trial: optuna.Trial) -> None:
        self.trial = trial

    def on_fit_start(self, trainer: Any, pl_module: Any) -> None:
        self.trial.set_user_attr("mlflow_run_id", trainer.logger.run_id)


def trial_config(plan: SweepPlan, trial: optuna.Trial) -> dict[str, Any]:
    family = trial.suggest_categorical("family", plan.families)
    sampled = sample_overrides(trial, plan.space, plan.data, family, set(plan.fixed))
    chosen = nest({**sampled, "model.family": family, "trainer.monitor": plan.metric})
    return config_from_dict(deep_merge(plan.base, chosen))


class TrialSurplus(Exception):
    """A trial started after the study already had its target: it is failed at once, without a run."""


FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)


def surplus_reason(plan: SweepPlan, trial: optuna.Trial) -> str | None:
    """Workers decide to start a trial at nearly the same moment; trial numbers are handed out atomically by the
    storage, so counting the trials numbered before this one that finished or may still finish is exact."""
    ahead = [t for t in trial.study.get_trials(deepcopy=False, states=(*FINISHED, TrialState.RUNNING))
             if t.number < trial.number]  # fmt: skip
    if len(ahead) >= plan.trials:
        return f"the study already has its {plan.trials} trials finished or running"
    return None


class StopAfterFailures:
    """Stops a worker once `plan.max_failures` trials of this sweep have failed: a broken config or data must not
    loop for ever now that failed trials do not count towards --trials."""

    def __init__(self, plan: SweepPlan) -> None:
        self.plan = plan

    def __call__(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        if failures(study, self.plan) >= self.plan.max_failures:
            study.stop()


def failures(study: optuna.Study, plan: SweepPlan) -> int:
    """Trials of this sweep (not of earlier runs of the study) that failed, surplus ones aside."""
    return sum(1 for t in study.get_trials(deepcopy=False, states=(TrialState.FAIL,))
               if t.number >= plan.first_trial and not t.user_attrs.get("surplus"))  # fmt: skip


class Objective:
    def __init__(self, plan: SweepPlan) -> None:
        self.plan = plan
        self.client = MlflowClient(plan.tracking_uri)

    def __call__(self, trial: optuna.Trial) -> float:
        plan = self.plan
        if surplus := surplus_reason(plan, trial):
            trial.set_user_attr("surplus", True)
            raise TrialSurplus(surplus)
        tags = {Tag.STUDY: plan.study, Tag.TRIAL_NUMBER: str(trial.number), Tag.TRIAL_STATE: "RUNNING",
                Tag.ROLE: "trial", **plan.extra_tags}  # fmt: skip
        callbacks: list[Callback] = [LinkTrialToRun(trial)]
        if plan.pruner != "none":
            callbacks.append(PyTorchLightningPruningCallback(trial, monitor=plan.metric))
        try:
            config = trial_config(plan, trial)
            result = run_training(
                config,
                plan.tracking_uri,
                quiet=True,
                parent_run_id=plan.parent_run_id,
                callbacks=tuple(callbacks),
                tags=tags,
                finished_on=(optuna.TrialPruned,),
                run_name=f"trial-{trial.number}-{config['model']['family']}",
            )
        except optuna.TrialPruned:
            self._mark(trial, "PRUNED")
            raise
        except (Exception, KeyboardInterrupt) as error:  # Optuna records both as FAIL
            trial.set_user_attr("error", f"{type(error).__name__}: {error}"[:2000])
            self._mark(trial, "FAIL")
            raise
        self._mark(trial, "COMPLETE")
        for name, value in final_metrics(result.metrics).items():
            trial.set_user_attr(name, value)
        return result.best_score

    def _mark(self, trial: optuna.Trial, state: str) -> None:
        run_id = trial.user_attrs.get("mlflow_run_id") or _run_of_trial(self.client, self.plan, trial.number)
        if run_id:
            self.client.set_tag(run_id, Tag.TRIAL_STATE, state)


def _run_of_trial(client: MlflowClient, plan: SweepPlan, number: int) -> str | None:
    """A trial that failed before training has no run ID attribute yet; find its run by tags."""
    experiment = client.get_experiment_by_name(plan.data)
    if experiment is None:
        return None
    runs = client.search_runs(
        [experiment.experiment_id],
        f"tags.`{Tag.STUDY}` = '{plan.study}' and tags.`{Tag.TRIAL_NUMBER}` = '{number}'",
        order_by=["attributes.start_time DESC"],
        max_results=1,
    )
    return runs[0].info.run_id if runs else None


def run_worker(plan: SweepPlan, worker: int, timeout: float | None) -> None:
    """One process on the study until it holds `plan.trials` finished trials (Optuna's MaxTrialsCallback counts
    every worker's, on every machine; running ones count as finishing) or too many failed. Threads are split so
    N workers do not fight over the cores."""
    stop_like_ctrl_c()  # spawned workers are stopped with SIGTERM (see run_workers)
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // plan.workers))
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = open_study(plan)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ExperimentalWarning)
        target = MaxTrialsCallback(plan.trials, states=(*FINISHED, TrialState.RUNNING))
    study.optimize(Objective(plan), timeout=timeout, catch=(Exception,), callbacks=[target, StopAfterFailures(plan)],
                   show_progress_bar=(worker == 0 and not plan.quiet))  # fmt: skip


def close_orphaned_runs(client: MlflowClient, plan: SweepPlan, study: optuna.Study) -> int:
    """Child runs still RUNNING whose trial is no longer running (a killed sweep) become KILLED."""
    experiment = client.get_experiment_by_name(plan.data)
    if experiment is None:
        return 0
    running_trials = {str(t.number) for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))}
    orphans = [
        run
        for run in client.search_runs(
            [experiment.experiment_id],
            f"tags.`{Tag.STUDY}` = '{plan.study}' and tags.`{Tag.ROLE}` = 'trial' and attributes.status = 'RUNNING'",
        )
        if run.data.tags.get(Tag.TRIAL_NUMBER) not in running_trials
    ]
    for run in orphans:
        client.set_tag(run.info.run_id, Tag.TRIAL_STATE, "FAIL")
        client.set_tag(run.info.run_id, Tag.ERROR, "the sweep process was killed during this trial")
        client.set_terminated(run.info.run_id, "KILLED")
    return len(orphans)


def run_workers(plan: SweepPlan, remaining: int, timeout: float | None) -> None:
    """At most one worker per remaining trial, so a nearly finished study does not start trials it does not need."""
    workers = min(plan.workers, remaining)
    if workers == 1:
        run_worker(plan, 0, timeout)
        return
    context = multiprocessing.get_context("spawn")  # fresh interpreters: no forked torch/SQLite state
    processes = [context.Process(target=run_worker, args=(plan, i, timeout), name=f"stw-sweep-worker-{i}")
                 for i in range(workers)]  # fmt: skip
    for process in processes:
        process.start()
        time.sleep(0.5)  # stagger study creation on a fresh storage
    try:
        for process in processes:
            process.join()
    except KeyboardInterrupt:
        # A terminal's Ctrl-C reaches every worker; SIGTERM (kill, a scheduler) reaches only this process.
        for process in processes:
            if process.is_alive():
                process.terminate()
        for process in processes:
            process.join()
        raise


def run_until_done(plan: SweepPlan) -> None:
    """Workers until the study holds `plan.trials` finished trials. A trial that was running when a worker stopped
    and then failed leaves the study short, so workers start again for the rest, unless the sweep ran out of
    time or of allowed failures."""
    deadline = time.monotonic() + plan.timeout if plan.timeout else None
    while True:
        study = open_study(plan)
        remaining = plan.trials - len(study.get_trials(deepcopy=False, states=FINISHED))
        left = deadline - time.monotonic() if deadline is not None else None
        if remaining <= 0 or (left is not None and left <= 0):
            return
        if failures(study, plan) >= plan.max_failures:
            print(f"stw sweep: stopped after {plan.max_failures} failed trials with {remaining} still to run; "
                  "their errors are in the trials table (`stw runs --sweep PARENT_RUN_ID`)", file=sys.stderr)  # fmt: skip
            return
        run_workers(plan, remaining, left)


def existing_parent(client: MlflowClient, plan: SweepPlan, experiment_id: str) -> str | None:
    """The study's parent run when the study is being resumed."""
    found = client.search_runs([experiment_id], f"tags.`{Tag.STUDY}` = '{plan.study}' and tags.`{Tag.ROLE}` = 'sweep'",
                               order_by=["attributes.start_time ASC"], max_results=1)  # fmt: skip
    return found[0].info.run_id if found else None


def sweep_tags(plan: SweepPlan, fingerprint: str) -> dict[str, str]:
    return {Tag.ROLE: "sweep", Tag.STUDY: plan.study, "stw.storage": plan.storage, "stw.sampler": plan.sampler,
            "stw.pruner": plan.pruner, "stw.metric": plan.metric, "stw.families": ",".join(plan.families),
            Tag.DATA: plan.data, Tag.FINGERPRINT: fingerprint, **tracking.provenance_tags(), **plan.extra_tags}  # fmt: skip


def run_sweep(plan: SweepPlan) -> tuple[optuna.Study, str]:
    """Run (or resume) the study; returns it and the parent run ID. The parent is a TrackedRun: closed FINISHED,
    or KILLED/FAILED when the sweep itself is interrupted or fails."""
    client = MlflowClient(plan.tracking_uri)
    experiment_id = tracking.experiment_id(client, plan.data, plan.tracking_uri)
    study = open_study(plan)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)  # trials of a killed sweep whose heartbeat stopped: FAIL, then retried
    plan.first_trial = len(study.get_trials(deepcopy=False))
    tags = sweep_tags(plan, base_fingerprint(plan))
    resumed = existing_parent(client, plan, experiment_id)
    with TrackedRun(plan.tracking_uri, plan.data, f"sweep-{plan.study}", tags, resume_run_id=resumed) as parent:
        plan.parent_run_id = parent.run_id
        close_orphaned_runs(client, plan, study)
        run_until_done(plan)
        report_sweep(client, plan, open_study(plan))
    return open_study(plan), plan.parent_run_id


def base_fingerprint(plan: SweepPlan) -> str:
    """Fingerprint of the data under the sweep's base config (trials that change the lookback log their own)."""
    config = config_from_dict(deep_merge(plan.base, {"model": {"family": plan.families[0]}}))
    datamodule = datamodule_for(config)
    datamodule.prepare_data()
    datamodule.setup()
    return datamodule.fingerprint()["digest"]
