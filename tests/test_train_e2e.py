"""`stw train` end to end on a small slice of real ETTh1: what a run leaves in MLflow, and determinism."""

import json

import pytest
import yaml
from lightning.pytorch.callbacks import Callback
from mlflow.tracking import MlflowClient

from datamodules.errors import DataError
from experiments.cli import main
from experiments.config import parse_run_args
from experiments.train import run_training
from lightning_modules.baselines import NAIVE_FORECASTS

# A slice of real data and two short epochs keep this fast; the protocol itself is tested in test_ett_data.
SMALL = [
    "--data",
    "ett",
    "data.lookback=48",
    "data.horizon=24",
    "trainer.max_epochs=2",
    "trainer.limit_train_batches=8",
    "trainer.limit_val_batches=4",
    "trainer.limit_test_batches=4",
]

pytestmark = pytest.mark.slow


def _only_run(client: MlflowClient):
    runs = client.search_runs([client.get_experiment_by_name("ett").experiment_id])
    assert len(runs) == 1
    return runs[0]


def test_stw_train_leaves_a_complete_mlflow_run(tracking_uri, capsys):
    assert (
        main(["train", *SMALL, "--model", "lstm", "model.hidden_size=8", "--tracking-uri", tracking_uri, "--quiet"])
        == 0
    )
    client = MlflowClient(tracking_uri)
    run = _only_run(client)
    assert run.info.status == "FINISHED"
    params, metrics, tags = run.data.params, run.data.metrics, run.data.tags
    assert params["model.family"] == "lstm" and params["model.hidden_size"] == "8" and params["data.lookback"] == "48"
    for name in (
        "test_mse",
        "test_mae",
        "baseline_last_mse",
        "baseline_seasonal_mse",
        "baseline_mean_mse",
        "baseline_drift_mse",
        "skill_vs_last",
        "skill_vs_best_naive",
        "test_mse_original",
        "test_mae_original",
        "test_mase",
        "train_loss",
        "val_loss",
        "val_mse",
        "val_mae",
    ):
        assert name in metrics, name
    assert len(client.get_metric_history(run.info.run_id, "val_loss")) == 2  # one point per epoch
    naive = {name: metrics[f"baseline_{name}_mse"] for name in ("last", "seasonal", "mean", "drift")}
    best = min(naive, key=naive.get)
    assert metrics["skill_vs_best_naive"] == pytest.approx(1 - metrics["test_mse"] / naive[best])
    assert tags["stw.best_naive"] == best and "test_smape" not in metrics  # ETT values go below 0
    by_step = client.get_metric_history(run.info.run_id, "test_mse_by_step")
    assert sorted(point.step for point in by_step) == list(range(1, 25))
    assert sum(point.value for point in by_step) / 24 == pytest.approx(metrics["test_mse"], rel=1e-5)
    for tag in (
        "stw.git_commit",
        "stw.git_dirty",
        "stw.data_fingerprint",
        "stw.seed",
        "stw.command",
        "stw.version.torch",
        "stw.version.mlflow",
    ):
        assert tags.get(tag), tag
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {
        "config.yaml",
        "fingerprint.json",
        "preprocessing.json",
        "requirements.txt",
        "learning_curves.png",
        "forecast.png",
        "horizon_error.png",
        "checkpoints",
    } <= artifacts
    assert [a.path for a in client.list_artifacts(run.info.run_id, "checkpoints")] == ["checkpoints/best.ckpt"]
    config = yaml.safe_load(open(client.download_artifacts(run.info.run_id, "config.yaml")))
    assert config["model"]["hidden_size"] == 8 and config["data"]["horizon"] == 24
    fingerprint = json.load(open(client.download_artifacts(run.info.run_id, "fingerprint.json")))
    assert fingerprint["digest"] == tags["stw.data_fingerprint"]
    out = capsys.readouterr().out
    assert "run " + run.info.run_id in out
    assert f"the {NAIVE_FORECASTS[best].label} forecast (MSE {metrics['test_mse']:.4f} vs {naive[best]:.4f}" in out


def test_a_stock_run_is_judged_against_zero_always_up_and_buy_and_hold(tracking_uri, capsys):
    words = ["--data", "stock", "data.lookback=20", "data.horizon=3", "--model", "linear", "task.cost_bps=10",
             *SMALL[4:], "--tracking-uri", tracking_uri, "--quiet"]  # fmt: skip
    assert main(["train", *words]) == 0
    client = MlflowClient(tracking_uri)
    run = client.search_runs([client.get_experiment_by_name("stock").experiment_id])[0]
    metrics = run.data.metrics
    assert {"baseline_zero_mse", "skill_vs_zero", "test_hit_rate", "baseline_always_up_hit_rate", "test_ic",
            "test_rank_ic", "test_backtest_long_flat_sharpe", "test_backtest_long_short_max_drawdown",
            "baseline_buy_hold_total_return"} <= metrics.keys()  # fmt: skip
    assert "baseline_drift_mse" not in metrics and "test_smape" not in metrics
    assert {"equity.png", "horizon_error.png", "forecast.png"} <= {
        a.path for a in client.list_artifacts(run.info.run_id)
    }
    out = capsys.readouterr().out
    assert "zero-return" in out and "always up (hit rate" in out and "buy and hold (Sharpe" in out


def test_same_config_twice_gives_identical_test_metrics(tracking_uri):
    config = parse_run_args([*SMALL, "--model", "transformer", "seed=3"])
    first = run_training(config, tracking_uri, quiet=True).metrics
    second = run_training(config, tracking_uri, quiet=True).metrics
    assert first["test_mse"] == second["test_mse"] and first["test_mae"] == second["test_mae"]


def test_a_run_that_fails_is_closed_failed_with_its_error(tracking_uri):
    config = parse_run_args([*SMALL, "data.lookback=20000"])
    with pytest.raises(DataError):
        run_training(config, tracking_uri, quiet=True)
    run = _only_run(MlflowClient(tracking_uri))
    assert run.info.status == "FAILED"
    assert "20000" in run.data.tags["stw.error"] or "lookback" in run.data.tags["stw.error"]


class RecordStepLosses(Callback):
    def __init__(self) -> None:
        self.train: dict[int, list[tuple[float, int]]] = {}

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.train.setdefault(trainer.current_epoch, []).append((float(outputs["loss"]), len(batch[0])))


def test_train_loss_is_logged_once_an_epoch_as_the_batch_weighted_mean_of_its_steps(tracking_uri):
    steps = RecordStepLosses()
    config = parse_run_args([*SMALL, "--model", "linear", "trainer.limit_train_batches=5", "trainer.max_epochs=3"])
    result = run_training(config, tracking_uri, quiet=True, callbacks=(steps,))
    logged = [m.value for m in MlflowClient(tracking_uri).get_metric_history(result.run_id, "train_loss")]
    expected = [
        sum(loss * n for loss, n in losses) / sum(n for _, n in losses) for _, losses in sorted(steps.train.items())
    ]
    assert [len(losses) for losses in steps.train.values()] == [5, 5, 5]
    assert logged == pytest.approx(expected, rel=1e-5)
    history = {
        name: [m.value for m in MlflowClient(tracking_uri).get_metric_history(result.run_id, name)]
        for name in ("val_loss", "val_mse")
    }
    assert len(history["val_loss"]) == 3  # the MSE loss averaged over equal-sized samples is the val MSE
    assert history["val_loss"] == pytest.approx(history["val_mse"], rel=1e-5)


class StopDuringTraining(Callback):
    def on_train_epoch_end(self, trainer, pl_module):
        raise KeyboardInterrupt("stopped by SIGTERM")  # what Ctrl-C or SIGTERM raises (experiments/interrupts.py)


def test_a_run_stopped_during_training_is_closed_killed_and_the_interrupt_reaches_the_caller(tracking_uri):
    config = parse_run_args([*SMALL, "--model", "linear"])
    with pytest.raises(KeyboardInterrupt, match="SIGTERM"):  # not Lightning's sys.exit(1): a sweep needs the interrupt
        run_training(config, tracking_uri, quiet=True, callbacks=(StopDuringTraining(),))
    run = _only_run(MlflowClient(tracking_uri))
    assert run.info.status == "KILLED" and run.data.tags["stw.error"] == "stopped: stopped by SIGTERM"
    assert "config.yaml" in {a.path for a in MlflowClient(tracking_uri).list_artifacts(run.info.run_id)}


def test_bad_key_exits_with_a_message_not_a_traceback(capsys):
    assert main(["train", "--model", "lstm", "model.hiden=3"]) == 2
    assert "valid keys" in capsys.readouterr().err
