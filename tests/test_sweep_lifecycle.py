"""How sweep trials end: pruned classification trials are PRUNED with their runs FINISHED, `--trials N` means N
finished trials however many fail, and a sweep whose every trial fails stops instead of looping."""

from pathlib import Path

import optuna
import pytest
from mlflow.tracking import MlflowClient
from optuna.trial import TrialState

from experiments.sweep import driver
from experiments.sweep import study as study_module
from experiments.sweep.cli import build_plan, sweep_parser
from experiments.tracking import Tag

pytestmark = pytest.mark.slow

TINY_TEXT = ["data.max_len=24", "data.batch_size=32", "task.embed_dim=8", "trainer.max_epochs=2",
             "trainer.limit_train_batches=3", "trainer.limit_val_batches=2", "trainer.limit_test_batches=2"]  # fmt: skip
TINY_SHAPES = ["data.n_clips=6", "data.frame_size=16", "data.n_frames=6", "data.clip_len=4", "data.batch_size=4",
               "data.crop=null", "task.embed_dim=8", "trainer.max_epochs=2", "trainer.limit_train_batches=2",
               "trainer.limit_val_batches=1", "trainer.limit_test_batches=1"]  # fmt: skip
TINY_ETT = ["data.lookback=48", "data.horizon=24", "trainer.max_epochs=1", "trainer.limit_train_batches=2",
            "trainer.limit_val_batches=1", "trainer.limit_test_batches=1"]  # fmt: skip


class PruneEveryTrial(optuna.pruners.BasePruner):
    """Prunes as soon as a trial has reported a value: every trial is pruned after its first epoch."""

    def prune(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> bool:
        return bool(trial.intermediate_values)


def _plan(tmp_path: Path, data: str, *words: str):
    args = sweep_parser().parse_args(["--data", data, "--study", "s", "--storage", f"sqlite:///{tmp_path / 'optuna.db'}",
                                      "--tracking-uri", f"sqlite:///{tmp_path / 'mlflow.db'}", "--quiet", *words])  # fmt: skip
    return build_plan(args)


def _trial_runs(plan):
    client = MlflowClient(plan.tracking_uri)
    experiment = client.get_experiment_by_name(plan.data)
    return client.search_runs([experiment.experiment_id], f"tags.`{Tag.ROLE}` = 'trial'")


def _all_runs(plan):
    client = MlflowClient(plan.tracking_uri)
    return client.search_runs([e.experiment_id for e in client.search_experiments()])


@pytest.mark.parametrize(("data", "words"), [("sms", TINY_TEXT), ("moving-shapes", TINY_SHAPES)])
def test_pruned_classification_trials_are_pruned_and_their_runs_finished(tmp_path, monkeypatch, data, words):
    monkeypatch.setattr(study_module, "make_pruner", lambda *args: PruneEveryTrial())
    # sampled trials only: a recipe trial is never pruned (test_sweep_budget.py)
    plan = _plan(tmp_path, data, "--trials", "2", "--families", "cnn" if data == "sms" else "rnn", "--no-recipes",
                 *words)  # fmt: skip
    study, _ = driver.run_sweep(plan)
    assert [t.state for t in study.trials] == [TrialState.PRUNED, TrialState.PRUNED]
    runs = _trial_runs(plan)
    assert len(runs) == 2
    assert {(r.info.status, r.data.tags[Tag.TRIAL_STATE]) for r in runs} == {("FINISHED", "PRUNED")}
    assert all(Tag.ERROR not in r.data.tags for r in runs)
    assert "RUNNING" not in {r.info.status for r in _all_runs(plan)}


def test_failed_trials_do_not_count_towards_the_requested_number_of_trials(tmp_path, monkeypatch):
    real = driver.run_training

    def fail_even_trials(config, *args, tags, **kwargs):
        if int(tags[Tag.TRIAL_NUMBER]) % 2 == 0:
            raise RuntimeError("this trial fails on purpose")
        return real(config, *args, tags=tags, **kwargs)

    monkeypatch.setattr(driver, "run_training", fail_even_trials)
    plan = _plan(tmp_path, "ett", "--trials", "2", "--families", "linear", "--pruner", "none", *TINY_ETT)
    study, _ = driver.run_sweep(plan)
    states = [t.state for t in study.trials]
    assert states == [TrialState.FAIL, TrialState.COMPLETE, TrialState.FAIL, TrialState.COMPLETE]


def test_a_sweep_whose_every_trial_fails_stops_after_max_failures(tmp_path, monkeypatch, capsys):
    def always_fail(config, *args, **kwargs):
        raise RuntimeError("broken on purpose")

    monkeypatch.setattr(driver, "run_training", always_fail)
    plan = _plan(tmp_path, "ett", "--trials", "5", "--max-failures", "3", "--families", "linear", *TINY_ETT)
    study, parent = driver.run_sweep(plan)
    assert [t.state for t in study.trials] == [TrialState.FAIL] * 3
    assert "stopped after 3 failed trials" in capsys.readouterr().err
    assert MlflowClient(plan.tracking_uri).get_run(parent).info.status == "FINISHED"
