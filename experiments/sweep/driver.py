"""`stw sweep`: an Optuna study over families and their knobs; every trial is a nested MLflow run.

One parent MLflow run per study (reopened on resume), one child per trial holding everything a `stw train`
run holds. The study lives in an RDB storage with heartbeats, so trials of a killed sweep are failed and
retried on resume and their MLflow runs closed as KILLED. `--workers N` runs N processes on the study.
"""

import multiprocessing
import os
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
from optuna.trial import TrialState
from optuna_integration import PyTorchLightningPruningCallback

from experiments import tracking
from experiments.config import config_from_dict, datamodule_for, metric_mode
from experiments.interrupts import stop_like_ctrl_c
from experiments.sweep.report import report_sweep
from experiments.sweep.space import deep_merge, nest, sample_overrides
from experiments.train import run_training

# Heartbeats and the retry callback are marked experimental in Optuna 5; they are what crash-safety rests on.
warnings.filterwarnings("ignore", category=ExperimentalWarning)

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
    return RDBStorage(
        plan.storage,
        engine_kwargs=engine,
        heartbeat_interval=plan.heartbeat,
        grace_period=3 * plan.heartbeat,
        heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(max_retry=1),
    )


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


class Objective:
    def __init__(self, plan: SweepPlan) -> None:
        self.plan = plan
        self.client = MlflowClient(plan.tracking_uri)

    def __call__(self, trial: optuna.Trial) -> float:
        plan = self.plan
        tags = {
            "stw.study": plan.study,
            "stw.trial_number": str(trial.number),
            "stw.trial_state": "RUNNING",
            "stw.role": "trial",
            **plan.extra_tags,
        }
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
        for name, value in result.metrics.items():
            if name.startswith(("test_", "skill", "baseline_last", "baseline_majority")):
                trial.set_user_attr(name, value)
        return result.best_score

    def _mark(self, trial: optuna.Trial, state: str) -> None:
        run_id = trial.user_attrs.get("mlflow_run_id") or _run_of_trial(self.client, self.plan, trial.number)
        if run_id:
            self.client.set_tag(run_id, "stw.trial_state", state)


def _run_of_trial(client: MlflowClient, plan: SweepPlan, number: int) -> str | None:
    """A trial that failed before training has no run ID attribute yet; find its run by tags."""
    experiment = client.get_experiment_by_name(plan.data)
    if experiment is None:
        return None
    runs = client.search_runs(
        [experiment.experiment_id],
        f"tags.`stw.study` = '{plan.study}' and tags.`stw.trial_number` = '{number}'",
        order_by=["attributes.start_time DESC"],
        max_results=1,
    )
    return runs[0].info.run_id if runs else None


def run_worker(plan: SweepPlan, n_trials: int, worker: int) -> None:
    """One process's share of the study. Threads are split so N workers do not fight over the cores."""
    stop_like_ctrl_c()  # spawned workers are stopped with SIGTERM (see run_workers)
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // plan.workers))
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = open_study(plan)
    study.optimize(
        Objective(plan),
        n_trials=n_trials,
        timeout=plan.timeout,
        catch=(Exception,),
        show_progress_bar=(worker == 0 and not plan.quiet),
    )


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
            f"tags.`stw.study` = '{plan.study}' and tags.`stw.role` = 'trial' and attributes.status = 'RUNNING'",
        )
        if run.data.tags.get("stw.trial_number") not in running_trials
    ]
    for run in orphans:
        client.set_tag(run.info.run_id, "stw.trial_state", "FAIL")
        client.set_tag(run.info.run_id, "stw.error", "the sweep process was killed during this trial")
        client.set_terminated(run.info.run_id, "KILLED")
    return len(orphans)


def run_workers(plan: SweepPlan, n_trials: int) -> None:
    """Split the remaining trials over the workers; each worker runs exactly its share."""
    shares = [n_trials // plan.workers + (i < n_trials % plan.workers) for i in range(plan.workers)]
    if plan.workers == 1:
        run_worker(plan, shares[0], 0)
        return
    context = multiprocessing.get_context("spawn")  # fresh interpreters: no forked torch/SQLite state
    processes = [
        context.Process(target=run_worker, args=(plan, share, i), name=f"stw-sweep-worker-{i}")
        for i, share in enumerate(shares)
        if share > 0
    ]
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


def _parent_run(client: MlflowClient, plan: SweepPlan, experiment_id: str, tags: dict[str, str]) -> str:
    """The study's parent run: reopened when the study is resumed, else created."""
    existing = client.search_runs(
        [experiment_id],
        f"tags.`stw.study` = '{plan.study}' and tags.`stw.role` = 'sweep'",
        order_by=["attributes.start_time ASC"],
        max_results=1,
    )
    if existing:
        run_id = existing[0].info.run_id
        client.update_run(run_id, status="RUNNING")
        return run_id
    return client.create_run(experiment_id, run_name=f"sweep-{plan.study}", tags=tags).info.run_id


def sweep_tags(plan: SweepPlan, fingerprint: str) -> dict[str, str]:
    return {
        "stw.tool": "st-workbench",
        "stw.role": "sweep",
        "stw.study": plan.study,
        "stw.storage": plan.storage,
        "stw.sampler": plan.sampler,
        "stw.pruner": plan.pruner,
        "stw.metric": plan.metric,
        "stw.families": ",".join(plan.families),
        "stw.data": plan.data,
        "stw.data_fingerprint": fingerprint,
        "stw.command": tracking.command_line(),
        **tracking.git_state(),
        **tracking.package_versions(),
        **plan.extra_tags,
    }


def run_sweep(plan: SweepPlan) -> tuple[optuna.Study, str]:
    """Run (or resume) the study; returns it and the parent run ID. The parent is closed FINISHED,
    or KILLED/FAILED when the sweep itself is interrupted."""
    client = MlflowClient(plan.tracking_uri)
    experiment_id = tracking.experiment_id(client, plan.data, plan.tracking_uri)
    study = open_study(plan)
    optuna.storages.fail_stale_trials(study)  # trials of a killed sweep whose heartbeat stopped: FAIL, then retried
    plan.parent_run_id = _parent_run(client, plan, experiment_id, sweep_tags(plan, base_fingerprint(plan)))
    close_orphaned_runs(client, plan, study)
    done = len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED)))
    status = "FINISHED"
    try:
        run_workers(plan, max(plan.trials - done, 0))
        report_sweep(client, plan, open_study(plan))
    except KeyboardInterrupt:
        status = "KILLED"
        raise
    except BaseException:
        status = "FAILED"
        raise
    finally:
        client.set_terminated(plan.parent_run_id, status)
    return open_study(plan), plan.parent_run_id


def base_fingerprint(plan: SweepPlan) -> str:
    """Fingerprint of the data under the sweep's base config (trials that change the lookback log their own)."""
    config = config_from_dict(deep_merge(plan.base, {"model": {"family": plan.families[0]}}))
    datamodule = datamodule_for(config)
    datamodule.prepare_data()
    datamodule.setup()
    return datamodule.fingerprint()["digest"]
