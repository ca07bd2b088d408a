"""`stw predict RUN_ID --input FILE --output FILE`: a logged run's model and preprocessing applied to new data.

The datamodule is rebuilt from the run's config.yaml and given the run's fitted preprocessing
(preprocessing.json: scalers, tokenizer, class names), so the new file is transformed exactly as the training
data was. The checkpoint is read with torch.load(weights_only=True): tensors and plain data only, so a
tampered file cannot run code. Lightning's saved hyper_parameters (the run config and the data spec, saved as
asdict(spec)) are plain data, so they load too and rebuild the module the weights belong to (the module turns
the spec back into its dataclass).

A predictor per dataset (PREDICTORS) reads the files with the dataset's own public reading functions, so the
same columns are required and the same checks apply as for training, applies the run's fitted preprocessing
(nothing is refitted on the new file), runs the model and returns a table. The input formats and output
columns are documented in `stw predict --help` (experiments/cli.py).
"""

import argparse
import pickle
import re
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import numpy as np
import pandas as pd
import torch
from pandas.tseries.frequencies import to_offset
from torch import Tensor

from datamodules import StwDataModule, benchmarks, ett, stock, table
from datamodules.errors import ConfigError, DataError
from datamodules.modes import ModeOptions
from datamodules.stock_direction import StockDirectionDataModule
from datamodules.timeseries import WindowedSeriesDataModule, float32_rows
from datamodules.video.datamodule import FrameDataModule
from datamodules.video.gestures import Gestures
from experiments.config import datamodule_for
from experiments.logged_run import CHECKPOINT, CONFIG, PREPROCESSING, LoggedRun, RunError, fetch_run
from lightning_modules import TASKS
from lightning_modules.residual_cycle import ResidualCycle

# (datamodule, module, input paths[, future_only=True for dated series]) -> the output table
Predictor = Callable[..., pd.DataFrame]
FeatureReader = Callable[[list[Path], Any], tuple[pd.DataFrame, pd.DataFrame]]


def single_file(paths: list[Path], what: str) -> Path:
    if len(paths) != 1:
        raise DataError(f"this run predicts from one file ({what}); got {len(paths)}: {', '.join(map(str, paths))}")
    return paths[0]


def ett_features(paths: list[Path], options: ett.EttOptions) -> tuple[pd.DataFrame, pd.DataFrame]:
    path = single_file(paths, f"a CSV with the header date,{','.join(ett.CHANNELS)}")
    return ett.features_from_frame(ett.read_frame(path), options)


def benchmark_features(paths: list[Path], options: ModeOptions) -> tuple[pd.DataFrame, pd.DataFrame]:
    path = single_file(paths, "a CSV with the header date,<the run's channels>")
    return benchmarks.features_from_frame(benchmarks.read_frame(path), options, path)


def ticker_files(paths: list[Path], options: stock.StockOptions) -> dict[str, Path]:
    """One price file per ticker of the run, matched by file name as in training (aapl.us.txt, AAPL.csv -> aapl)."""
    tickers, by_ticker = options.ticker_names(), {stock.ticker_name(path): path for path in paths}
    if sorted(by_ticker) != sorted(tickers) or len(paths) != len(tickers):
        raise DataError(
            f"the run forecasts from tickers {tickers}: give one price file per ticker, named after it "
            f"(e.g. {tickers[0]}.us.txt or {tickers[0].upper()}.csv); got {', '.join(p.name for p in paths)}"
        )
    return {ticker: by_ticker[ticker] for ticker in tickers}


def stock_features(paths: list[Path], options: stock.StockOptions) -> tuple[pd.DataFrame, pd.DataFrame]:
    files = ticker_files(paths, options)
    return stock.features_from_frames({ticker: stock.read_frame(path) for ticker, path in files.items()}, options)


def stock_closes(paths: list[Path], options: stock.StockOptions, index: pd.DatetimeIndex) -> pd.DataFrame:
    """The target ticker's close on each feature row: the price its forecast log returns compound from."""
    target = options.target_ticker()
    return stock.read_frame(ticker_files(paths, options)[target])[["Close"]].reindex(index)


def batched(model: Callable[[Tensor], Tensor], items: Tensor, batch_size: int) -> Tensor:
    return torch.cat([model(items[i : i + batch_size]) for i in range(0, len(items), batch_size)])


FutureTimes = Callable[[pd.DatetimeIndex, np.ndarray], pd.DatetimeIndex]  # (index, steps past its end) -> times


def regular_spacing(index: pd.DatetimeIndex, steps: np.ndarray) -> pd.DatetimeIndex:
    """The index's spacing continued when it has exactly one (hourly ETT); otherwise no time is made up."""
    spacings = (index[1:] - index[:-1]).unique()
    if len(spacings) != 1:
        return pd.DatetimeIndex([pd.NaT] * len(steps))
    return index[-1] + spacings[0] * steps


def steps_of(offset: pd.DateOffset) -> FutureTimes:
    """n steps of a pandas frequency after the index's last time (calendar offsets such as month starts too)."""

    def future(index: pd.DatetimeIndex, steps: np.ndarray) -> pd.DatetimeIndex:
        after = {n: index[-1] + n * offset for n in np.unique(steps).tolist()}
        return pd.DatetimeIndex([after[n] for n in steps.tolist()])

    return future


# n business days (Monday to Friday) after the last date; exchange holidays are not known, so not skipped.
business_days = steps_of(pd.offsets.BDay())


def forecast_times(index: pd.DatetimeIndex, rows: np.ndarray, future: FutureTimes) -> pd.Series:
    """The time of each row number: the index's own inside it, `future`'s for rows past its end."""
    inside = rows < len(index)
    times = pd.Series(index[np.minimum(rows, len(index) - 1)]).where(inside)
    if (~inside).any():
        times[~inside] = future(index, rows[~inside] - len(index) + 1)
    return times


def rows_of(values: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """values[rows] [len(rows), K], NaN for rows past the end."""
    out = np.full((len(rows), values.shape[1]), np.nan)
    out[rows < len(values)] = values[rows[rows < len(values)]]
    return out


def input_windows(datamodule: WindowedSeriesDataModule, inputs: pd.DataFrame, paths: list[Path],
                  future_only: bool) -> tuple[Tensor, np.ndarray]:  # fmt: skip
    """The run's scaled windows [N, L, C] over the input rows and the row each one ends at: every window, or with
    `future_only` the one ending at the last row, whose forecast is all future."""
    lookback = datamodule.options.lookback
    if len(inputs) < lookback:
        raise DataError(
            f"{', '.join(map(str, paths))}: {len(inputs)} rows of model inputs, but the run looks back "
            f"{lookback} steps (its data.lookback); give at least {lookback} consecutive rows"
        )
    # Scaled and cast exactly as the datamodule does for training, so a window gives the numbers it gave in testing.
    series = float32_rows(datamodule.input_scaler.transform(inputs))
    windows = series.unfold(0, lookback, 1).transpose(1, 2)  # window i ends at row i + L - 1
    ends = np.arange(lookback - 1, len(inputs))
    return (windows[-1:], ends[-1:]) if future_only else (windows, ends)


def reads_phase(module: torch.nn.Module) -> bool:
    """Whether the model (or an ensemble member) has a residual cycle, which reads each window's first row."""
    return any(isinstance(part, ResidualCycle) for part in module.modules())


def window_starts(datamodule: WindowedSeriesDataModule, module: torch.nn.Module, index: pd.Index, ends: np.ndarray,
                  paths: list[Path]) -> Tensor | None:  # fmt: skip
    """Each window's first row as a row number of the training series, the phase a residual cycle
    (task.cycle_len) reads; None for models without one. A file's rows are numbered by their times: row 0 is the
    training series' first timestamp, one row per its spacing (rows after the file's end continue the count), so
    a file's phase is right wherever in time it starts."""
    if not reads_phase(module):
        return None
    files = ", ".join(map(str, paths))
    clock = datamodule.row_clock
    if clock is None or not isinstance(index, pd.DatetimeIndex):
        raise ConfigError(
            f"{files}: the run learnt a residual cycle (task.cycle_len), whose phase is each row's number in the "
            "training series, but that series has no single spacing between its rows (or no timestamps), so a "
            "new file's rows cannot be numbered; stw predict cannot use this run on new files (retrain with "
            "task.cycle_len=0 to predict from files)"
        )
    rows = clock.rows(index, files)
    if gaps := np.flatnonzero(np.diff(rows) != 1).tolist():
        raise DataError(
            f"{files}: rows at {index[gaps[0]]} and {index[gaps[0] + 1]} are not one step of {clock.step} apart; "
            "the run's residual cycle needs consecutive rows on the training series' time grid"
        )
    return torch.from_numpy(rows[ends - datamodule.options.lookback + 1])


# A target kind's word in the output columns: a return series' values are log returns, a level's are its values.
VALUE_WORDS = {"level": "", "return": "_log_return"}
LevelReader = Callable[[list[Path], Any, pd.DatetimeIndex], pd.DataFrame]


def forecaster(read_features: FeatureReader, future: FutureTimes = regular_spacing,
               read_levels: LevelReader | None = None) -> Predictor:  # fmt: skip
    """A predictor for a windowed-series dataset whose files `read_features` turns into (inputs, targets); `future`
    names the times past the input's end; `read_levels` gives the price levels log-return targets compound from,
    for forecasts in prices too."""

    def predict(datamodule: WindowedSeriesDataModule, module: pl.LightningModule, paths: list[Path],
                future_only: bool = False) -> pd.DataFrame:  # fmt: skip
        inputs, targets = read_features(paths, datamodule.options)
        windows, ends = input_windows(datamodule, inputs, paths, future_only)
        starts, size = window_starts(datamodule, module, inputs.index, ends, paths), datamodule.options.batch_size
        # batched over window numbers, so each batch of windows takes its own first rows along
        scaled = batched(lambda i: module(windows[i].contiguous(), None if starts is None else starts[i]),
                         torch.arange(len(windows)), size)  # fmt: skip
        forecasts = datamodule.inverse_transform_targets(scaled).numpy()  # [N, H, K]
        horizon = forecasts.shape[1]
        rows = (ends[:, None] + np.arange(1, horizon + 1)).reshape(-1)
        window_ends = np.repeat(ends, horizon)
        table = pd.DataFrame({"window_end": inputs.index[window_ends], "step": rows - window_ends,
                              "timestamp": forecast_times(inputs.index, rows, future)})  # fmt: skip
        word = VALUE_WORDS[datamodule.target_kind]
        actual = rows_of(targets.to_numpy(), rows)
        for k, name in enumerate(targets.columns):
            table[f"{name}{word}_forecast"] = forecasts[:, :, k].reshape(-1)
            table[f"{name}{word}_actual"] = actual[:, k]
        if read_levels is not None:
            levels = read_levels(paths, datamodule.options, inputs.index).to_numpy()  # [T, K], one per target
            prices = stock.prices_from_log_returns(levels[ends], forecasts)
            actual_prices = rows_of(levels, rows)
            for k, name in enumerate(targets.columns):
                table[f"{name}_price_forecast"] = prices[:, :, k].reshape(-1)
                table[f"{name}_price_actual"] = actual_prices[:, k]
        return table

    return predict


MESSAGES = "a UTF-8 text file with one message per line"
# A cell of a price or sensor table: a number, or an ISO date with an optional time.
NUMBER_OR_DATE = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?|\d{4}-\d{2}-\d{2}(?:[ T][\d:.]+)?")


def text_lines(path: Path) -> list[str]:
    if path.is_dir():
        raise DataError(f"{path}: a folder; this run classifies messages: give {MESSAGES}")
    raw = path.read_bytes()
    if b"\0" in raw:
        raise DataError(
            f"{path}: binary data, not text (a video, an image?); this run classifies messages: give {MESSAGES}"
        )
    try:
        # Split on newlines only: str.splitlines() would also cut a message at characters like U+2028.
        lines = [
            line.removesuffix("\r")
            for line in raw.decode("utf-8").removeprefix("\ufeff").removesuffix("\n").split("\n")
        ]
    except UnicodeDecodeError as err:
        raise DataError(
            f"{path}: byte 0x{raw[err.start]:02x} at offset {err.start} is not UTF-8; re-save the file as UTF-8"
        ) from None
    blank = [str(number) for number, line in enumerate(lines, start=1) if not line.strip()]
    if not raw.strip() or blank:
        where = "it is empty" if not raw.strip() else f"lines {', '.join(blank[:10])} are empty"
        raise DataError(f"{path}: {where}; give one message per line, with no blank lines")
    return lines


def table_shape(lines: list[str]) -> tuple[str, int] | None:
    """(separator, fields per line) when every line has as many fields, two or more, and most cells below line 1
    are numbers or dates, as in a price or sensor CSV; None for messages."""
    for sep in (",", "\t", ";"):
        counts = {line.count(sep) for line in lines}
        if len(lines) > 1 and len(counts) == 1 and (fields := counts.pop() + 1) > 1:
            cells = [cell.strip() for line in lines[1:] for cell in line.split(sep)]
            if sum(bool(NUMBER_OR_DATE.fullmatch(cell)) for cell in cells) * 2 >= len(cells):
                return sep, fields
    return None


def check_messages(path: Path, lines: list[str], datamodule: StwDataModule) -> None:
    """Files of another kind that would be classified line by line all the same: a table of numbers (another
    run's CSV) or the run's own labelled training file."""
    if shape := table_shape(lines):
        sep, fields = shape
        raise DataError(
            f"{path}: a table, not messages: line 1 is {lines[0][:80]!r} and all {len(lines)} lines hold {fields} "
            f"{sep!r}-separated fields, mostly numbers; this run classifies messages: give {MESSAGES}"
        )
    sep, names = datamodule.options.sep, set(datamodule.class_names)
    fields = [line.split(sep) for line in lines]
    if all(len(parts) > 1 and any(part.strip() in names for part in parts) for parts in fields):
        raise DataError(
            f"{path}: every line holds a class name ({', '.join(sorted(names))}) and data.sep {sep!r}, as the "
            f"labelled training file does (line 1: {lines[0][:80]!r}); give the texts only, {MESSAGES}"
        )


def class_table(items: dict[str, Any], probs: Tensor, names: list[str]) -> pd.DataFrame:
    """The columns naming each item, then label (the most probable class) and prob_<class> for every class."""
    table = pd.DataFrame({**items, "label": [names[i] for i in probs.argmax(dim=1).tolist()]})
    for k, name in enumerate(names):
        table[f"prob_{name}"] = probs[:, k].numpy()
    return table


def classify_texts(datamodule: StwDataModule, module: pl.LightningModule, paths: list[Path]) -> pd.DataFrame:
    path = single_file(paths, MESSAGES)
    texts = text_lines(path)
    check_messages(path, texts, datamodule)
    return classify_messages(datamodule, module, texts)


def classify_messages(datamodule: StwDataModule, module: pl.LightningModule, texts: list[str]) -> pd.DataFrame:
    size = datamodule.options.batch_size
    # Encoded batch by batch, each padded to its own longest message, as the test batches were.
    probs = torch.cat(
        [module.predict_proba(datamodule.encode_texts(texts[i : i + size])) for i in range(0, len(texts), size)]
    )
    return class_table({"text": texts}, probs, module.class_names)


def classify_clips(datamodule: FrameDataModule, module: pl.LightningModule, paths: list[Path]) -> pd.DataFrame:
    clips = torch.cat([datamodule.inputs_for(path) for path in paths])  # [N, T, C, H, W] or [N, test_clips, T, C, H, W]
    test_clips = datamodule.options.test_clips
    probs = batched(lambda x: module.predict_proba(x, test_clips), clips, datamodule.options.batch_size)
    return class_table({"clip": [str(path) for path in paths]}, probs, module.class_names)


def classify_windows(datamodule: Gestures, module: pl.LightningModule, paths: list[Path]) -> pd.DataFrame:
    windows = [datamodule.inputs_for(path) for path in paths]  # per file [W, T, F], windows data.stride apart
    probs = batched(module.predict_proba, torch.cat(windows), datamodule.options.batch_size)
    first = np.concatenate([np.arange(len(w)) * datamodule.options.stride for w in windows])
    items = {
        "file": np.repeat([str(path) for path in paths], [len(w) for w in windows]),
        "first_frame": first,
        "last_frame": first + datamodule.options.clip_len - 1,
    }
    return class_table(items, probs, module.class_names)


def classify_moves(datamodule: StockDirectionDataModule, module: pl.LightningModule, paths: list[Path],
                   future_only: bool = False) -> pd.DataFrame:  # fmt: skip
    """Up or down for each window's next `horizon` days: move_end is the trading day whose close is compared."""
    inputs, _ = stock_features(paths, datamodule.options)
    windows, ends = input_windows(datamodule, inputs, paths, future_only)
    probs = batched(lambda x: module.predict_proba(x.contiguous()), windows, datamodule.options.batch_size)
    move_ends = forecast_times(inputs.index, ends + datamodule.options.horizon, business_days)
    return class_table({"window_end": inputs.index[ends], "move_end": move_ends}, probs, module.class_names)


def table_forecast(datamodule: table.TableDataModule, module: pl.LightningModule, paths: list[Path],
                   future_only: bool = False) -> pd.DataFrame:  # fmt: skip
    """A table run's forecasts: the file read with the run's columns and frequency, times past its end continuing
    that frequency."""
    path = single_file(paths, "a CSV or Parquet table with the run's date column and value columns")
    read = forecaster(lambda _paths, _options: datamodule.features_for(path), steps_of(to_offset(datamodule.frequency)))
    return read(datamodule, module, paths, future_only)


PREDICTORS: dict[str, Predictor] = {
    "ett": forecaster(ett_features),
    **{name: forecaster(ett_features) for name in ("etth1", "etth2", "ettm1", "ettm2")},
    **{name: forecaster(benchmark_features) for name in benchmarks.BENCHMARKS},
    "stock": forecaster(stock_features, business_days, stock_closes),
    "table": table_forecast,
    "stock-direction": classify_moves,
    "sms": classify_texts,
    "gestures": classify_windows,
    "moving-shapes": classify_clips,
    "hmdb51-samples": classify_clips,
    "video-folder": classify_clips,
}


def predictor_for(run_id: str, name: str, datamodule: StwDataModule) -> Predictor:
    """The dataset's predictor; a dated-series dataset without one (a plugin's) is read by its features_from_files."""
    if name in PREDICTORS:
        return PREDICTORS[name]
    if isinstance(datamodule, WindowedSeriesDataModule):
        return forecaster(lambda paths, options: datamodule.features_from_files(paths))
    raise RunError(f"run {run_id} trained on {name!r}, which stw predict does not handle yet; it handles "
                   f"{', '.join(sorted(PREDICTORS))} and dated-series datasets that read files (features_from_files)")  # fmt: skip


def load_checkpoint(path: Path) -> dict[str, Any]:
    """A Lightning checkpoint as tensors and plain data; refuses anything that would need code to unpickle."""
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        wanted = re.search(r"GLOBAL (\S+)", str(error))
        detail = f" (it asks for {wanted.group(1)})" if wanted else ""
        raise RunError(
            f"{path.name}: refused: the file holds objects other than tensors and plain data{detail}, which "
            "could run code when loaded; it is not a checkpoint stw wrote, so do not trust it"
        ) from None
    except (RuntimeError, EOFError, KeyError, OSError, zipfile.BadZipFile) as error:  # OSError: a file cut short
        raise RunError(f"{path.name}: not a readable PyTorch checkpoint, damaged or cut short "
                       f"({type(error).__name__}: {error}); retrain the run or restore its artifacts") from None  # fmt: skip
    if not isinstance(checkpoint, dict) or not {"state_dict", "hyper_parameters"} <= checkpoint.keys():
        raise RunError(f"{path.name}: not a Lightning checkpoint with state_dict and hyper_parameters")
    return checkpoint


def load_module(path: Path, task: str) -> pl.LightningModule:
    """The task's LightningModule rebuilt from the checkpoint's saved config and spec, with its trained weights."""
    checkpoint = load_checkpoint(path)
    saved = checkpoint["hyper_parameters"]
    module = TASKS[task](saved["config"], saved["spec"])
    module.load_state_dict(checkpoint["state_dict"])
    return module.eval()


def with_trained_model(datamodule: StwDataModule, preprocessing: dict[str, Any],
                       checkpoint: Path) -> tuple[StwDataModule, pl.LightningModule]:  # fmt: skip
    """The run's datamodule given its fitted preprocessing, and its module with the checkpoint's weights: what
    `stw predict` and the run's MLflow model both predict with."""
    datamodule.load_state_dict(preprocessing)
    return datamodule, load_module(checkpoint, datamodule.task)


def loaded_model(run: LoggedRun) -> tuple[str, StwDataModule, pl.LightningModule]:
    """The run's dataset name, its datamodule holding the run's fitted preprocessing, and its trained module; an
    ensemble run gives the averaging module over its members (experiments/ensemble.py)."""
    from experiments.ensemble import is_ensemble, load_ensemble

    if is_ensemble(run):
        ensemble = load_ensemble(run)
        return ensemble.reference.config["data"]["name"], ensemble.datamodule, ensemble.module
    run.require(CONFIG, PREPROCESSING, CHECKPOINT)
    config = run.config()
    name = config["data"]["name"]
    return name, *with_trained_model(datamodule_for(config), run.json(PREPROCESSING), run.download(CHECKPOINT))


def predict_main(args: argparse.Namespace) -> int:
    args.input, args.output = [Path(path) for path in args.input], Path(args.output)
    for path in args.input:
        if not path.exists():  # a folder is one clip of frame images
            raise DataError(f"{path}: input not found; give the file (or clip folder) to predict with --input")
    with fetch_run(args.run_id, args.tracking_uri) as run:
        name, datamodule, module = loaded_model(run)
        predictor = predictor_for(run.run_id, name, datamodule)
        if args.future and not isinstance(datamodule, WindowedSeriesDataModule):
            raise ConfigError(f"--future applies to runs on dated series (ett, stock, stock-direction, table); run "
                              f"{run.run_id} trained on {name!r}: leave --future out")  # fmt: skip
        with torch.inference_mode():
            table = predictor(datamodule, module, args.input, **({"future_only": True} if args.future else {}))
    # Six significant digits: float32 forecasts carry about seven, and 12.524999618530273 is noise past them.
    table.to_csv(args.output, index=False, float_format="%.6g")
    print(f"wrote {len(table)} rows to {args.output} (run {args.run_id} on {name})")
    return 0
