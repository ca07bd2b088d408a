"""`stw predict RUN_ID --input FILE --output FILE`: a logged run's model and preprocessing applied to new data.

The datamodule is rebuilt from the run's config.yaml and given the run's fitted preprocessing
(preprocessing.json: scalers, tokenizer, class names), so the new file is transformed exactly as the training
data was. The checkpoint is read with torch.load(weights_only=True): tensors and plain data only, so a
tampered file cannot run code. Lightning's saved hyper_parameters (the run config and the data spec) are
plain data, so they load too and rebuild the module the weights belong to. What a dataset's input file looks
like and what the output table holds is in experiments/predictors.py.
"""

import argparse
import pickle
import re
import zipfile
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch

from datamodules.errors import DataError
from experiments.config import datamodule_for
from experiments.predictors import PREDICTORS
from experiments.run_store import CHECKPOINT, CONFIG, PREPROCESSING, RunError, fetch_run
from lightning_modules import TASKS


def load_checkpoint(path: Path) -> dict[str, Any]:
    """A Lightning checkpoint as tensors and plain data; refuses anything that would need code to unpickle."""
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        wanted = re.search(r"GLOBAL (\S+)", str(error))
        detail = f" (it asks for {wanted.group(1)})" if wanted else ""
        raise RunError(f"{path.name}: refused: the file holds objects other than tensors and plain data{detail}, which "
                       "could run code when loaded; it is not a checkpoint stw wrote, so do not trust it") from None
    except (RuntimeError, EOFError, KeyError, zipfile.BadZipFile) as error:
        raise RunError(f"{path.name}: not a readable PyTorch checkpoint ({type(error).__name__}: {error})") from None
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


def predict_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="stw predict", description="Predict new data with a logged run's best checkpoint and the preprocessing it "
        "was trained with; writes a CSV. Input formats and output columns per dataset: experiments/predictors.py.")
    parser.add_argument("run_id", metavar="RUN_ID", help="MLflow run ID of a finished run (see `stw runs`)")
    parser.add_argument("--input", nargs="+", required=True, type=Path, metavar="FILE",
                        help="new data in the training data's format: ett one CSV; stock one price file per ticker; "
                        "sms a text file with one message per line; video datasets one video file or frame folder per "
                        "clip; gestures keypoint CSVs")
    parser.add_argument("--output", required=True, type=Path, metavar="FILE", help="CSV to write the predictions to")
    parser.add_argument("--tracking-uri", default=None, help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI or sqlite:///mlruns/mlflow.db)")
    return parser


def predict_main(argv: list[str]) -> int:
    args = predict_parser().parse_args(argv)
    for path in args.input:
        if not path.exists():  # a folder is one clip of frame images
            raise DataError(f"{path}: input not found; give the file (or clip folder) to predict with --input")
    with fetch_run(args.run_id, args.tracking_uri) as run:
        run.require(CONFIG, PREPROCESSING, CHECKPOINT)
        config = run.config()
        name = config["data"]["name"]
        if name not in PREDICTORS:
            raise RunError(f"run {run.run_id} trained on {name!r}, which stw predict does not handle yet; "
                           f"it handles {', '.join(sorted(PREDICTORS))}")
        datamodule = datamodule_for(config)
        datamodule.load_state_dict(run.json(PREPROCESSING))
        module = load_module(run.download(CHECKPOINT), datamodule.task)
        with torch.inference_mode():
            table = PREDICTORS[name](datamodule, module, args.input)
    table.to_csv(args.output, index=False)
    print(f"wrote {len(table)} rows to {args.output} (run {args.run_id} on {name})")
    return 0
