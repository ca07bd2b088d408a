"""Many machines on the engines researchers already trust: one Optuna study in a real PostgreSQL server, one real
`mlflow server`, and independent `stw sweep` processes standing for machines. `.ci/run` starts both services
(`.ci/services`); without them these tests skip and say how to start them."""

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import optuna
import pytest
from mlflow.tracking import MlflowClient
from optuna.trial import TrialState

from experiments.tracking import Tag, database_url

POSTGRES = os.environ.get("STW_TEST_POSTGRES_URL")
MLFLOW = os.environ.get("STW_TEST_MLFLOW_URI")
REPO = Path(__file__).resolve().parents[1]
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not (POSTGRES and MLFLOW), reason="needs a PostgreSQL and an MLflow server: run "
                       "`eval \"$(bash .ci/services start /tmp/stw-services)\"` first (.ci/run does)"),
]  # fmt: skip
TINY = ["--families", "linear", "--pruner", "none", "data.lookback=48", "data.horizon=24", "trainer.max_epochs=1",
        "trainer.limit_train_batches=2", "trainer.limit_val_batches=1", "trainer.limit_test_batches=1", "--quiet"]  # fmt: skip


def _machine(study: str, *words: str) -> subprocess.Popen:
    """One `stw sweep` process, as a second machine would run it: its own interpreter, the shared services."""
    command = [sys.executable, "-m", "experiments.cli", "sweep", "--study", study, "--storage", POSTGRES,
               "--tracking-uri", MLFLOW, "--workers", "1", *TINY, *words]  # fmt: skip
    return subprocess.Popen(command, cwd=REPO, start_new_session=True, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)  # fmt: skip


def _study(name: str) -> optuna.Study:
    return optuna.load_study(study_name=name, storage=database_url(POSTGRES))


def _runs(study: str):
    client = MlflowClient(MLFLOW)
    experiment = client.get_experiment_by_name("ett")
    return client.search_runs([experiment.experiment_id], f"tags.`{Tag.STUDY}` = '{study}'")


def _check_records(study: str, trials: int) -> None:
    finished = [t for t in _study(study).trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    assert len(finished) == trials
    runs = _runs(study)
    parents = [r for r in runs if r.data.tags.get(Tag.ROLE) == "sweep"]
    children = [r for r in runs if r.data.tags.get(Tag.ROLE) == "trial"]
    assert len(parents) == 1, "every trial is nested under one parent run"
    assert {c.data.tags[Tag.PARENT] for c in children} == {parents[0].info.run_id}
    numbers = [c.data.tags[Tag.TRIAL_NUMBER] for c in children]
    assert len(numbers) == len(set(numbers))
    assert "RUNNING" not in {r.info.status for r in runs}


def test_two_machines_share_one_study_and_finish_exactly_the_requested_trials():
    study = f"two-machines-{uuid.uuid4().hex[:8]}"
    machines = [_machine(study, "--trials", "4") for _ in range(2)]
    for machine in machines:
        _, errors = machine.communicate(timeout=900)
        assert machine.returncode == 0, errors
    _check_records(study, 4)
    workers = {t.user_attrs["worker"] for t in _study(study).trials}
    assert len(workers) == 2, "both machines ran trials"


def test_when_one_machine_is_killed_mid_trial_the_other_finishes_the_budget():
    study = f"one-killed-{uuid.uuid4().hex[:8]}"
    slow = ["--trials", "3", "--heartbeat", "1", "trainer.max_epochs=15", "trainer.patience=0"]
    victim, survivor = _machine(study, *slow), _machine(study, *slow)
    deadline = time.monotonic() + 600
    while True:
        assert time.monotonic() < deadline, "the victim never started a trial"
        try:
            trials = _study(study).trials
        except KeyError:  # the study is not created yet
            trials = []
        mine = [t for t in trials if t.state == TrialState.RUNNING and t.user_attrs.get("worker", "").endswith(
            f":{victim.pid}") and "mlflow_run_id" in t.user_attrs]  # fmt: skip
        if mine:
            break
        time.sleep(0.5)
    os.killpg(victim.pid, signal.SIGKILL)
    victim.wait()
    _, errors = survivor.communicate(timeout=900)
    assert survivor.returncode == 0, errors
    killed = _study(study).trials[mine[0].number]
    assert killed.state == TrialState.FAIL
    assert MlflowClient(MLFLOW).get_run(mine[0].user_attrs["mlflow_run_id"]).info.status == "KILLED"
    assert any(t.system_attrs.get("failed_trial") == killed.number for t in _study(study).trials), "retried"
    _check_records(study, 3)
