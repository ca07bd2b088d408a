"""Text runs through the sweep and reproduce commands: a tiny `stw sweep --data sms` over cnn and rnn, and
`stw reproduce` of an sms run. (`stw predict` on raw text lines is specified in tests/test_predict.py.)"""

import subprocess
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from experiments import tracking
from experiments.cli import main
from experiments.sweep.cli import build_plan, sweep_parser
from experiments.sweep.driver import run_sweep
from experiments.tracking import final_metrics

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
# Short messages and a few batches: what is tested is that text runs flow through the commands, not accuracy.
TINY = [
    "data.max_len=32",
    "data.batch_size=32",
    "task.embed_dim=16",
    "trainer.max_epochs=1",
    "trainer.limit_train_batches=4",
    "trainer.limit_val_batches=2",
    "trainer.limit_test_batches=2",
    "--quiet",
]


@pytest.fixture(autouse=True)
def _clean_checkout(monkeypatch: pytest.MonkeyPatch) -> None:
    """Training and reproducing happen in one working tree that may hold uncommitted work; it is seen as clean at HEAD."""
    head = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True, check=False
    ).stdout.strip()
    state = {"stw.git_commit": head or "unknown", "stw.git_dirty": "false"}
    monkeypatch.setattr(tracking, "git_state", lambda: dict(state))


def _final(client: MlflowClient, run_id: str) -> dict[str, float]:
    return final_metrics(client.get_run(run_id).data.metrics)


def test_a_tiny_sms_sweep_over_cnn_and_rnn_completes_with_scored_child_runs(tmp_path, tracking_uri):
    args = sweep_parser().parse_args(
        [
            "--data",
            "sms",
            "--trials",
            "2",
            "--families",
            "cnn,rnn",
            "--pruner",
            "none",
            "--study",
            "tiny-text",
            "--storage",
            f"sqlite:///{tmp_path / 'optuna.db'}",
            "--tracking-uri",
            tracking_uri,
            *TINY,
        ]
    )
    study, parent_id = run_sweep(build_plan(args))
    assert [trial.state.name for trial in study.trials] == ["COMPLETE", "COMPLETE"]
    assert {trial.params["family"] for trial in study.trials} <= {"cnn", "rnn"}
    client = MlflowClient(tracking_uri)
    children = client.search_runs([client.get_experiment_by_name("sms").experiment_id], "tags.`stw.role` = 'trial'")
    assert len(children) == 2 and {child.data.tags["mlflow.parentRunId"] for child in children} == {parent_id}
    for child in children:
        assert child.data.tags["stw.trial_state"] == "COMPLETE" and child.info.status == "FINISHED"
        assert {"test_acc", "test_f1_spam", "test_mcc", "baseline_majority_acc"} <= child.data.metrics.keys()
    assert all("test_acc" in trial.user_attrs and "baseline_majority_acc" in trial.user_attrs for trial in study.trials)


def test_an_sms_run_reproduces_with_identical_metrics(tracking_uri, capsys):
    words = ["--data", "sms", "--model", "gru", "model.hidden_size=16", "seed=3", *TINY, "--tracking-uri", tracking_uri]
    assert main(["train", *words]) == 0
    client = MlflowClient(tracking_uri)
    [original] = client.search_runs([client.get_experiment_by_name("sms").experiment_id])
    capsys.readouterr()
    assert main(["reproduce", original.info.run_id, "--tracking-uri", tracking_uri, "--quiet"]) == 0
    [copy] = client.search_runs([original.info.experiment_id], f"tags.`stw.reproduces` = '{original.info.run_id}'")
    assert copy.info.status == "FINISHED"
    assert {"test_acc", "test_f1_spam", "baseline_majority_acc"} <= _final(client, original.info.run_id).keys()
    assert _final(client, copy.info.run_id) == _final(client, original.info.run_id)  # exact, not approximate
    assert "reproduced: all" in capsys.readouterr().out
