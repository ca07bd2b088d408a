"""`stw sweep`: an Optuna study over families and their knobs; every trial is a nested MLflow run.

One parent MLflow run per study (reopened on resume), one child per trial holding everything a `stw train`
run holds. The study lives in an RDB storage with heartbeats, so trials of a killed sweep are failed and
retried on resume and their MLflow runs closed as KILLED. `--workers N` runs N processes on the study.
"""

import math
import multiprocessing
import os
import socket
import sys
import time
import warnings
from typing import Any

import optuna
import torch
from lightning.pytorch.callbacks import Callback
from mlflow.tracking import MlflowClient
from optuna.exceptions import ExperimentalWarning
from optuna.study import MaxTrialsCallback
from optuna.trial import TrialState
from optuna_integration import PyTorchLightningPruningCallback

from datamodules.errors import RunError, TrackingError
from experiments import tracking
from experiments.config import config_from_dict, datamodule_for
from experiments.devices import worker_gpu
from experiments.interrupts import stop_like_ctrl_c
from experiments.plugins import load_plugins, plugin_tags
from experiments.run_names import run_name
from experiments.sweep.budget import CLOSING_ATTR, stop_time
from experiments.sweep.budget_stop import BudgetStop
from experiments.sweep.confirm import confirm
from experiments.sweep.recipes import RECIPE_ATTR, enqueue_recipes
from experiments.sweep.report import report_sweep
from experiments.sweep.space import deep_merge, nest, sample_overrides
from experiments.sweep.study import FINISHED, SweepPlan, close_trial_run, failures, open_study, trial_run_id
from experiments.tracking import Tag, TrackedRun, final_metrics
from experiments.train import run_training

# A sweep's default epochs: enough for the ranking of families to settle, small enough for a few-minute demo.
SWEEP_DEFAULTS = {"trainer": {"max_epochs": 6, "progress": False}}


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


class ReportWithoutPruning(Callback):
    """Reports a trial's validation score every epoch, as the pruning callback does, and never prunes it."""

    def __init__(self, trial: optuna.Trial, monitor: str) -> None:
        self.trial, self.monitor = trial, monitor

    def on_validation_end(self, trainer: Any, pl_module: Any) -> None:
        if not trainer.sanity_checking and (value := trainer.callback_metrics.get(self.monitor)) is not None:
            self.trial.report(float(value), step=trainer.current_epoch)


def pruning_callback(plan: SweepPlan, trial: optuna.Trial) -> Callback | None:
    """The pruner's callback for a sampled trial. A recipe trial reports its scores, so that the pruner measures
    later trials against a known-good curve, but is never pruned: recipes run to the end, so the sweep's best is
    never worse than its best recipe (successive halving pruned the RLinear and CycleNet recipes at their first
    epoch in `make demo`)."""
    if plan.pruner == "none":
        return None
    if trial.user_attrs.get(RECIPE_ATTR):
        return ReportWithoutPruning(trial, plan.metric)
    return PyTorchLightningPruningCallback(trial, monitor=plan.metric)


class Objective:
    def __init__(self, plan: SweepPlan) -> None:
        self.plan = plan
        self.client = MlflowClient(plan.tracking_uri)

    def __call__(self, trial: optuna.Trial) -> float:
        plan = self.plan
        if surplus := surplus_reason(plan, trial):
            trial.set_user_attr("surplus", True)
            raise TrialSurplus(surplus)
        trial.set_user_attr("worker", f"{socket.gethostname()}:{os.getpid()}")  # which machine and process ran it
        tags = {Tag.STUDY: plan.study, Tag.TRIAL_NUMBER: str(trial.number), Tag.TRIAL_STATE: "RUNNING",
                Tag.ROLE: "trial", **plan.extra_tags}  # fmt: skip
        if recipe := trial.user_attrs.get(RECIPE_ATTR):
            tags[Tag.RECIPE] = recipe
        closings = measured_closings(trial.study)
        budget = BudgetStop(plan.sweep_stop(closings),
                            plan.trial_timeout and stop_time(time.time(), plan.trial_timeout, closings))  # fmt: skip
        callbacks: list[Callback] = [LinkTrialToRun(trial), budget]
        if pruning := pruning_callback(plan, trial):
            callbacks.append(pruning)
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
                run_name=run_name(config, prefix=f"trial-{trial.number}-"),
            )
        except optuna.TrialPruned as pruned:
            self._mark(trial, "PRUNED", budget)
            if budget.cut_by:
                trial.set_user_attr("error", str(pruned))  # the reason a cut trial has no score
            raise
        except (Exception, KeyboardInterrupt) as error:  # Optuna records both as FAIL
            trial.set_user_attr("error", f"{type(error).__name__}: {error}"[:2000])
            self._mark(trial, "FAIL")
            raise
        if (closing := budget.closing_seconds()) is not None:
            trial.set_user_attr(CLOSING_ATTR, closing)
        self._mark(trial, "COMPLETE", budget)
        for name, value in final_metrics(result.metrics).items():
            trial.set_user_attr(name, value)
        return result.best_score

    def _mark(self, trial: optuna.Trial, state: str, budget: BudgetStop | None = None) -> None:
        cut_by = budget.cut_by if budget else None
        if cut_by:
            trial.set_user_attr("cut_by", cut_by)
            trial.set_user_attr("cut_at", budget.cut_at)
        if run_id := trial_run_id(self.client, self.plan, trial):
            self.client.set_tag(run_id, Tag.TRIAL_STATE, state)
            if cut_by:
                self.client.set_tag(run_id, Tag.CUT_BY, cut_by)


def measured_closings(study: optuna.Study) -> list[float]:
    """Seconds each completed trial took to close (Objective records them): what the budgets keep in reserve."""
    trials = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    return [trial.user_attrs[CLOSING_ATTR] for trial in trials if CLOSING_ATTR in trial.user_attrs]


def run_worker(plan: SweepPlan, worker: int, timeout: float | None, gpu: str | None = None) -> None:
    """One process on the study until it holds `plan.trials` finished trials (Optuna's MaxTrialsCallback counts
    every worker's, on every machine; running ones count as finishing) or too many failed. Threads are split so
    N workers do not fight over the cores; with a `gpu` (devices.worker_gpu) the worker sees only that one."""
    if gpu is not None:  # a fresh interpreter that has not touched CUDA yet, so the setting holds
        os.environ["CUDA_VISIBLE_DEVICES"] = gpu
    stop_like_ctrl_c()  # spawned workers are stopped with SIGTERM (see run_workers)
    load_plugins(plan.plugins)  # a spawned worker starts with the built-in registries only
    # The cores this process may run on (a container's or `taskset`'s limit), not the machine's: two sweeps sharing
    # a machine, each assuming all of it, oversubscribe the cores and run ~10x slower (measured, benchmarks/scale.py).
    torch.set_num_threads(max(1, len(os.sched_getaffinity(0)) // plan.workers))
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = open_study(plan, worker)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ExperimentalWarning)
        target = MaxTrialsCallback(plan.trials, states=(*FINISHED, TrialState.RUNNING))
    study.optimize(Objective(plan), timeout=timeout, catch=(Exception,), callbacks=[target, StopAfterFailures(plan)],
                   show_progress_bar=(worker == 0 and not plan.quiet))  # fmt: skip


def close_orphaned_runs(client: MlflowClient, plan: SweepPlan, study: optuna.Study) -> None:
    """Child runs still RUNNING whose trial is no longer running (its process was killed) become KILLED."""
    for trial in study.get_trials(deepcopy=False, states=(TrialState.FAIL,)):
        close_trial_run(client, plan, trial, "its sweep process was killed during it")


def run_workers(plan: SweepPlan, remaining: int, timeout: float | None) -> None:
    """At most one worker per remaining trial, so a nearly finished study does not start trials it does not need."""
    workers = min(plan.workers, remaining)
    if workers == 1:
        run_worker(plan, 0, timeout)
        return
    context = multiprocessing.get_context("spawn")  # fresh interpreters: no forked torch/SQLite state
    gpus = torch.cuda.device_count()  # read without initialising CUDA here
    processes = [context.Process(target=run_worker, args=(plan, i, timeout, worker_gpu(i, workers, gpus)),
                                 name=f"stw-sweep-worker-{i}") for i in range(workers)]  # fmt: skip
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
    while True:
        study = open_study(plan)
        fail_stale_trials(study)
        finished = len(study.get_trials(deepcopy=False, states=FINISHED))
        running = len(study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)))
        # No trial starts once training must stop: it would be cut at once.
        sweep_stop = plan.sweep_stop(measured_closings(study))
        left = sweep_stop - time.time() if sweep_stop is not None else None
        if finished >= plan.trials or (left is not None and left <= 0):
            return
        if failures(study, plan) >= plan.max_failures:
            rest = "" if math.isinf(plan.trials) else f" with {plan.trials - finished} still to run"
            print(f"stw sweep: stopped after {plan.max_failures} failed trials{rest}; their errors are in the trials "
                  "table (`stw runs --sweep PARENT_RUN_ID`)", file=sys.stderr)  # fmt: skip
            return
        if finished + running >= plan.trials:
            # The rest are running elsewhere: on another machine, or in a killed process whose heartbeat has not
            # gone stale yet (fail_stale_trials then fails and retries it, and closes its run).
            time.sleep(plan.heartbeat)
            continue
        run_workers(plan, plan.trials - finished - running, left)


def fail_stale_trials(study: optuna.Study) -> None:
    """Trials whose heartbeat stopped become FAIL, are retried, and their runs closed (see study.CloseRunAndRetry)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)


def existing_parent(client: MlflowClient, plan: SweepPlan, experiment_id: str) -> str | None:
    """The study's parent run when the study is being resumed."""
    found = client.search_runs([experiment_id], f"tags.`{Tag.STUDY}` = '{plan.study}' and tags.`{Tag.ROLE}` = 'sweep'",
                               order_by=["attributes.start_time ASC", "attributes.run_id ASC"], max_results=1)  # fmt: skip
    return found[0].info.run_id if found else None


def claim_parent(client: MlflowClient, plan: SweepPlan, experiment_id: str, tags: dict[str, str]) -> str:
    """The study's parent run, created by the first of several machines starting the same new study at once:
    each creates one, then all keep the earliest (existing_parent orders by start time) and delete their own."""
    mine = client.create_run(experiment_id, run_name=f"sweep-{plan.study}", tags=tags).info.run_id
    earliest = existing_parent(client, plan, experiment_id) or mine
    if earliest != mine:
        client.delete_run(mine)
    return earliest


def check_parent_matches(client: MlflowClient, plan: SweepPlan, parent_run_id: str) -> None:
    """A study store that was replaced or emptied would attach a new study to the old parent run, whose trial
    runs it does not hold (trial numbers would repeat); refuse that. The trials are counted after the runs are
    listed: a trial exists before its run, so trials other machines start meanwhile cannot look missing."""
    experiment = client.get_run(parent_run_id).info.experiment_id
    children = client.search_runs([experiment], f"tags.`{Tag.PARENT}` = '{parent_run_id}'")
    numbers = [int(n) for run in children if (n := run.data.tags.get(Tag.TRIAL_NUMBER)) is not None]
    held = len(open_study(plan).get_trials(deepcopy=False))
    if numbers and max(numbers) >= held:
        raise TrackingError(
            f"the study store {plan.storage} holds {held} trials of study {plan.study!r}, but its MLflow parent run "
            f"{parent_run_id} has trial runs numbered up to {max(numbers)}: the store was replaced, emptied or is "
            "another one. Point --storage at the study's own store, or start a new study with another --study name"
        )


def sweep_tags(plan: SweepPlan, fingerprint: str) -> dict[str, str]:
    return {Tag.ROLE: "sweep", Tag.STUDY: plan.study, "stw.storage": plan.storage, "stw.sampler": plan.sampler,
            "stw.pruner": plan.pruner, "stw.metric": plan.metric, "stw.families": ",".join(plan.families),
            Tag.DATA: plan.data, Tag.FINGERPRINT: fingerprint, **tracking.provenance_tags(),
            **plugin_tags(plan.data, plan.families), **plan.extra_tags}  # fmt: skip


def run_sweep(plan: SweepPlan) -> tuple[optuna.Study, str]:
    """Run (or resume) the study; returns it and the parent run ID. The parent is a TrackedRun: closed FINISHED,
    or KILLED/FAILED when the sweep itself is interrupted or fails."""
    plan.started = time.time()
    client = MlflowClient(plan.tracking_uri)
    experiment_id = tracking.experiment_id(client, plan.data, plan.tracking_uri)
    study = open_study(plan)
    fail_stale_trials(study)
    plan.first_trial = len(study.get_trials(deepcopy=False))
    tags = sweep_tags(plan, base_fingerprint(plan))
    parent_id = existing_parent(client, plan, experiment_id)
    if parent_id:
        check_parent_matches(client, plan, parent_id)
    else:
        parent_id = claim_parent(client, plan, experiment_id, tags)
    if plan.recipes:  # after the parent check, which counts the trials the store holds
        queue_recipes(plan, study)
    with TrackedRun(plan.tracking_uri, plan.data, f"sweep-{plan.study}", tags, resume_run_id=parent_id) as parent:
        plan.parent_run_id = parent.run_id
        close_orphaned_runs(client, plan, study)
        run_until_done(plan)
        if plan.confirm:
            confirm(client, plan, open_study(plan))
        report_sweep(client, plan, open_study(plan))
        if plan.ensemble:
            ensemble_trials(client, plan, open_study(plan))
    return open_study(plan), plan.parent_run_id


def ensemble_trials(client: MlflowClient, plan: SweepPlan, study: optuna.Study) -> None:
    """Up to `plan.ensemble` completed trials, picked on the validation objective (never a test score; see
    experiments/ensemble_selection.py), averaged as an ensemble run nested under the parent; the parent records
    its run ID and scores as ensemble_<metric>."""
    from experiments.ensemble import assemble, load_members, log_ensemble
    from experiments.ensemble_selection import pick_members

    maximize = study.direction.name == "MAXIMIZE"
    ranked = sorted(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)), key=lambda trial: trial.value,
                    reverse=maximize)  # fmt: skip
    run_ids = [trial.user_attrs["mlflow_run_id"] for trial in ranked if "mlflow_run_id" in trial.user_attrs]
    if len(run_ids) < 2:
        print(f"no ensemble: --ensemble {plan.ensemble} needs two completed trials, the study has {len(run_ids)}",
              file=sys.stderr)  # fmt: skip
        return
    root = plan.base["data"].get("root")
    try:
        # Greedy picks read every candidate's checkpoint; the best 20 by validation bound that cost.
        candidates = load_members(run_ids[: plan.ensemble if plan.ensemble_pick == "top" else 20], plan.tracking_uri)
        members = pick_members(candidates, plan.ensemble, plan.ensemble_pick, plan.metric, maximize, root, plan.quiet)
        ensemble = assemble(members, root)
        result = log_ensemble(ensemble, plan.tracking_uri, parent_run_id=plan.parent_run_id,
                              tags={Tag.STUDY: plan.study}, quiet=plan.quiet)  # fmt: skip
    except RunError as error:  # e.g. a space that varies the horizon: the trials stand, without an ensemble
        print(f"no ensemble: {error}", file=sys.stderr)
        return
    plan.ensemble_run_id = result.run_id
    client.set_tag(plan.parent_run_id, Tag.ENSEMBLE_RUN_ID, result.run_id)
    for name, value in result.metrics.items():
        if name == plan.metric or tracking.is_final_metric(name):
            client.log_metric(plan.parent_run_id, f"ensemble_{name}", value)


def queue_recipes(plan: SweepPlan, study: optuna.Study) -> None:
    """The space's recipes first, in the trials the study still has to run and that are not queued already."""
    taken = len(study.get_trials(deepcopy=False, states=(*FINISHED, TrialState.RUNNING, TrialState.WAITING)))
    for note in enqueue_recipes(study, plan.space, plan.data, plan.families, set(plan.fixed), plan.trials - taken):
        print(f"stw sweep: {note}", file=sys.stderr)


def base_fingerprint(plan: SweepPlan) -> str:
    """Fingerprint of the data under the sweep's base config (trials that change the lookback log their own)."""
    config = config_from_dict(deep_merge(plan.base, {"model": {"family": plan.families[0]}}))
    datamodule = datamodule_for(config)
    datamodule.prepare_data()
    datamodule.setup()
    return datamodule.fingerprint()["digest"]
