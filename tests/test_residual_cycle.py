"""Specification of CycleNet's residual cycle (task.cycle_len): a learnt cycle Q [W, C] taken out of every input
step and put back on every forecast step at the window's own phase, for every forecasting family, with and
without RevIN and channel independence, fed each window's first row by the datasets, and kept through
predict and reproduce."""

from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import lightning.pytorch as pl
import numpy as np
import pandas as pd
import pytest
import torch
from mlflow.tracking import MlflowClient

from datamodules import dataset_class
from datamodules.errors import ConfigError
from datamodules.specs import ForecastSpec
from datamodules.timeseries import RowClock
from experiments import tracking
from experiments.cli import main
from experiments.config import parse_run_args
from experiments.train import build_module, seeded_datamodule
from lightning_modules.forecast_model import Forecaster
from lightning_modules.forecast_training import ForecastingModule
from lightning_modules.residual_cycle import ResidualCycle
from tests.test_forecaster import TINY, series

FAMILIES = ["linear", "mlp", "rnn", "gru", "segrnn", "sparsetsf", "transformer"]


def known_cycle(cycle_len: int, channels: int) -> ResidualCycle:
    """A cycle whose table entry at (phase, channel) is 10 * phase + channel, so every lookup is readable."""
    cycle = ResidualCycle(cycle_len, channels, list(range(channels)))
    with torch.no_grad():
        cycle.table.copy_(10 * torch.arange(cycle_len)[:, None] + torch.arange(channels)[None, :])
    return cycle


def test_a_window_starting_at_row_p_loses_q_of_p_plus_i_mod_w_and_its_forecast_gains_q_of_p_plus_l_plus_j():
    cycle_len, lookback, horizon = 5, 3, 4
    cycle = known_cycle(cycle_len, 2)
    x, y = torch.zeros(3, lookback, 2), torch.zeros(3, horizon, 2)
    start = torch.tensor([0, 4, 13])  # 13: the phase is 3, whatever row of the series it is
    removed, restored = cycle.remove(x, start), cycle.restore(y, start, lookback)
    for b, p in enumerate(start.tolist()):
        for i in range(lookback):
            assert removed[b, i].tolist() == [-10 * ((p + i) % 5), -(10 * ((p + i) % 5) + 1)]
        for j in range(horizon):
            assert restored[b, j].tolist() == [10 * ((p + lookback + j) % 5), 10 * ((p + lookback + j) % 5) + 1]


def test_rows_before_the_first_take_the_phase_that_counting_back_gives():
    cycle = known_cycle(4, 1)
    assert cycle.at(torch.tensor([-1]), 2)[0, :, 0].tolist() == [30.0, 0.0]  # row -1 is phase 3, row 0 phase 0


def test_the_forecast_adds_back_the_target_channels_cycle_only():
    cycle = ResidualCycle(3, 4, [2, 0])
    with torch.no_grad():
        cycle.table.copy_(torch.arange(12.0).view(3, 4))
    restored = cycle.restore(torch.zeros(1, 2, 2), torch.tensor([1]), lookback=1)  # forecast rows 2 and 3
    assert restored[0].tolist() == [[10.0, 8.0], [2.0, 0.0]]  # phases 2 and 0, target columns 2 and 0


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize(("revin", "channel_independent"), [(False, False), (True, False), (True, True), (False, True)])
def test_forecasts_keep_their_shape_with_a_cycle(family: str, revin: bool, channel_independent: bool) -> None:
    torch.manual_seed(0)
    spec = series(3, 24, 8)
    model = Forecaster(family, TINY[family], spec=spec, revin=revin, channel_independent=channel_independent,
                       cycle_len=24)  # fmt: skip
    forecast = model(torch.randn(4, 24, 3), torch.tensor([0, 5, 100, 23]))
    assert forecast.shape == (4, 8, 3)
    assert model.cycle.table.shape == (24, 3)  # one column per input channel, also when channels run apart
    forecast.sum().backward()
    assert model.cycle.table.grad is not None and model.cycle.table.grad.abs().sum() > 0  # it is learnt


@pytest.mark.parametrize("revin", [False, True])
def test_with_the_backbone_silenced_the_forecast_is_the_cycle_at_the_forecast_rows(revin: bool) -> None:
    # A linear backbone with every weight 0 forecasts 0: what is left is the cycle, (de)normalised by RevIN.
    model = Forecaster("linear", {"moving_avg": 1}, spec=series(2, 6, 4), revin=revin, cycle_len=5)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if not name.startswith(("cycle.", "revin.")):
                parameter.zero_()
        model.cycle.table.copy_(known_cycle(5, 2).table)
    x, start = torch.randn(2, 6, 2), torch.tensor([3, 7])
    forecast = model(x, start)
    rows = (start[:, None] + 6 + torch.arange(4)) % 5
    expected = known_cycle(5, 2).table.detach()[rows]
    if revin:
        mean, std = x.mean(1, keepdim=True), torch.sqrt(x.var(1, keepdim=True, unbiased=False) + 1e-5)
        expected = expected * std + mean
    torch.testing.assert_close(forecast, expected)


def test_without_a_cycle_the_model_is_todays_whatever_start_says() -> None:
    # cycle_len 0 adds no parameter (a checkpoint holds what it held before) and never reads start.
    before = Forecaster("linear", TINY["linear"], spec=series(3, 24, 8), revin=True)
    torch.manual_seed(0)
    plain = Forecaster("linear", TINY["linear"], spec=series(3, 24, 8), revin=True)
    torch.manual_seed(0)
    off = Forecaster("linear", TINY["linear"], spec=series(3, 24, 8), revin=True, cycle_len=0)
    assert off.cycle is None and off.state_dict().keys() == before.state_dict().keys()
    x = torch.randn(2, 24, 3)
    assert torch.equal(off(x), plain(x)) and torch.equal(off(x, torch.tensor([5, 9])), plain(x))


def test_a_cycle_needs_targets_among_the_inputs_and_the_windows_start() -> None:
    with pytest.raises(ConfigError, match="task.cycle_len .* needs target_index"):
        Forecaster("linear", spec=series(3, 24, 8, targets=1), cycle_len=24)
    model = Forecaster("linear", spec=series(3, 24, 8), cycle_len=24)
    with pytest.raises(ValueError, match="first row number"):
        model(torch.randn(1, 24, 3))


@pytest.mark.parametrize("value", [-1, 1])
def test_a_bad_cycle_len_is_a_config_error_naming_the_key(value: int) -> None:
    with pytest.raises(ConfigError, match=rf"task.cycle_len={value} is not valid: it must be 0 \(off\), a cycle"):
        parse_run_args(["--data", "ett", "--model", "linear", f"task.cycle_len={value}"])


@pytest.mark.parametrize(("name", "day"), [("ett", 24), ("ettm1", 96)])
def test_cycle_len_season_is_the_datasets_day_of_rows_unless_task_season_says_otherwise(name: str, day: int) -> None:
    spec = replace(series(7, 96, 96), season=dataset_class(name).season)
    for words, cycle_len in [([], day), (["task.season=12"], 12)]:
        config = parse_run_args(["--data", name, "--model", "linear", "task.cycle_len=season", *words])
        assert ForecastingModule(config, spec).model.cycle.cycle_len == cycle_len


def test_the_row_clock_numbers_rows_by_time_and_refuses_times_off_its_grid() -> None:
    clock = RowClock.of(pd.date_range("2021-01-01", periods=10, freq="h"))
    assert RowClock.from_dict(clock.to_dict()) == clock
    later = pd.date_range("2021-01-03 05:00", periods=3, freq="h")
    assert clock.rows(later, "new.csv").tolist() == [53, 54, 55]
    assert clock.rows(pd.DatetimeIndex(["2020-12-31 23:00"]), "new.csv").tolist() == [-1]
    with pytest.raises(Exception, match="new.csv: row time 2021-01-01 00:30:00 is not a whole number of steps"):
        clock.rows(pd.DatetimeIndex(["2021-01-01 00:30"]), "new.csv")
    assert RowClock.of(pd.DatetimeIndex(["2021-01-01", "2021-01-02", "2021-01-04"])) is None  # two spacings


# --- a series that is a cycle ------------------------------------------------------------------------------------
def cycle_csv(folder: Path, rows: int = 24 * 50, noise: float = 0.1) -> Path:
    """Two channels, each a fixed random daily profile of 24 hourly values (not a sine, so no short window tells
    its phase) plus noise."""
    rng = np.random.default_rng(0)
    profile = rng.standard_normal((24, 2))
    values = profile[np.arange(rows) % 24] + noise * rng.standard_normal((rows, 2))
    dates = pd.date_range("2021-01-01", periods=rows, freq="h").strftime("%Y-%m-%d %H:%M:%S")
    path = folder / "cycle.csv"
    pd.DataFrame({"date": dates, "a": values[:, 0], "b": values[:, 1]}).to_csv(path, index=False)
    return path


def val_mse(path: Path, *words: str) -> float:
    config = parse_run_args(["--data", "table", f"data.path={path}", "data.lookback=4", "data.horizon=4",
                             "data.batch_size=32", "--model", "linear", "model.moving_avg=1", "optim.lr=0.05",
                             "seed=0", *words])  # fmt: skip
    datamodule = seeded_datamodule(config)
    module = build_module(config, datamodule)
    trainer = pl.Trainer(accelerator="cpu", max_epochs=5, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False)  # fmt: skip
    trainer.fit(module, datamodule=datamodule)
    return trainer.validate(module, datamodule=datamodule, verbose=False)[0]["val_mse"]


def test_on_a_pure_cycle_the_learnt_cycle_beats_the_same_backbone_without_it(tmp_path: Path) -> None:
    # Four steps of a random daily profile do not tell the hour; the cycle, read at the window's phase, does.
    path = cycle_csv(tmp_path)
    with_cycle, without = val_mse(path, "task.cycle_len=24"), val_mse(path)
    assert with_cycle < 0.5 * without


# --- train -> predict -> reproduce ---------------------------------------------------------------------------------
@pytest.mark.slow
def test_a_run_with_a_cycle_trains_predicts_the_future_and_reproduces(tmp_path, tracking_uri, load_logged, capsys,
                                                                     monkeypatch):  # fmt: skip
    clean = {**tracking.git_state(), tracking.Tag.GIT_DIRTY: "false"}  # this working tree, seen as clean at HEAD
    monkeypatch.setattr(tracking, "git_state", lambda: dict(clean))
    path = cycle_csv(tmp_path, rows=24 * 20)
    train = ["train", "--data", "table", f"data.path={path}", "data.lookback=12", "data.horizon=6", "--model",
             "linear", "task.cycle_len=24", "task.revin=true", "optim.lr=0.01", "trainer.max_epochs=2", "--quiet"]  # fmt: skip
    assert main([*train, "--tracking-uri", tracking_uri]) == 0
    client = MlflowClient(tracking_uri)
    [run] = client.search_runs([client.get_experiment_by_name("table").experiment_id])
    run_id = run.info.run_id

    # The model's own forecast of the last test window, from the test loader, with its start row ...
    datamodule, module, _ = load_logged(run_id, tracking_uri)
    test = datamodule.datasets["test"]
    x, _, start = test[[len(test) - 1]]
    with torch.no_grad():
        expected = datamodule.inverse_transform_targets(module(x, start))[0]
    # ... is what --future gives for a file whose last rows are that window: its rows are numbered by their times.
    frame = pd.read_csv(path)
    window_end = int(start) + 12  # one past the window's last row
    rows_file = tmp_path / "recent.csv"
    frame.iloc[window_end - 30 : window_end].to_csv(rows_file, index=False)
    output = tmp_path / "next.csv"
    assert main(["predict", run_id, "--input", str(rows_file), "--output", str(output), "--future",
                 "--tracking-uri", tracking_uri]) == 0  # fmt: skip
    table = pd.read_csv(output)
    torch.testing.assert_close(torch.tensor(table[["a_forecast", "b_forecast"]].to_numpy(), dtype=torch.float32),
                               expected, rtol=5e-6, atol=1e-5)  # fmt: skip
    # One hour later the phase moves on: the same values an hour later forecast otherwise.
    shifted = frame.iloc[window_end - 30 : window_end].assign(
        date=lambda f: (pd.to_datetime(f["date"]) + pd.Timedelta(hours=1)).dt.strftime("%Y-%m-%d %H:%M:%S")
    )
    shifted.to_csv(rows_file, index=False)
    assert main(["predict", run_id, "--input", str(rows_file), "--output", str(output), "--future",
                 "--tracking-uri", tracking_uri]) == 0  # fmt: skip
    assert not np.allclose(pd.read_csv(output)[["a_forecast", "b_forecast"]].to_numpy(), expected.numpy())
    # A file off the training series' hourly grid has no phase: refused, naming the file.
    frame.iloc[:30].assign(date=lambda f: (pd.to_datetime(f["date"]) + pd.Timedelta(minutes=30)).astype(str)).to_csv(
        rows_file, index=False
    )
    capsys.readouterr()
    assert main(["predict", run_id, "--input", str(rows_file), "--output", str(output), "--future",
                 "--tracking-uri", tracking_uri]) == 2  # fmt: skip
    assert "is not a whole number of steps" in capsys.readouterr().err

    capsys.readouterr()
    assert main(["reproduce", run_id, "--tracking-uri", tracking_uri, "--quiet"]) == 0
    assert f"reproduces run {run_id}" in capsys.readouterr().out


def test_a_run_on_a_series_without_one_spacing_cannot_number_a_new_files_rows(tmp_path: Path) -> None:
    from experiments.predict import window_starts

    spec = ForecastSpec("values", 4, 2, ["a"], ["a"], [0], 24)
    module = Forecaster("linear", spec=spec, cycle_len=24)
    datamodule = SimpleNamespace(row_clock=None, options=SimpleNamespace(lookback=4))  # e.g. trading days
    index = pd.date_range("2021-01-01", periods=6, freq="B")
    with pytest.raises(ConfigError, match="no single spacing between its rows"):
        window_starts(datamodule, module, index, np.array([3, 5]), [tmp_path / "spy.csv"])
    assert window_starts(datamodule, Forecaster("linear", spec=spec), index, np.array([3]), []) is None


@pytest.mark.slow
def test_a_cycle_on_trading_days_trains_but_predict_refuses_new_files(tracking_uri, shared_data, tmp_path, capsys):
    # Trading days have no single spacing, so a file's rows cannot be numbered; training numbers rows by count.
    words = ["--data", "stock", "data.lookback=20", "data.horizon=5", "--model", "linear", "task.cycle_len=5",
             "trainer.max_epochs=1", "trainer.limit_train_batches=4", "--quiet"]  # fmt: skip
    assert main(["train", *words, "--tracking-uri", tracking_uri]) == 0
    client = MlflowClient(tracking_uri)
    [run] = client.search_runs([client.get_experiment_by_name("stock").experiment_id])
    assert run.info.status == "FINISHED"  # its MLflow model is logged, without an input example
    recent = tmp_path / "spy.us.txt"
    lines = (shared_data / "stock" / "spy.us.txt").read_text().splitlines(keepends=True)
    recent.write_text("".join([lines[0], *lines[-40:]]))
    capsys.readouterr()
    assert main(["predict", run.info.run_id, "--input", str(recent), "--output", str(tmp_path / "out.csv"),
                 "--tracking-uri", tracking_uri]) == 2  # fmt: skip
    assert "no single spacing between its rows" in capsys.readouterr().err


def test_an_ensemble_member_that_looks_back_less_reads_the_phase_of_its_own_window() -> None:
    from experiments.ensemble import MeanOfMembers

    torch.manual_seed(0)
    long, short = (Forecaster("linear", spec=series(2, lookback, 3), cycle_len=6) for lookback in (8, 4))
    for member in (long, short):
        with torch.no_grad():
            member.cycle.table.normal_()
    x, start = torch.randn(3, 8, 2), torch.tensor([0, 5, 17])
    expected = (long(x, start) + short(x[:, 4:].contiguous(), start + 4)) / 2
    torch.testing.assert_close(MeanOfMembers([long, short], [8, 4], probabilities=False)(x, start), expected)
