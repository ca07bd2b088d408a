"""`stw predict`: a logged run's model and preprocessing on new files, bad input, and tampered checkpoints."""

import os
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch
from mlflow.tracking import MlflowClient

from datamodules.ett import TEST_END, VAL_END
from experiments.cli import main
from experiments.logged_run import RunError, fetch_run
from experiments.predict import load_checkpoint
from tests.tiny_runs import train_runs

pytestmark = pytest.mark.slow

TINY = [
    "trainer.max_epochs=2",
    "trainer.limit_train_batches=8",
    "trainer.limit_val_batches=4",
    "trainer.limit_test_batches=4",
    "--quiet",
]
ETT = ["--data", "ett", "data.lookback=48", "data.horizon=24", "--model", "lstm", "model.hidden_size=8", *TINY]
STOCK = ["--data", "stock", "data.lookback=20", "data.horizon=5", "--model", "linear", *TINY]
DIRECTION = ["--data", "stock-direction", "data.lookback=20", "data.dead_zone=0.001", "--model", "gru",
             "model.hidden_size=8", *TINY]  # fmt: skip
SMS = ["--data", "sms", "data.max_len=32", "task.embed_dim=16", "--model", "gru", "model.hidden_size=16", *TINY]


@pytest.fixture(scope="module")
def logged(tmp_path_factory, shared_data) -> SimpleNamespace:
    """One store with a tiny ETT run, a tiny stock run, a tiny stock-direction run and a tiny SMS run."""
    runs = {"ett": ETT, "stock": STOCK, "stock-direction": DIRECTION, "sms": SMS}
    return train_runs(tmp_path_factory.mktemp("mlruns"), shared_data, runs)


def _predict(logged, run_id: str, inputs: list[Path], output: Path, *options: str) -> int:
    return main(
        ["predict", run_id, "--input", *map(str, inputs), "--output", str(output), "--tracking-uri", logged.uri,
         *options]
    )  # fmt: skip


def significant_digits(field: str) -> int:
    """Digits of a number as written, leading zeros and the exponent aside (0.00123 -> 3, 12.5 -> 3)."""
    mantissa = field.lower().split("e")[0].lstrip("-").replace(".", "").lstrip("0")
    return len(mantissa)


def test_forecasts_of_held_back_rows_are_the_models_own_test_forecasts(load_logged, logged, shared_data, tmp_path):
    lookback, horizon, channels = 48, 24, ["HUFL", "HULL", "MUFL", "MULL", "LUFL", "LULL", "OT"]
    lines = (shared_data / "ett" / "ETTh1.csv").read_text().splitlines(keepends=True)
    held_back = tmp_path / "test_rows.csv"  # the standard test part: rows [VAL_END - lookback, TEST_END)
    held_back.write_text("".join([lines[0], *lines[1 + VAL_END - lookback : 1 + TEST_END]]))
    assert _predict(logged, logged.ett, [held_back], tmp_path / "forecast.csv") == 0
    table = pd.read_csv(tmp_path / "forecast.csv", parse_dates=["window_end", "timestamp"])

    datamodule, module, logged_metrics = load_logged(logged.ett, logged.uri)
    test = datamodule.test_dataloader()
    with torch.no_grad():
        expected = torch.cat(
            [datamodule.inverse_transform_targets(module(x, start)) for x, _, start in test]
        )  # [N, H, K]
    n_test = len(test.dataset)
    assert len(table) == (TEST_END - VAL_END + 1) * horizon  # every window of the file, the last ones running past it
    forecasts = torch.tensor(table[[f"{c}_forecast" for c in channels]].to_numpy(), dtype=torch.float32)
    # Written with 6 significant digits: the model's own numbers to 5e-6 of their size.
    torch.testing.assert_close(forecasts[: n_test * horizon].view(n_test, horizon, 7), expected, rtol=5e-6, atol=1e-5)

    # The run's logged test_mse is the scaled MSE over its first 4 test batches; the CSV gives it back.
    scaler, scored = datamodule.target_scaler, 4 * datamodule.options.batch_size * horizon
    scaled = lambda columns: (table[columns].to_numpy()[:scored] - scaler.mean) / scaler.std  # noqa: E731
    mse = ((scaled([f"{c}_forecast" for c in channels]) - scaled([f"{c}_actual" for c in channels])) ** 2).mean()
    assert mse == pytest.approx(logged_metrics["test_mse"], rel=1e-4)

    times = pd.to_datetime([line.split(",")[0] for line in lines[1 + VAL_END - lookback : 1 + TEST_END]])
    first, last = table.iloc[0], table.iloc[-1]
    assert first.window_end == times[lookback - 1] and first.step == 1 and first.timestamp == times[lookback]
    assert first.OT_actual == pytest.approx(
        float(lines[1 + VAL_END].split(",")[-1]), rel=1e-6
    )  # 9.21500015258789 -> 9.215
    assert last.window_end == times[-1] and last.step == horizon and pd.isna(last.OT_actual)
    assert last.timestamp == times[-1] + pd.Timedelta(hours=horizon)  # hourly spacing continued past the file


def recent_spy(shared_data: Path, folder: Path, days: int = 40) -> Path:
    """The last `days` trading days of SPY (up to Friday 2017-11-10) as a user's own SPY.us.txt."""
    lines = (shared_data / "stock" / "spy.us.txt").read_text().splitlines(keepends=True)
    recent = folder / "SPY.us.txt"
    recent.write_text("".join([lines[0], *lines[-days:]]))
    return recent


STOCK_COLUMNS = [
    "spy_close_log_return_forecast",
    "spy_close_log_return_actual",
    "spy_close_price_forecast",
    "spy_close_price_actual",
]
NEXT_WEEK = pd.to_datetime(["2017-11-13", "2017-11-14", "2017-11-15", "2017-11-16", "2017-11-17"])


def test_stock_forecasts_are_log_returns_and_prices_on_trading_days(logged, shared_data, tmp_path):
    recent = recent_spy(shared_data, tmp_path)
    assert _predict(logged, logged.stock, [recent], tmp_path / "spy.csv") == 0
    table = pd.read_csv(tmp_path / "spy.csv", parse_dates=["window_end", "timestamp"])
    returns = 40 - 1  # the first day only starts the returns
    assert len(table) == (returns - 20 + 1) * 5 and list(table.columns[3:]) == STOCK_COLUMNS
    past_end = table.spy_close_log_return_actual.isna()
    assert past_end.sum() == 1 + 2 + 3 + 4 + 5 and past_end.equals(table.spy_close_price_actual.isna())
    # Inside the file a forecast is dated by the file's own rows; past its end by the business days after it.
    assert table.timestamp.notna().all() and (table.timestamp.dt.dayofweek < 5).all()
    assert list(table.timestamp[table.window_end == table.window_end.max()]) == list(NEXT_WEEK)
    closes = pd.read_csv(recent, parse_dates=["Date"], index_col="Date")["Close"]
    inside = table[~past_end]
    np.testing.assert_allclose(inside.spy_close_price_actual, closes.loc[inside.timestamp], rtol=1e-6)
    np.testing.assert_allclose(
        inside.spy_close_log_return_actual,
        np.log(closes.loc[inside.timestamp].to_numpy() / closes.shift(1).loc[inside.timestamp].to_numpy()),
        rtol=1e-5,
    )
    other = tmp_path / "aapl.us.txt"
    other.write_text(recent.read_text())
    assert _predict(logged, logged.stock, [other], tmp_path / "x.csv") == 2


def test_future_gives_only_the_forecast_after_the_last_row_with_prices_compounded_from_the_last_close(
    logged, shared_data, tmp_path
):
    recent = recent_spy(shared_data, tmp_path)
    assert _predict(logged, logged.stock, [recent], tmp_path / "next.csv", "--future") == 0
    table = pd.read_csv(tmp_path / "next.csv", parse_dates=["window_end", "timestamp"])
    assert list(table.step) == [1, 2, 3, 4, 5] and (table.window_end == pd.Timestamp("2017-11-10")).all()
    assert list(table.timestamp) == list(NEXT_WEEK)  # Friday's forecast runs Monday to Friday
    assert table[["spy_close_log_return_actual", "spy_close_price_actual"]].isna().all().all()
    last_close = pd.read_csv(recent)["Close"].iloc[-1]
    compounded = last_close * np.exp(np.cumsum(table.spy_close_log_return_forecast))
    np.testing.assert_allclose(table.spy_close_price_forecast, compounded, rtol=1e-5)
    assert _predict(logged, logged.stock, [recent], tmp_path / "all.csv") == 0
    every_window = pd.read_csv(tmp_path / "all.csv", parse_dates=["window_end", "timestamp"])
    pd.testing.assert_frame_equal(every_window.tail(5).reset_index(drop=True), table)  # the same last window
    # No float32 noise: every number carries at most 6 significant digits.
    fields = [f for line in (tmp_path / "all.csv").read_text().splitlines()[1:] for f in line.split(",")[3:] if f]
    assert max(significant_digits(field) for field in fields) <= 6


def test_last_is_the_same_option_and_ett_runs_past_the_file_in_its_hourly_steps(logged, shared_data, tmp_path):
    lines = (shared_data / "ett" / "ETTh1.csv").read_text().splitlines(keepends=True)
    recent = tmp_path / "recent.csv"
    recent.write_text("".join([lines[0], *lines[1:200]]))
    assert _predict(logged, logged.ett, [recent], tmp_path / "next.csv", "--last") == 0
    table = pd.read_csv(tmp_path / "next.csv", parse_dates=["window_end", "timestamp"])
    last = pd.Timestamp(lines[199].split(",")[0])
    assert len(table) == 24 and (table.window_end == last).all()
    assert list(table.timestamp) == [last + pd.Timedelta(hours=h) for h in range(1, 25)]


def test_the_direction_of_the_next_move_is_dated_by_the_trading_day_it_ends_on(logged, shared_data, tmp_path):
    recent = recent_spy(shared_data, tmp_path)
    assert _predict(logged, logged.stock_direction, [recent], tmp_path / "all.csv") == 0
    table = pd.read_csv(tmp_path / "all.csv", parse_dates=["window_end", "move_end"])
    assert list(table.columns) == ["window_end", "move_end", "label", "prob_down", "prob_up"] and len(table) == 20
    assert set(table.label) <= {"down", "up"}
    np.testing.assert_allclose(table.prob_down + table.prob_up, 1, atol=2e-6)
    assert (table.move_end.iloc[:-1].to_numpy() == table.window_end.iloc[1:].to_numpy()).all()  # one day ahead
    assert _predict(logged, logged.stock_direction, [recent], tmp_path / "next.csv", "--future") == 0
    future = pd.read_csv(tmp_path / "next.csv", parse_dates=["window_end", "move_end"])
    assert len(future) == 1 and future.move_end[0] == pd.Timestamp("2017-11-13")  # Friday -> Monday
    pd.testing.assert_frame_equal(future, table.tail(1).reset_index(drop=True))


def test_future_on_a_run_that_is_not_a_dated_series_is_refused(logged, tmp_path, capsys):
    messages = tmp_path / "messages.txt"
    messages.write_text("free entry now\n")
    assert _predict(logged, logged.sms, [messages], tmp_path / "out.csv", "--future") == 2
    assert "--future applies to runs on dated series" in capsys.readouterr().err


def test_class_probabilities_per_line_are_the_models_own(load_logged, logged, tmp_path):
    datamodule, module, _ = load_logged(logged.sms, logged.uri)
    x, labels = next(iter(datamodule.test_dataloader()))
    texts = datamodule.datasets["test"].texts[: len(labels)]
    messages = tmp_path / "messages.txt"
    messages.write_text("\n".join(texts) + "\n", encoding="utf-8")
    assert _predict(logged, logged.sms, [messages], tmp_path / "labels.csv") == 0
    table = pd.read_csv(tmp_path / "labels.csv", keep_default_na=False)
    assert list(table.columns) == ["text", "label", "prob_ham", "prob_spam"] and list(table.text) == texts
    with torch.no_grad():
        expected = module.predict_proba(x)
    probs = torch.tensor(table[["prob_ham", "prob_spam"]].to_numpy(), dtype=torch.float32)
    torch.testing.assert_close(probs, expected, rtol=0, atol=1e-6)
    assert list(table.label) == [module.class_names[i] for i in expected.argmax(dim=1).tolist()]


@pytest.mark.parametrize(
    "content, message",
    [
        ("date,HUFL,HULL,MUFL,MULL,LUFL,LULL,oil\n2018-01-01 00:00:00,1,1,1,1,1,1,1\n", "missing columns ['OT']"),
        (
            "date,HUFL,HULL,MUFL,MULL,LUFL,LULL,OT\n"
            + "".join(f"2018-01-01 {h:02d}:00:00,1,1,1,1,1,1,1\n" for h in range(20)),
            "20 rows of model inputs, but the run looks back 48 steps (its data.lookback)",
        ),
    ],
)
def test_bad_forecast_input_is_a_data_error_naming_the_file_and_the_fix(logged, tmp_path, capsys, content, message):
    bad = tmp_path / "new.csv"
    bad.write_text(content)
    assert _predict(logged, logged.ett, [bad], tmp_path / "out.csv") == 2
    error = capsys.readouterr().err
    assert str(bad) in error and message in error and not (tmp_path / "out.csv").exists()


def test_a_blank_line_in_text_input_is_a_data_error(logged, tmp_path, capsys):
    messages = tmp_path / "messages.txt"
    messages.write_text("free entry now\n\nsee you at 5\n")
    assert _predict(logged, logged.sms, [messages], tmp_path / "out.csv") == 2
    assert "lines 2 are empty" in capsys.readouterr().err


def test_a_file_of_another_kind_than_the_runs_is_refused_naming_what_the_run_expects(
    logged, shared_data, tmp_path, capsys
):
    assert _predict(logged, logged.sms, [shared_data / "stock" / "spy.us.txt"], tmp_path / "out.csv") == 2
    error = capsys.readouterr().err
    assert "spy.us.txt: a table, not messages" in error and "'Date,Open,High,Low,Close,Volume,OpenInt'" in error
    assert "give a UTF-8 text file with one message per line" in error
    messages = tmp_path / "messages.txt"
    messages.write_text("free entry, win now\nsee you at 5\n")
    assert _predict(logged, logged.ett, [messages], tmp_path / "out.csv") == 2
    error = capsys.readouterr().err
    assert "messages.txt: missing columns ['date', 'HUFL'" in error and "found ['free entry', ' win now']" in error
    assert not (tmp_path / "out.csv").exists()


class _RunsCode:
    """A pickle payload that would create `marker` when unpickled with an unrestricted loader."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_a_tampered_checkpoint_is_refused_without_running_its_code(logged, shared_data, tmp_path, capsys):
    marker = tmp_path / "code-ran"
    tampered = tmp_path / "best.ckpt"
    torch.save({"state_dict": {}, "hyper_parameters": _RunsCode(marker)}, tampered)
    with pytest.raises(RunError, match="refused"):
        load_checkpoint(tampered)
    # The same file as a run's checkpoint artifact, beside that run's genuine config and preprocessing.
    client = MlflowClient(logged.uri)
    with fetch_run(logged.ett, logged.uri) as genuine:
        copy = client.create_run(genuine.run.info.experiment_id, tags={"stw.tool": "st-workbench"}).info.run_id
        for name in ("config.yaml", "preprocessing.json"):
            client.log_artifact(copy, str(genuine.download(name)))
    client.log_artifact(copy, str(tampered), artifact_path="checkpoints")
    capsys.readouterr()
    assert _predict(logged, copy, [shared_data / "ett" / "ETTh1.csv"], tmp_path / "out.csv") == 2
    assert "refused" in capsys.readouterr().err
    assert not marker.exists()
    torch.load(tampered, weights_only=False)  # the payload is live: an unrestricted load runs it
    assert marker.exists()


@pytest.mark.parametrize("kept", [0, 0.25, 0.5, 0.9, 0.999])
def test_a_checkpoint_cut_short_is_a_clear_error_whatever_its_length(logged, tmp_path, kept):
    with fetch_run(logged.ett, logged.uri) as run:
        whole = run.download("checkpoints/best.ckpt").read_bytes()
    cut = tmp_path / "best.ckpt"
    cut.write_bytes(whole[: int(len(whole) * kept)])
    with pytest.raises(RunError, match="not a readable PyTorch checkpoint"):
        load_checkpoint(cut)


def test_a_config_with_a_yaml_tag_is_refused_as_an_invalid_config(logged, tmp_path, capsys):
    client = MlflowClient(logged.uri)
    with fetch_run(logged.ett, logged.uri) as genuine:
        copy = client.create_run(genuine.run.info.experiment_id, tags={"stw.tool": "st-workbench"}).info.run_id
        client.log_artifact(copy, str(genuine.download("preprocessing.json")))
    client.log_text(copy, "data: !!python/object/apply:os.system ['touch x']\n", "config.yaml")
    with fetch_run(copy, logged.uri) as run, pytest.raises(RunError, match="not a valid run config"):
        run.config()
