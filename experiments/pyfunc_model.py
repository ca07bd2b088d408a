"""A finished run's best model as an MLflow pyfunc model: `mlflow.pyfunc.load_model(f"runs:/{run_id}/model")`.

The model folder holds the run's best checkpoint, config.yaml and preprocessing.json; `load_context` rebuilds the
datamodule and module from them as `stw predict` does (the checkpoint read with weights_only=True), and
`predict` takes raw input as `stw predict` does and returns its table:
- dated series (ett, stock, stock-direction): a DataFrame of rows in the data file's own columns (for ETT:
  date, HUFL, ..., OT), at least lookback of them; a run on several files (one per ticker) takes a `file` column
  naming each row's file (`spy.us.txt`). It returns the forecast after the last row, as `stw predict --future`.
- texts (sms): a DataFrame with a `text` column (or a list of strings): each text's label and probabilities.
- clips and sensor recordings: a DataFrame with a `path` column of files or clip folders, as `--input` takes.

The classes are pickled by reference, so loading needs st-workbench installed (its version is pinned in the
model's requirements); nothing is inferred from the environment, which would start a subprocess per run.
"""

import contextlib
import json
import logging
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import mlflow.pyfunc
import pandas as pd
import torch
import yaml

from datamodules import StwDataModule
from datamodules.errors import DataError
from datamodules.timeseries import WindowedSeriesDataModule
from experiments.config import config_from_dict, datamodule_for, dump_config
from experiments.logged_run import no_progress_bar
from experiments.predict import PREDICTORS, classify_messages, load_module, reads_phase, with_trained_model
from experiments.tracking import Tag, package_versions

MODEL_NAME = "model"
FILE_COLUMN, TEXT_COLUMN, PATH_COLUMN = "file", "text", "path"
ARTIFACTS = ("checkpoint", "config", "preprocessing")


def write_rows(rows: pd.DataFrame, path: Path) -> Path:
    """Rows as a data file of the kind its name says, for the dataset's own reader."""
    if path.suffix == ".parquet":
        rows.to_parquet(path, index=False)
    else:
        rows.to_csv(path, index=False)
    return path


def series_files(datamodule: WindowedSeriesDataModule, rows: pd.DataFrame, folder: Path) -> list[Path]:
    """The rows written as the files `stw predict --input` would be given: one per value of the `file` column,
    or one named like the run's own data file."""
    if FILE_COLUMN not in rows.columns:
        return [write_rows(rows, folder / datamodule.source_files()[0].name)]
    files = []
    for name, part in rows.groupby(FILE_COLUMN, sort=False):
        if Path(str(name)).name != name or name in ("", ".", ".."):
            raise DataError(f"column {FILE_COLUMN!r}: {name!r} is not a file name; give names such as spy.us.txt")
        files.append(write_rows(part.drop(columns=FILE_COLUMN), folder / str(name)))
    return files


def texts_of(model_input: Any) -> list[str]:
    if isinstance(model_input, pd.DataFrame):
        if TEXT_COLUMN not in model_input.columns:
            raise DataError(f"this model classifies texts: give a DataFrame with a {TEXT_COLUMN!r} column, got "
                            f"columns {list(model_input.columns)}")  # fmt: skip
        model_input = model_input[TEXT_COLUMN]
    texts = [str(text) for text in model_input]
    if blank := [row for row, text in enumerate(texts) if not text.strip()]:
        raise DataError(f"texts {blank[:10]} are empty; give one non-empty message per text")
    return texts


def predict_raw(name: str, datamodule: StwDataModule, module: torch.nn.Module, model_input: Any) -> pd.DataFrame:
    """What `stw predict` returns for the same input (for dated series: with --future)."""
    with torch.inference_mode():
        if isinstance(datamodule, WindowedSeriesDataModule):
            with tempfile.TemporaryDirectory(prefix="stw-pyfunc-") as tmp:
                files = series_files(datamodule, pd.DataFrame(model_input), Path(tmp))
                return PREDICTORS[name](datamodule, module, files, future_only=True)
        if datamodule.input_kind == "tokens":
            return classify_messages(datamodule, module, texts_of(model_input))
        return PREDICTORS[name](datamodule, module, [Path(path) for path in pd.DataFrame(model_input)[PATH_COLUMN]])


class StwPyfuncModel(mlflow.pyfunc.PythonModel):
    """An st-workbench run's trained model and fitted preprocessing, predicting from raw input."""

    def load_context(self, context: Any) -> None:
        files = {name: Path(context.artifacts[name]) for name in ARTIFACTS}
        config = config_from_dict(yaml.safe_load(files["config"].read_text()))
        self.name = config["data"]["name"]
        preprocessing = json.loads(files["preprocessing"].read_text())
        self.datamodule, self.module = with_trained_model(datamodule_for(config), preprocessing, files["checkpoint"])

    def predict(self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None) -> pd.DataFrame:
        return predict_raw(self.name, self.datamodule, self.module, model_input)


def raw_tail(path: Path, rows: int) -> pd.DataFrame:
    frame = pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path)
    return frame.tail(rows).reset_index(drop=True)


# Rows of the example past the lookback: a log-return series loses its first row, and tickers' files may end on
# different days (only the dates they all have are used).
EXAMPLE_MARGIN = 5


def input_example(datamodule: StwDataModule) -> Any | None:
    """A small raw input the model accepts, taken from the run's own data files; None where inputs are files, or
    where the series was generated in memory (a plugin's synthetic data: there is no file to take rows from)."""
    if isinstance(datamodule, WindowedSeriesDataModule):
        files, rows = datamodule.source_files(), datamodule.options.lookback + EXAMPLE_MARGIN
        if not files:
            return None
        if len(files) == 1:
            return raw_tail(files[0], rows)
        return pd.concat([raw_tail(file, rows).assign(**{FILE_COLUMN: file.name}) for file in files])
    if datamodule.input_kind == "tokens":
        return pd.DataFrame({TEXT_COLUMN: list(datamodule.datasets["test"].texts[:3])})
    return None


def requirements() -> list[str]:
    """The packages the model runs with, pinned to the versions it was trained with."""
    python = f"{Tag.VERSION}python"
    return [
        f"{key.removeprefix(Tag.VERSION)}=={version}" for key, version in package_versions().items() if key != python
    ]


@contextlib.contextmanager
def quiet_mlflow() -> Iterator[None]:
    """save_model's advice (CloudPickle, integer columns) and its download progress bars, once per run, are noise:
    the classes are stw's own, pickled by reference, and the schema comes from the run's real data."""
    pyfunc_logger = logging.getLogger("mlflow.pyfunc")
    level = pyfunc_logger.level
    pyfunc_logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), no_progress_bar():
            warnings.simplefilter("ignore", UserWarning)
            yield
    finally:
        pyfunc_logger.setLevel(level)


def save_pyfunc(folder: Path, mlflow_model: Any, datamodule: StwDataModule, config: dict[str, Any],
                checkpoint: Path) -> None:  # fmt: skip
    """Write the run's pyfunc model to `folder`, with a signature from a real prediction on its input example by
    the checkpoint's module, loaded as the pyfunc model will load it."""
    from mlflow.models import infer_signature
    from mlflow.models.signature import ModelSignature
    from mlflow.types import ColSpec, Schema

    example = input_example(datamodule)
    module = load_module(checkpoint, datamodule.task) if example is not None else None
    if module is not None and reads_phase(module) and datamodule.row_clock is None:
        example = None  # a residual cycle's phase cannot be known for new rows (trading days): predict refuses
    if example is not None:
        output = predict_raw(config["data"]["name"], datamodule, module, example)
        with quiet_mlflow():
            signature = infer_signature(example, output)
    elif isinstance(datamodule, WindowedSeriesDataModule):
        # Generated in memory: its raw input is whatever its plugin's reader takes; or rows it cannot number.
        signature = None
    else:
        signature = ModelSignature(inputs=Schema([ColSpec("string", PATH_COLUMN)]))
    with tempfile.TemporaryDirectory(prefix="stw-model-files-") as tmp:
        config_file, preprocessing_file = Path(tmp) / "config.yaml", Path(tmp) / "preprocessing.json"
        config_file.write_text(dump_config(config))
        preprocessing_file.write_text(json.dumps(datamodule.state_dict()))
        with quiet_mlflow():
            mlflow.pyfunc.save_model(
                path=str(folder), python_model=StwPyfuncModel(), mlflow_model=mlflow_model, signature=signature,
                input_example=example, pip_requirements=requirements(),
                artifacts={"checkpoint": str(checkpoint), "config": str(config_file),
                           "preprocessing": str(preprocessing_file)},
            )  # fmt: skip
