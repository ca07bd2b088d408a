"""`stw sweep`: parent and child runs, pruning, failures, resume after a kill, and parallel workers."""

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import optuna
import pytest
import yaml
from mlflow.tracking import MlflowClient
from optuna.trial import FrozenTrial, TrialState

from experiments.sweep.cli import build_plan, sweep_parser
from experiments.sweep.driver import run_sweep
from experiments.sweep.study import open_study

pytestmark = pytest.mark.slow

# Tiny trials on a slice of real ETTh1: a linear model, a few batches per epoch.
FAST = [
    "data.horizon=24",
    "trainer.limit_train_batches=4",
    "trainer.limit_val_batches=2",
    "trainer.limit_test_batches=2",
    "trainer.max_epochs=2",
    "--quiet",
]


def _plan(tmp_path: Path, *words: str):
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    tracking = f"sqlite:///{tmp_path / 'mlflow.db'}"
    args = sweep_parser().parse_args(["--storage", storage, "--tracking-uri", tracking, "--study", "s", *words, *FAST])
    return build_plan(args)


def _space(tmp_path: Path, entries: dict) -> str:
    path = tmp_path / "space.yaml"
    path.write_text(yaml.safe_dump({"replace": True, "shared": entries}))
    return str(path)


def _runs(plan, role: str):
    client = MlflowClient(plan.tracking_uri)
    experiment = client.get_experiment_by_name(plan.data)
    return client.search_runs([experiment.experiment_id], f"tags.`stw.role` = '{role}'")


def test_a_tiny_sweep_leaves_a_parent_and_one_child_per_trial(tmp_path):
    plan = _plan(tmp_path, "--trials", "3", "--families", "linear,mlp", "--pruner", "none")
    study, parent_id = run_sweep(plan)
    assert len(study.trials) == 3
    [parent] = _runs(plan, "sweep")
    children = _runs(plan, "trial")
    assert parent.info.run_id == parent_id and parent.info.status == "FINISHED"
    assert {c.data.tags["mlflow.parentRunId"] for c in children} == {parent_id}
    assert sorted(int(c.data.tags["stw.trial_number"]) for c in children) == [0, 1, 2]
    assert {c.data.tags["stw.trial_state"] for c in children} == {"COMPLETE"}
    assert all(c.info.status == "FINISHED" and "test_mse" in c.data.metrics for c in children)
    for tag in ("stw.study", "stw.storage", "stw.sampler", "stw.pruner", "stw.data_fingerprint", "stw.git_commit"):
        assert parent.data.tags[tag]
    best = study.best_trial
    assert parent.data.tags["stw.best_run_id"] == best.user_attrs["mlflow_run_id"]
    assert parent.data.metrics["best_val_mse"] == pytest.approx(best.value)
    client = MlflowClient(plan.tracking_uri)
    artifacts = {a.path for a in client.list_artifacts(parent_id)}
    assert {"trials.csv", "search_space.yaml", "plots"} <= artifacts
    plots = {a.path for a in client.list_artifacts(parent_id, "plots")}
    assert {"plots/optimization_history.html", "plots/optimization_history.png"} <= plots
    child_artifacts = {a.path for a in client.list_artifacts(best.user_attrs["mlflow_run_id"])}
    assert {"config.yaml", "checkpoints", "forecast.png", "learning_curves.png"} <= child_artifacts


def test_pruning_stops_a_deliberately_bad_trial(tmp_path):
    space = _space(tmp_path, {"optim.lr": {"choice": [0.01, 1e-7]}})
    plan = _plan(
        tmp_path,
        "--trials",
        "5",
        "--families",
        "linear",
        "--space",
        space,
        "--pruner",
        "median",
        "trainer.max_epochs=4",
        "trainer.patience=0",
        "model.decomposition=false",
    )
    study = open_study(plan)
    for lr in (0.01, 0.01, 0.01, 0.01, 1e-7):  # four sane trials set the median, then one that cannot learn
        study.enqueue_trial({"family": "linear", "optim.lr": lr})
    study, _ = run_sweep(plan)
    assert study.trials[-1].state == TrialState.PRUNED
    pruned_run = [r for r in _runs(plan, "trial") if r.data.tags["stw.trial_number"] == "4"][0]
    assert pruned_run.data.tags["stw.trial_state"] == "PRUNED" and pruned_run.info.status == "FINISHED"


def test_a_failing_trial_is_recorded_and_the_sweep_goes_on(tmp_path):
    space = _space(tmp_path, {"data.lookback": {"choice": [48, 20000]}})
    plan = _plan(tmp_path, "--trials", "2", "--families", "linear", "--space", space, "--pruner", "none")
    study = open_study(plan)
    study.enqueue_trial({"family": "linear", "data.lookback": 20000})  # longer than the series: DataError
    study.enqueue_trial({"family": "linear", "data.lookback": 48})
    study, _ = run_sweep(plan)
    failed, completed = study.trials[0], study.trials[1]
    assert failed.state == TrialState.FAIL and "lookback" in failed.user_attrs["error"]
    assert completed.state == TrialState.COMPLETE
    run = [r for r in _runs(plan, "trial") if r.data.tags["stw.trial_number"] == "0"][0]
    assert run.info.status == "FAILED" and run.data.tags["stw.trial_state"] == "FAIL" and run.data.tags["stw.error"]


def _stw_sweep(tmp_path: Path, *words: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "experiments.cli",
        "sweep",
        "--storage",
        f"sqlite:///{tmp_path / 'optuna.db'}",
        "--tracking-uri",
        f"sqlite:///{tmp_path / 'mlflow.db'}",
        "--study",
        "s",
        *FAST,
        *words,
    ]  # words override FAST


def _training(trial: FrozenTrial) -> bool:
    """RUNNING and already training: its MLflow run is open (the ID is stored when fit starts)."""
    return trial.state == TrialState.RUNNING and "mlflow_run_id" in trial.user_attrs


def _wait_for_trials(storage: str, reached: Callable[[list[FrozenTrial]], bool], seconds: float = 240) -> None:
    """Poll the study "s" until its trials satisfy `reached`."""
    deadline = time.time() + seconds
    while time.time() < deadline:
        time.sleep(0.2)
        try:
            trials = optuna.load_study(study_name="s", storage=storage).trials
        except Exception:  # the study is not created yet
            continue
        if reached(trials):
            return
    raise AssertionError(f"the trials did not reach the awaited states within {seconds} s")


def test_resume_after_sigkill_keeps_completed_trials_and_closes_orphaned_runs(tmp_path):
    # Trials of a few seconds, so that the kill lands inside one, not between two.
    words = [
        "--trials",
        "4",
        "--families",
        "linear",
        "--pruner",
        "none",
        "--heartbeat",
        "1",
        "trainer.max_epochs=30",
        "trainer.patience=0",
    ]
    sweep = subprocess.Popen(
        _stw_sweep(tmp_path, *words),
        cwd=tmp_path,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    # kill once a trial is complete and the next one is training
    _wait_for_trials(
        storage, lambda trials: any(t.state == TrialState.COMPLETE for t in trials) and _training(trials[-1])
    )
    os.killpg(sweep.pid, signal.SIGKILL)
    sweep.wait()
    before = {
        t.number for t in optuna.load_study(study_name="s", storage=storage).trials if t.state == TrialState.COMPLETE
    }
    assert before, "the sweep was killed before any trial completed"
    time.sleep(4)  # past the grace period (3 heartbeats) so the killed trial is stale

    subprocess.run(_stw_sweep(tmp_path, *words), cwd=tmp_path, check=True, capture_output=True)

    study = optuna.load_study(study_name="s", storage=storage)
    after = {t.number for t in study.trials if t.state == TrialState.COMPLETE}
    assert before <= after and len(after) == 4
    assert any(t.state == TrialState.FAIL for t in study.trials)  # the killed trial
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("ett").experiment_id])
    assert not [r for r in runs if r.info.status == "RUNNING"]
    assert any(r.info.status == "KILLED" for r in runs)


def test_sigterm_stops_a_two_worker_sweep_like_ctrl_c(tmp_path):
    """kill (or a batch scheduler's time limit) signals only the main process: it must stop its workers and
    leave every trial and run closed, nothing RUNNING."""
    words = [
        "--trials",
        "6",
        "--families",
        "rnn",
        "--pruner",
        "none",
        "--workers",
        "2",
        "trainer.max_epochs=20",
        "trainer.patience=0",
    ]
    sweep = subprocess.Popen(
        _stw_sweep(tmp_path, *words),
        cwd=tmp_path,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    _wait_for_trials(storage, lambda trials: sum(map(_training, trials)) == 2)
    sweep.send_signal(signal.SIGTERM)
    _, err = sweep.communicate(timeout=120)
    assert sweep.returncode == 130 and "SIGTERM" in err
    trials = optuna.load_study(study_name="s", storage=storage).trials
    assert not [t for t in trials if t.state == TrialState.RUNNING]
    assert any(t.state == TrialState.FAIL and "KeyboardInterrupt" in t.user_attrs["error"] for t in trials)
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("ett").experiment_id])
    assert not [r for r in runs if r.info.status == "RUNNING"]
    parent = [r for r in runs if r.data.tags["stw.role"] == "sweep"][0]
    assert parent.info.status == "KILLED"
    children = [r for r in runs if r.data.tags["stw.role"] == "trial"]
    assert sum(r.info.status == "KILLED" and r.data.tags["stw.trial_state"] == "FAIL" for r in children) == 2


def test_two_workers_run_exactly_the_requested_trials(tmp_path):
    plan = _plan(tmp_path, "--trials", "4", "--families", "linear", "--pruner", "none", "--workers", "2")
    study, _ = run_sweep(plan)
    numbers = [t.number for t in study.trials]
    assert sorted(numbers) == [0, 1, 2, 3]
    assert all(t.state == TrialState.COMPLETE for t in study.trials)
    assert len(_runs(plan, "trial")) == 4


def test_a_resume_started_at_once_after_sigkill_leaves_no_run_running(tmp_path):
    """The killed trial's heartbeat is not stale yet when the resume starts: the resume waits for it to go stale,
    then Optuna fails and retries it and its run is closed KILLED at that moment."""
    words = ["--trials", "3", "--families", "linear", "--pruner", "none", "--heartbeat", "1",
             "trainer.max_epochs=30", "trainer.patience=0"]  # fmt: skip
    sweep = subprocess.Popen(_stw_sweep(tmp_path, *words), cwd=tmp_path, start_new_session=True,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    _wait_for_trials(storage, lambda trials: bool(trials) and _training(trials[-1]))
    os.killpg(sweep.pid, signal.SIGKILL)
    sweep.wait()
    subprocess.run(_stw_sweep(tmp_path, *words), cwd=tmp_path, check=True, capture_output=True)  # no pause
    study = optuna.load_study(study_name="s", storage=storage)
    assert len([t for t in study.trials if t.state == TrialState.COMPLETE]) == 3
    assert TrialState.RUNNING not in {t.state for t in study.trials}
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("ett").experiment_id])
    assert [r.info.status for r in runs if r.info.status == "RUNNING"] == []
    assert "KILLED" in {r.info.status for r in runs}


@pytest.mark.parametrize("sampler", ["random", "tpe"])
def test_a_resumed_sweep_does_not_replay_the_configurations_it_already_tried(tmp_path, sampler):
    space = _space(tmp_path, {"optim.lr": {"float": [1e-4, 1e-2], "log": True}})
    words = ["--families", "linear", "--pruner", "none", "--sampler", sampler, "--space", space]
    first, _ = run_sweep(_plan(tmp_path, "--trials", "2", *words))
    first_lrs = [t.params["optim.lr"] for t in first.trials]
    resumed, _ = run_sweep(_plan(tmp_path, "--trials", "4", *words))
    lrs = [t.params["optim.lr"] for t in resumed.trials]
    assert len(lrs) == 4 and len(set(lrs)) == 4
    assert lrs[:2] == first_lrs


def test_a_zero_byte_or_overwritten_study_store_is_refused_by_name(tmp_path):
    from datamodules.errors import TrackingError

    store = tmp_path / "optuna.db"
    store.write_bytes(b"")
    with pytest.raises(TrackingError, match="empty file"):
        run_sweep(_plan(tmp_path, "--trials", "1", "--families", "linear"))
    store.write_text("not a database at all\n" * 10)
    with pytest.raises(TrackingError, match="not an SQLite database"):
        run_sweep(_plan(tmp_path, "--trials", "1", "--families", "linear"))


def test_a_new_study_store_is_never_attached_to_the_old_parent_run(tmp_path):
    from datamodules.errors import TrackingError

    plan = _plan(tmp_path, "--trials", "2", "--families", "linear", "--pruner", "none")
    run_sweep(plan)
    (tmp_path / "optuna.db").rename(tmp_path / "optuna-old.db")  # the store is lost; MLflow still has the parent
    with pytest.raises(TrackingError, match="trial runs numbered up to 1"):
        run_sweep(_plan(tmp_path, "--trials", "4", "--families", "linear", "--pruner", "none"))
    assert len(_runs(plan, "trial")) == 2
