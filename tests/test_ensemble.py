"""`stw ensemble`: the mean of finished runs' forecasts or class probabilities, as its own run that predicts,
reproduces and can close a sweep (`stw sweep --ensemble K`)."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from mlflow.tracking import MlflowClient

from datamodules.errors import ConfigError, RunError
from experiments import tracking
from experiments.cli import main
from experiments.config import parse_run_args
from experiments.ensemble import assemble, check_same_data, load_ensemble, load_members, log_ensemble
from experiments.logged_run import fetch_run
from experiments.sweep.cli import build_plan, sweep_parser
from experiments.sweep.driver import run_sweep
from experiments.tracking import final_metrics
from experiments.train import run_training
from tests.test_reproduce import _head

pytestmark = pytest.mark.slow

TINY = ["trainer.max_epochs=1", "trainer.limit_train_batches=4", "trainer.limit_val_batches=2"]
ETT = ["--data", "ett", "data.horizon=24", "trainer.limit_test_batches=3", *TINY]
SMS = ["--data", "sms", "data.max_len=32", "task.embed_dim=16", "trainer.limit_test_batches=4", *TINY]


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> str:
    return f"sqlite:///{tmp_path_factory.mktemp('mlruns') / 'mlflow.db'}"


@pytest.fixture(scope="module", autouse=True)
def _clean_checkout():
    """Members are trained and reproduced from this working tree, which may hold uncommitted work: it is seen as
    clean at HEAD, as in test_reproduce (which tests the code check itself)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(tracking, "git_state", lambda: {"stw.git_commit": _head(), "stw.git_dirty": "false"})
        yield


def _train(store: str, *words: str) -> str:
    return run_training(parse_run_args(list(words)), store, quiet=True).run_id


def _ensemble(store: str, *run_ids: str) -> str:
    assert main(["ensemble", *run_ids, "--tracking-uri", store, "--quiet"]) == 0
    client = MlflowClient(store)
    experiments = [experiment.experiment_id for experiment in client.search_experiments()]
    [run] = client.search_runs(experiments, f"tags.`stw.ensemble_members` = '{','.join(run_ids)}'")
    return run.info.run_id


@pytest.fixture(scope="module")
def ett_runs(store, shared_data) -> dict[str, str]:
    """Two linear members with different lookbacks and seeds, one with another horizon, and their ensemble."""
    runs = {
        "long": _train(store, *ETT, "data.lookback=48", "--model", "linear", "seed=0"),
        "short": _train(store, *ETT, "data.lookback=24", "--model", "mlp", "model.hidden_size=8", "seed=1"),
        "other_horizon": _train(store, *ETT, "data.lookback=48", "data.horizon=12", "--model", "linear"),
    }
    runs["ensemble"] = _ensemble(store, runs["long"], runs["short"])
    return runs


def _test_forecasts(load_logged, run_id: str, store: str) -> tuple[pd.Series, np.ndarray, np.ndarray]:
    """A member's forecasts of its own test windows, computed with the model alone, keyed by the first time each
    window forecasts: (times, forecasts [N, H, K], truths [N, H, K])."""
    datamodule, module, _ = load_logged(run_id, store)
    dataset = datamodule.test_dataloader().dataset
    x, y, start = dataset[list(range(len(dataset)))]
    with torch.no_grad():
        forecast = module(x, start).numpy()
    lookback = datamodule.options.lookback
    times = pd.Series(datamodule.split_timestamps("test")[lookback : lookback + len(dataset)])
    return times, forecast, y.numpy()


def test_the_ensemble_scores_the_mean_of_its_members_forecasts_aligned_by_the_times_they_forecast(
    ett_runs, store, load_logged
):
    client = MlflowClient(store)
    members = [_test_forecasts(load_logged, ett_runs[name], store) for name in ("long", "short")]
    (times_long, long, truth), (times_short, short, _) = members
    # The 24-step member's test windows start 24 rows later in the series but forecast the same times.
    assert (times_long.to_numpy() == times_short.to_numpy()).all()
    mean = (long + short) / 2
    with fetch_run(ett_runs["ensemble"], store) as run:
        ensemble = load_ensemble(run)
        metrics = run.final_metrics()
    ensemble.datamodule.setup()
    dataset = ensemble.datamodule.test_dataloader().dataset
    x, y, start = dataset[list(range(len(dataset)))]
    with torch.no_grad():
        forecast = ensemble.module(x, start).numpy()
    np.testing.assert_allclose(forecast, mean, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(y.numpy(), truth)
    tested = 3 * 64  # trainer.limit_test_batches batches of data.batch_size windows
    assert metrics["test_mse"] == pytest.approx(float(((mean[:tested] - truth[:tested]) ** 2).mean()), rel=1e-5)
    assert client.get_run(ett_runs["ensemble"]).data.params["ensemble.reference"] == ett_runs["long"]


def test_the_ensemble_run_is_tagged_with_its_members_and_has_a_runs_metrics(ett_runs, store):
    client = MlflowClient(store)
    run = client.get_run(ett_runs["ensemble"])
    tags, metrics = run.data.tags, run.data.metrics
    assert run.info.status == "FINISHED"
    assert tags["stw.role"] == "ensemble" and tags["stw.data"] == "ett"
    assert tags["stw.ensemble_members"] == f"{ett_runs['long']},{ett_runs['short']}"
    assert tags["stw.best_naive"] in ("last", "seasonal", "mean", "drift")
    member = final_metrics(client.get_run(ett_runs["long"]).data.metrics)
    assert set(final_metrics(metrics)) == set(member)  # every test score, baseline and skill a run has
    assert {"val_mse", "val_loss", "model_parameters"} <= metrics.keys()
    naive = metrics[f"baseline_{tags['stw.best_naive']}_mse"]
    assert metrics["skill_vs_best_naive"] == pytest.approx(1 - metrics["test_mse"] / naive)
    artifacts = {item.path for item in client.list_artifacts(run.info.run_id)}
    assert {"ensemble.json", "fingerprint.json", "preprocessing.json", "forecast.png", "horizon_error.png"} <= artifacts


def test_runs_of_other_horizons_or_datasets_are_refused_naming_what_differs(ett_runs, sms_runs, store, capsys):
    assert main(["ensemble", ett_runs["long"], ett_runs["other_horizon"], "--tracking-uri", store]) == 2
    assert "data.horizon (24 and 12)" in capsys.readouterr().err
    assert main(["ensemble", ett_runs["long"], sms_runs["cnn"], "--tracking-uri", store]) == 2
    assert "different datasets (data.name 'ett' and 'sms')" in capsys.readouterr().err
    assert main(["ensemble", ett_runs["long"], "--tracking-uri", store]) == 2
    assert "two or more different runs" in capsys.readouterr().err
    assert main(["ensemble", ett_runs["long"], ett_runs["ensemble"], "--tracking-uri", store]) == 2
    assert "is itself an ensemble" in capsys.readouterr().err


def _predict(store: str, run_id: str, source: Path, output: Path) -> pd.DataFrame:
    assert main(["predict", run_id, "--input", str(source), "--output", str(output), "--tracking-uri", store]) == 0
    return pd.read_csv(output)


def test_stw_predict_on_an_ensemble_averages_its_members_predictions(ett_runs, store, shared_data, tmp_path):
    source = tmp_path / "recent.csv"
    source.write_text("".join((shared_data / "ett" / "ETTh1.csv").read_text().splitlines(keepends=True)[:121]))
    ensemble = _predict(store, ett_runs["ensemble"], source, tmp_path / "ensemble.csv")
    long, short = (_predict(store, ett_runs[name], source, tmp_path / f"{name}.csv") for name in ("long", "short"))
    keys = ["window_end", "step"]
    # The short member forecasts more windows of the file; the ensemble forecasts those the long one can.
    short = short.set_index(keys).loc[long.set_index(keys).index].reset_index()
    assert len(ensemble) == len(long) and (ensemble[keys] == long[keys]).all().all()
    forecasts = [c for c in ensemble.columns if c.endswith("_forecast")]
    assert forecasts
    # Written with 6 significant digits each, so the mean agrees to about that.
    np.testing.assert_allclose(ensemble[forecasts], (long[forecasts] + short[forecasts]) / 2, rtol=2e-5, atol=1e-4)


def test_stw_reproduce_retrains_the_members_and_reproduces_the_ensemble_exactly(ett_runs, store, capsys):
    assert main(["reproduce", ett_runs["ensemble"], "--tracking-uri", store, "--quiet"]) == 0
    out = capsys.readouterr().out
    assert out.count("reproduced: all") == 3  # both members, then the ensemble of the retrained members
    client = MlflowClient(store)
    [copy] = client.search_runs(
        [client.get_run(ett_runs["ensemble"]).info.experiment_id],
        f"tags.`stw.reproduces` = '{ett_runs['ensemble']}'",
    )
    assert copy.data.tags["stw.role"] == "ensemble"
    assert set(copy.data.tags["stw.ensemble_members"].split(",")).isdisjoint({ett_runs["long"], ett_runs["short"]})
    assert final_metrics(copy.data.metrics) == final_metrics(client.get_run(ett_runs["ensemble"]).data.metrics)


@pytest.fixture(scope="module")
def sms_runs(store, shared_data) -> dict[str, str]:
    runs = {
        "cnn": _train(
            store,
            *SMS,
            "--model",
            "cnn",
            "model.kernel_sizes=[3,4,5]",
            "model.num_layers=1",
            "model.channels=8",
            "task.pooling=max",
            "seed=0",
        ),
        "gru": _train(store, *SMS, "--model", "gru", "model.hidden_size=8", "seed=1"),
    }
    runs["ensemble"] = _ensemble(store, runs["cnn"], runs["gru"])
    return runs


def test_a_classification_ensemble_averages_class_probabilities(sms_runs, store, load_logged, tmp_path):
    members = [load_logged(sms_runs[name], store) for name in ("cnn", "gru")]
    datamodule = members[0][0]
    probs, labels = [], []
    with torch.no_grad():
        for _, (x, y) in zip(range(4), datamodule.test_dataloader(), strict=False):  # trainer.limit_test_batches
            probs.append(sum(module.predict_proba(x) for _, module, _ in members) / 2)
            labels.append(y)
    accuracy = float((torch.cat(probs).argmax(dim=1) == torch.cat(labels)).float().mean())
    metrics = MlflowClient(store).get_run(sms_runs["ensemble"]).data.metrics
    assert metrics["test_acc"] == pytest.approx(accuracy)
    assert {"test_f1", "test_mcc", "baseline_majority_acc"} <= metrics.keys()
    messages = tmp_path / "messages.txt"
    messages.write_text("Free entry! Win a prize now, text WIN to 80086\nare we still on for lunch?\n")
    ensemble = _predict(store, sms_runs["ensemble"], messages, tmp_path / "ensemble.csv")
    cnn, gru = (_predict(store, sms_runs[name], messages, tmp_path / f"{name}.csv") for name in ("cnn", "gru"))
    columns = ["prob_ham", "prob_spam"]
    np.testing.assert_allclose(ensemble[columns], (cnn[columns] + gru[columns]) / 2, rtol=1e-5, atol=2e-6)
    assert (ensemble["label"] == np.where(ensemble.prob_spam > ensemble.prob_ham, "spam", "ham")).all()


def _sweep_words(tmp_path: Path, store: str, study: str, *words: str) -> list[str]:
    return ["--storage", f"sqlite:///{tmp_path / 'optuna.db'}", "--tracking-uri", store, "--study", study,
            "--trials", "3", "--families", "linear", "--pruner", "none", "--quiet", *words,
            "data.horizon=24", "trainer.limit_test_batches=2", *TINY]  # fmt: skip


def test_stw_sweep_ensemble_pick_top_leaves_the_top_trials_ensemble_under_the_parent(store, tmp_path):
    words = _sweep_words(tmp_path, store, "ens", "--ensemble", "2", "--ensemble-pick", "top")
    plan = build_plan(sweep_parser().parse_args(words))
    study, parent = run_sweep(plan)
    client = MlflowClient(plan.tracking_uri)
    ensemble = client.get_run(client.get_run(parent).data.tags["stw.ensemble_run_id"])
    assert ensemble.data.tags["mlflow.parentRunId"] == parent and ensemble.data.tags["stw.role"] == "ensemble"
    ranked = sorted(study.trials, key=lambda trial: trial.value)  # val_mse: lowest first
    top = [trial.user_attrs["mlflow_run_id"] for trial in ranked[:2]]
    assert ensemble.data.tags["stw.ensemble_members"] == ",".join(top)
    assert client.get_run(parent).data.metrics["ensemble_test_mse"] == ensemble.data.metrics["test_mse"]
    from experiments.sweep.report import ensemble_text

    text = ensemble_text(study, plan)
    assert f"best trial #{ranked[0].number}" in text and "the top 2 by val_mse" in text and "test_mse" in text


def test_stw_sweep_ensemble_picks_greedily_by_default_the_partner_that_makes_the_best_validation_mean(store, tmp_path):
    plan = build_plan(sweep_parser().parse_args(_sweep_words(tmp_path, store, "greedy", "--ensemble", "2")))
    assert plan.ensemble_pick == "greedy"
    study, parent = run_sweep(plan)
    client = MlflowClient(plan.tracking_uri)
    ensemble = client.get_run(client.get_run(parent).data.tags["stw.ensemble_run_id"])
    best, *others = [trial.user_attrs["mlflow_run_id"] for trial in sorted(study.trials, key=lambda t: t.value)]
    first, partner = ensemble.data.tags["stw.ensemble_members"].split(",")
    assert first == best and partner in others
    # Every pair the greedy step weighed, scored as `stw ensemble` scores it: the one picked is the best of them.
    pairs = {other: log_ensemble(assemble(load_members([best, other], store)), store).metrics["val_mse"]
             for other in others}  # fmt: skip
    assert ensemble.data.metrics["val_mse"] == pytest.approx(min(pairs.values()), rel=1e-6)
    assert pairs[partner] == pytest.approx(min(pairs.values()), rel=1e-6)


def test_an_ensemble_refuses_data_that_is_not_its_members(ett_runs, store):
    with fetch_run(ett_runs["ensemble"], store) as run:
        ensemble = load_ensemble(run)
    [name] = ensemble.reference.fingerprint["files"]
    ensemble.reference.fingerprint["files"][name] = "0" * 64  # as if the members had read another file
    with pytest.raises(RunError, match=f"not the data run {ensemble.reference.run_id} was trained on: file {name}"):
        check_same_data(ensemble)


def test_sweep_ensemble_needs_two_trials_or_more():
    with pytest.raises(ConfigError, match="--ensemble 1: an ensemble averages two or more trials"):
        build_plan(sweep_parser().parse_args(["--ensemble", "1"]))
