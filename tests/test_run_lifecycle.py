"""A tracked run opens and closes in one place: whatever fails inside, the run ends with the right status and
its error, a failing report never hides the real error or keeps the run open, and nothing is written outside
the tracking store."""

import pytest
import torch
from mlflow.tracking import MlflowClient

from datamodules.errors import DataError
from experiments import train
from experiments.cli import main
from experiments.config import parse_run_args
from experiments.task_reports import TaskReport
from experiments.tracking import Tag, TrackedRun, final_metrics, is_final_metric

SMALL = ["--data", "ett", "data.lookback=48", "data.horizon=24", "trainer.max_epochs=2",
         "trainer.limit_train_batches=4", "trainer.limit_val_batches=2", "trainer.limit_test_batches=2"]  # fmt: skip


def _only_run(tracking_uri: str):
    client = MlflowClient(tracking_uri)
    [run] = client.search_runs([e.experiment_id for e in client.search_experiments()])
    return run


def _failing_step(status: str) -> None:
    raise OSError("disk full while writing the plot")


def test_a_block_that_ends_normally_closes_the_run_finished(tracking_uri):
    with TrackedRun(tracking_uri, "ett", "ok", {Tag.TOOL: "st-workbench"}, {"a": 1}) as run:
        run.log_metric("test_mse", 0.5)
    closed = _only_run(tracking_uri)
    assert closed.info.status == "FINISHED" and closed.data.params == {"a": "1"}
    assert Tag.ERROR not in closed.data.tags


def test_an_error_inside_closes_the_run_failed_with_the_error_and_is_raised_unchanged(tracking_uri):
    with pytest.raises(ZeroDivisionError), TrackedRun(tracking_uri, "ett", "bad", {}):
        1 / 0  # noqa: B018
    closed = _only_run(tracking_uri)
    assert closed.info.status == "FAILED"
    assert closed.data.tags[Tag.ERROR].startswith("ZeroDivisionError")


def test_an_interrupt_closes_the_run_killed(tracking_uri):
    with pytest.raises(KeyboardInterrupt), TrackedRun(tracking_uri, "ett", "stopped", {}):
        raise KeyboardInterrupt("stopped by SIGTERM")
    closed = _only_run(tracking_uri)
    assert closed.info.status == "KILLED" and "SIGTERM" in closed.data.tags[Tag.ERROR]


def test_an_expected_stop_such_as_pruning_closes_the_run_finished(tracking_uri):
    class Pruned(Exception):
        pass

    with pytest.raises(Pruned), TrackedRun(tracking_uri, "ett", "pruned", {}, finished_on=(Pruned,)):
        raise Pruned()
    assert _only_run(tracking_uri).info.status == "FINISHED"


def test_a_failing_close_step_makes_the_run_failed_with_a_tag_and_raises_nothing(tracking_uri):
    with TrackedRun(tracking_uri, "ett", "report fails", {}) as run:
        run.at_close("figures", _failing_step)
    closed = _only_run(tracking_uri)
    assert closed.info.status == "FAILED"
    assert "figures: OSError: disk full" in closed.data.tags[Tag.CLOSE_ERROR]
    assert "closing the run failed" in closed.data.tags[Tag.ERROR]


def test_a_failing_close_step_never_hides_the_error_that_ended_the_block(tracking_uri):
    with pytest.raises(ValueError, match="the real error"), TrackedRun(tracking_uri, "ett", "both fail", {}) as run:
        run.at_close("figures", _failing_step)
        raise ValueError("the real error")
    closed = _only_run(tracking_uri)
    assert closed.info.status == "FAILED"
    assert closed.data.tags[Tag.ERROR] == "ValueError: the real error"
    assert "disk full" in closed.data.tags[Tag.CLOSE_ERROR]


def test_close_steps_see_the_status_the_run_closes_with(tracking_uri):
    seen = []
    with pytest.raises(KeyboardInterrupt), TrackedRun(tracking_uri, "ett", "x", {}) as run:
        run.at_close("record", seen.append)
        raise KeyboardInterrupt()
    assert seen == ["KILLED"]


def test_final_metrics_are_the_test_baseline_and_skill_scores_only():
    metrics = {"test_mse": 1.0, "baseline_last_mse": 2.0, "skill_vs_best_naive": 0.5, "val_mse": 3.0, "train_loss": 4.0,
               "fit_seconds": 9.0}  # fmt: skip
    assert final_metrics(metrics) == {"test_mse": 1.0, "baseline_last_mse": 2.0, "skill_vs_best_naive": 0.5}
    assert not is_final_metric("val_mse")


@pytest.mark.slow
def test_a_failure_while_logging_a_runs_artifacts_still_closes_it_failed_with_the_error(tracking_uri, monkeypatch):
    def broken_plot(*args, **kwargs):
        raise OSError("no space left on device")

    monkeypatch.setattr(train.plots, "learning_curves", broken_plot)
    result = train.run_training(parse_run_args([*SMALL, "--model", "linear"]), tracking_uri, quiet=True)
    run = MlflowClient(tracking_uri).get_run(result.run_id)
    assert run.info.status == "FAILED" and result.status == "FAILED"
    assert "training artifacts: OSError: no space left on device" in run.data.tags[Tag.CLOSE_ERROR]
    assert "checkpoints" in {a.path for a in MlflowClient(tracking_uri).list_artifacts(result.run_id)}


@pytest.mark.slow
def test_a_failed_run_writes_nothing_outside_the_tracking_store(tmp_path, monkeypatch):
    """MLflow's default store is ./mlflow.db: a run must never create it (or anything else) in the working dir."""
    work, store = tmp_path / "work", tmp_path / "store"
    work.mkdir(), store.mkdir()
    monkeypatch.chdir(work)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    config = parse_run_args(
        [
            "--data",
            "stock",
            "data.tickers=[nosuchticker]",
            "data.target=nosuchticker",
            "data.download=false",
            "--model",
            "linear",
        ]
    )
    with pytest.raises(DataError):
        train.run_training(config, f"sqlite:///{store / 'mlflow.db'}", quiet=True)
    assert list(work.iterdir()) == []
    assert _only_run(f"sqlite:///{store / 'mlflow.db'}").info.status == "FAILED"


@pytest.mark.slow
def test_a_pruned_forecast_run_draws_its_forecast_from_the_best_checkpoint(tracking_uri, monkeypatch):
    class PruneAfterTwoEpochs(train.Callback):
        def on_validation_end(self, trainer, pl_module):
            if trainer.current_epoch == 1:
                raise StopForTest()

    class StopForTest(Exception):
        pass

    drawn = {}
    original = train.TASK_REPORTS["forecast"].from_model

    def spy(datamodule, module, folder, title):
        drawn.update({k: v.clone() for k, v in module.state_dict().items()})
        return original(datamodule, module, folder, title)

    monkeypatch.setitem(train.TASK_REPORTS, "forecast", TaskReport(from_model=spy))
    config = parse_run_args([*SMALL, "--model", "linear", "trainer.max_epochs=4", "optim.lr=0.05"])
    with pytest.raises(StopForTest):
        train.run_training(
            config, tracking_uri, quiet=True, callbacks=(PruneAfterTwoEpochs(),), finished_on=(StopForTest,)
        )
    run = _only_run(tracking_uri)
    client = MlflowClient(tracking_uri)
    assert run.info.status == "FINISHED"
    assert not final_metrics(run.data.metrics)  # untested
    assert {"forecast.png", "learning_curves.png"} <= {a.path for a in client.list_artifacts(run.info.run_id)}
    best = torch.load(client.download_artifacts(run.info.run_id, "checkpoints/best.ckpt"), weights_only=True)
    assert drawn and all(torch.equal(drawn[k], best["state_dict"][k]) for k in best["state_dict"])


@pytest.mark.slow
def test_a_user_error_is_one_message_with_exit_2_and_debug_shows_its_traceback(tracking_uri, capsys):
    assert main(["train", *SMALL, "data.lookback=20000", "--tracking-uri", tracking_uri]) == 2
    assert "error:" in capsys.readouterr().err
    with pytest.raises(DataError):
        main(["--debug", "train", *SMALL, "data.lookback=20000", "--tracking-uri", tracking_uri])


def test_a_bug_keeps_its_traceback(monkeypatch):
    def bug(config, *args, **kwargs):
        raise RuntimeError("a bug, not a user error")

    monkeypatch.setattr(train, "run_training", bug)
    with pytest.raises(RuntimeError, match="a bug"):
        main(["train", "--data", "ett", "--model", "linear"])


def test_a_machine_that_loses_the_race_to_create_the_experiment_uses_the_winners() -> None:
    from types import SimpleNamespace

    from mlflow.exceptions import MlflowException
    from mlflow.protos.databricks_pb2 import RESOURCE_ALREADY_EXISTS

    from experiments.tracking import experiment_id

    class RacingClient:  # the other machine creates "ett" between this one's lookup and its create
        lookups = 0

        def get_experiment_by_name(self, name: str):
            self.lookups += 1
            return None if self.lookups == 1 else SimpleNamespace(experiment_id="7")

        def create_experiment(self, name: str, artifact_location: str | None = None) -> str:
            raise MlflowException(f"Experiment(name={name}) already exists", error_code=RESOURCE_ALREADY_EXISTS)

    assert experiment_id(RacingClient(), "ett", "http://127.0.0.1:5000") == "7"


def test_logging_a_dataset_input_that_another_process_created_meanwhile_retries_and_links_it(tracking_uri):
    from mlflow.entities import Dataset, DatasetInput
    from mlflow.exceptions import MlflowException

    dataset = Dataset("ett-train", "abc", "http", '{"url": "https://example.org/ett.csv"}')
    with TrackedRun(tracking_uri, "ett", "race", {}) as run:
        real, calls = run.client.log_inputs, []

        def lost_the_race_once(run_id, datasets):
            calls.append(run_id)
            if len(calls) == 1:  # what the store raises when the other worker's insert committed first
                raise MlflowException(
                    "UNIQUE constraint failed: datasets.experiment_id, datasets.name, datasets.digest"
                )
            real(run_id, datasets=datasets)

        run.client.log_inputs = lost_the_race_once
        run.log_inputs([DatasetInput(dataset)])
    assert len(calls) == 2
    [logged] = _only_run(tracking_uri).inputs.dataset_inputs
    assert logged.dataset.name == "ett-train" and logged.dataset.digest == "abc"
