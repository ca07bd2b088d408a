"""Robust selection: multi-window validation, `stw sweep --confirm K --seeds S`, and never choosing by test."""

from types import SimpleNamespace

import lightning.pytorch as pl
import numpy as np
import optuna
import pandas as pd
import pytest
import torch
from mlflow.tracking import MlflowClient
from optuna.distributions import CategoricalDistribution
from optuna.trial import TrialState, create_trial
from torch import Tensor, nn

from datamodules.errors import ConfigError
from datamodules.specs import ForecastSpec
from datamodules.windows import WindowDataset, batch_loader, rank_block
from experiments.config import config_from_dict, parse_run_args
from experiments.run_views import ranked, validation_metric
from experiments.sweep.cli import build_plan, sweep_parser
from experiments.sweep.confirm import Confirmed, choose, confirm_text, confirmation, top_trials
from experiments.sweep.driver import run_sweep
from experiments.sweep.report import counterpart_on_test, summary_text
from lightning_modules.forecast_training import ForecastingModule
from lightning_modules.val_windows import BlockMSE, block_borders


class RepeatLast(nn.Module):
    """A stand-in forecaster: every step ahead repeats the window's last value, so errors are known by hand."""

    def forward(self, x: Tensor, start: Tensor | None = None) -> Tensor:
        return x[:, -1:, :].expand(-1, 2, -1) * 0.5


def test_every_validation_window_falls_in_exactly_one_consecutive_block() -> None:
    for windows in (3, 7, 16, 101):
        for blocks in range(1, min(windows, 6) + 1):
            borders = block_borders(windows, blocks)
            assert borders[0] == 0 and borders[-1] == windows and borders == sorted(borders)
            sizes = np.diff(borders)
            assert sizes.min() >= 1 and sizes.max() - sizes.min() <= 1
    with pytest.raises(ConfigError, match="task.val_windows=5 .* the 4 validation windows"):
        block_borders(4, 5)


def test_block_scores_and_their_mean_equal_a_hand_computation_from_the_predictions() -> None:
    series = np.array([0.0, 1.0, 3.0, -1.0, 2.0, 5.0, 4.0, -2.0, 0.5, 1.5, 7.0, 3.0, -3.0, 2.5, 1.0, 0.0, 4.0, 6.0,
                       -1.0, 2.0], dtype=np.float32)[:, None]  # fmt: skip
    lookback, horizon, blocks = 3, 2, 3
    windows = len(series) - lookback - horizon + 1  # 16: blocks of 5, 5 and 6 windows
    spec = ForecastSpec("values", lookback, horizon, ["a"], ["a"], [0], 4)
    config = parse_run_args(["--data", "ett", "--model", "linear", f"task.val_windows={blocks}"])
    module = ForecastingModule(config, spec)
    module.model = RepeatLast()
    rows = torch.from_numpy(series)
    loader = batch_loader(WindowDataset(rows, rows, lookback, horizon), batch_size=4, split="val")  # straddles blocks
    trainer = pl.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False)
    logged = trainer.validate(module, dataloaders=loader, verbose=False)[0]

    x = np.stack([series[i : i + lookback, 0] for i in range(windows)])
    y = np.stack([series[i + lookback : i + lookback + horizon, 0] for i in range(windows)])
    squared = (0.5 * x[:, -1:] - y) ** 2  # [window, step]
    by_block = [squared[0:5].mean(), squared[5:10].mean(), squared[10:16].mean()]
    assert [logged[f"val_mse_w{k}"] for k in (1, 2, 3)] == pytest.approx(by_block, rel=1e-6)
    assert logged["val_mse_windows"] == pytest.approx(np.mean(by_block), rel=1e-6)
    assert logged["val_mse"] == pytest.approx(squared.mean(), rel=1e-6)  # the pooled score weighs blocks by size
    assert logged["val_mse_windows"] != pytest.approx(logged["val_mse"], rel=1e-3)


def test_data_parallel_shares_of_the_validation_windows_add_up_to_one_process_scores() -> None:
    # Each rank scores its contiguous block (rank_block) from the right window index; the summed states agree.
    torch.manual_seed(0)
    pred, y = torch.randn(23, 2, 3), torch.randn(23, 2, 3)
    whole = BlockMSE(4)
    whole.update(pred, y, 0, 23)
    shares = [BlockMSE(4) for _ in range(3)]
    for rank, share in enumerate(shares):
        block = rank_block(23, (rank, 3))
        share.update(pred[block.start : block.stop], y[block.start : block.stop], block.start, 23)
    summed = shares[0]  # as a data-parallel sync does: every state summed over the ranks
    summed.squared, summed.count = sum(s.squared for s in shares), sum(s.count for s in shares)
    assert torch.allclose(summed.compute(), whole.compute())
    assert summed.count.tolist() == [5 * 6, 6 * 6, 6 * 6, 6 * 6]  # windows of each block x (steps x targets)


def test_validation_cut_short_of_a_block_is_refused_by_name() -> None:
    series = torch.arange(40, dtype=torch.float32)[:, None]  # 36 windows in blocks of 12; 2 batches of 4 reach 8
    spec = ForecastSpec("values", 3, 2, ["a"], ["a"], [0], 4)
    module = ForecastingModule(parse_run_args(["--data", "ett", "--model", "linear", "task.val_windows=3"]), spec)
    module.model = RepeatLast()
    loader = batch_loader(WindowDataset(series, series, 3, 2), batch_size=4, split="val")
    trainer = pl.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False,
                         limit_val_batches=2)  # fmt: skip
    with pytest.raises(ConfigError, match="validation block 2 of task.val_windows=3 got no windows"):
        trainer.validate(module, dataloaders=loader, verbose=False)


def test_the_windows_score_is_a_monitor_only_with_several_blocks() -> None:
    base = {"data": {"name": "ett"}, "model": {"family": "linear"}, "trainer": {"monitor": "val_mse_windows"}}
    with pytest.raises(ConfigError, match="task.val_windows=K with K >= 2"):
        config_from_dict(base)
    assert config_from_dict({**base, "task": {"val_windows": 4}})["trainer"]["monitor"] == "val_mse_windows"
    with pytest.raises(ConfigError, match="task.val_windows=0"):
        config_from_dict({**base, "task": {"val_windows": 0}})


# --- choosing by mean validation, never by test -------------------------------------------------------------


def test_the_winner_is_the_best_mean_validation_score_not_the_best_single_seed() -> None:
    # Trial 3's first seed was lucky (0.30, the best single score), but over three seeds trial 5 is better on average.
    val = {3: [0.30, 0.42, 0.44], 5: [0.33, 0.34, 0.35], 8: [0.36, 0.37, 0.36]}
    assert min(val, key=lambda t: val[t][0]) == 3
    assert choose(val, "min") == 5
    assert choose({1: [0.7, 0.9], 2: [0.85, 0.8]}, "max") == 2  # F1-like scores: the higher mean wins
    assert choose({4: [0.5, 0.5], 2: [0.4, 0.6]}, "min") == 4  # a tie goes to the first listed (better single seed)


def test_a_confirmed_configuration_reports_mean_and_sample_spread_of_validation_and_test() -> None:
    item = Confirmed(3, "r", "linear", seeds=[0, 1, 2], val=[0.30, 0.42, 0.44], test=[0.40, 0.38, float("nan")])
    stats = item.stats("test_mse", "val_mse")
    assert stats["seeds"] == 3
    assert stats["val_mse_mean"] == pytest.approx(np.mean([0.30, 0.42, 0.44]))
    assert stats["val_mse_std"] == pytest.approx(np.std([0.30, 0.42, 0.44], ddof=1))
    assert stats["test_mse_mean"] == pytest.approx(0.39) and stats["test_mse_std"] == pytest.approx(
        np.std([0.4, 0.38], ddof=1)
    )


def test_the_test_score_shown_beside_a_validation_metric() -> None:
    assert [counterpart_on_test(m) for m in ("val_mse", "val_mse_windows", "val_f1", "val_loss")] == [
        "test_mse", "test_mse", "test_f1", "test_mse"]  # fmt: skip


def study_of(values: list[float], test_mse: list[float]) -> optuna.Study:
    study = optuna.create_study(direction="minimize")
    for number, (value, test) in enumerate(zip(values, test_mse, strict=True)):
        study.add_trial(create_trial(state=TrialState.COMPLETE, value=value, params={"family": "linear"},
                                     distributions={"family": CategoricalDistribution(["linear"])},
                                     user_attrs={"mlflow_run_id": f"run{number}", "test_mse": test}))  # fmt: skip
    return study


def test_the_sweep_summary_chooses_and_orders_by_validation_and_shows_test_beside() -> None:
    # Trial 1 has the best test MSE and the worst validation score: it must be neither chosen nor listed first.
    study = study_of([0.50, 0.90, 0.40], [0.45, 0.10, 0.47])
    text = summary_text(study, SimpleNamespace(study="s", metric="val_mse"), "stw ui")
    rows = [line.split() for line in text.splitlines() if line.split()[:1] in (["0"], ["1"], ["2"])]
    assert [row[0] for row in rows] == ["2", "0", "1"]  # by validation value, best first
    assert "best trial #2 (linear): val_mse = 0.4000" in text
    assert "test_mse = 0.4700 (test, shown beside: never used to choose or rank)" in text
    assert [t.number for t in top_trials(study, 2)] == [2, 0]


def test_stw_runs_ranks_by_a_validation_metric_unless_told_otherwise() -> None:
    found = pd.DataFrame({"run_id": ["a", "b", "c"], "started": ["1", "2", "3"], "status": ["FINISHED"] * 3,
                          "duration_s": [1.0] * 3, "metrics.val_mse": [0.5, 0.3, 0.4],
                          "metrics.test_mse": [0.1, 0.6, 0.2]})  # fmt: skip
    metric = validation_metric(found, None)
    table, summary = ranked(found, metric, 0)
    assert (
        metric == "val_mse" and list(table["run_id"]) == ["b", "c", "a"] and "ranked by val_mse, best first" in summary
    )
    assert {"val_mse", "test_mse"} <= set(table.columns)  # the test score is shown beside
    windows = found.assign(**{"metrics.val_mse_windows": [0.2, 0.9, 0.5]})
    assert validation_metric(windows, "val_mse_windows") == "val_mse_windows"  # a sweep's own objective first
    tested = windows.assign(**{"metrics.best_val_mse_windows": [0.1, 0.8, 0.4]})
    assert validation_metric(tested, "val_mse_windows") == "best_val_mse_windows"  # at each run's tested checkpoint
    assert list(ranked(found, "test_mse", 0)[0]["run_id"]) == ["a", "c", "b"]  # only when asked


# --- a real tiny sweep with --val-windows and --confirm ------------------------------------------------------

TINY = ["data.horizon=24", "data.lookback=48", "trainer.limit_train_batches=3", "trainer.limit_test_batches=2",
        "trainer.max_epochs=1", "--quiet"]  # fmt: skip


def _tiny_plan(tmp_path, *words: str):
    storage, tracking = f"sqlite:///{tmp_path / 'optuna.db'}", f"sqlite:///{tmp_path / 'mlflow.db'}"
    args = sweep_parser().parse_args(["--storage", storage, "--tracking-uri", tracking, "--study", "c",
                                      "--families", "linear", "--pruner", "none", *words, *TINY])  # fmt: skip
    return build_plan(args)


def _children(client: MlflowClient, parent: str, role: str) -> list:
    experiment = client.get_run(parent).info.experiment_id
    return client.search_runs([experiment], f"tags.`mlflow.parentRunId` = '{parent}' and tags.`stw.role` = '{role}'")


@pytest.mark.slow
def test_confirm_retrains_the_top_configurations_with_extra_seeds_nested_and_picks_by_mean_validation(tmp_path):
    words = ["--trials", "3", "--val-windows", "2", "--confirm", "2", "--seeds", "2"]
    plan = _tiny_plan(tmp_path, *words)
    assert plan.metric == "val_mse_windows" and plan.base["task"]["val_windows"] == 2
    study, parent_id = run_sweep(plan)
    client = MlflowClient(plan.tracking_uri)
    confirms = _children(client, parent_id, "confirm")
    top = top_trials(study, 2)
    assert len(confirms) == 4 and all(run.info.status == "FINISHED" for run in confirms)
    pairs = {(run.data.tags["stw.confirms_trial"], run.data.tags["stw.seed"]) for run in confirms}
    assert pairs == {(str(t.number), seed) for t in top for seed in ("1", "2")}  # the trials ran with seed 0
    for run in confirms:
        source = next(t for t in top if str(t.number) == run.data.tags["stw.confirms_trial"])
        assert run.data.tags["stw.confirms_run"] == source.user_attrs["mlflow_run_id"]
        assert run.data.params["task.val_windows"] == "2" and "val_mse_w2" in run.data.metrics
        history = client.get_metric_history(run.info.run_id, "val_mse_windows")
        assert run.data.metrics["best_val_mse_windows"] == pytest.approx(min(m.value for m in history))
    # The choice, recomputed from the runs' own validation histories: best mean over the original and extra seeds.
    val = {t.number: [t.value] + [min(m.value for m in client.get_metric_history(r.info.run_id, "val_mse_windows"))
                                  for r in confirms if r.data.tags["stw.confirms_trial"] == str(t.number)]
           for t in top}  # fmt: skip
    winner = choose(val, "min")
    parent = client.get_run(parent_id)
    assert parent.data.tags["stw.chosen_trial"] == str(winner)
    assert parent.data.metrics["chosen_val_mse_windows_mean"] == pytest.approx(np.mean(val[winner]), rel=1e-6)
    tests = [client.get_run(study.trials[winner].user_attrs["mlflow_run_id"]).data.metrics["test_mse"]] + [
        r.data.metrics["test_mse"] for r in confirms if r.data.tags["stw.confirms_trial"] == str(winner)]  # fmt: skip
    assert parent.data.metrics["chosen_test_mse_mean"] == pytest.approx(np.mean(tests), rel=1e-6)
    assert parent.data.metrics["chosen_test_mse_std"] == pytest.approx(np.std(tests, ddof=1), rel=1e-5)
    assert "confirm.csv" in {a.path for a in client.list_artifacts(parent_id)}
    text = confirm_text(confirmation(client, plan, study), plan)
    assert f"chosen: trial #{winner}" in text and "test_mse_mean" in text and "val_mse_windows_std" in text

    # A crash during confirmation: one run left RUNNING by a killed process. The re-run closes it KILLED, retrains
    # only that seed and reuses the other three.
    lost = confirms[0]
    client.update_run(lost.info.run_id, status="RUNNING")
    run_sweep(_tiny_plan(tmp_path, *words))
    again = _children(client, parent_id, "confirm")
    assert client.get_run(lost.info.run_id).info.status == "KILLED"
    finished = [run for run in again if run.info.status == "FINISHED"]
    assert len(again) == 5 and len(finished) == 4
    assert {r.info.run_id for r in confirms[1:]} <= {r.info.run_id for r in finished}
    assert len(_children(client, parent_id, "trial")) == 3  # no trial was retrained
