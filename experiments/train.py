"""One training run, start to finish: datamodule -> model -> LightningModule -> Trainer -> MLflow.

Everything that defines the run is in `config` (see experiments/config.py) and is logged with it: params,
per-epoch metrics, test and baseline metrics, reproducibility tags and artifacts. A crash or Ctrl-C still
closes the MLflow run (FAILED/KILLED) with whatever was logged, never leaving it RUNNING.
"""

import json
import logging
import os
import shutil
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import mlflow
import torch
from lightning.pytorch.callbacks import Callback, EarlyStopping, ModelCheckpoint
from lightning.pytorch.loggers import MLFlowLogger
from mlflow.tracking import MlflowClient

from experiments import plots, tracking
from experiments.config import datamodule_for, dump_config, flatten, metric_mode
from experiments.task_reports import TASK_REPORTS
from lightning_modules import TASKS

QUIET_ENV = "STW_QUIET"


@dataclass
class RunResult:
    run_id: str
    experiment_id: str
    metrics: dict[str, float]
    best_score: float  # the monitored validation metric at the best checkpoint


class EpochHistory(Callback):
    """Keeps per-epoch train/val losses for the learning-curve figure."""

    def __init__(self) -> None:
        self.history: dict[str, list[tuple[int, float]]] = {"train_loss": [], "val_loss": []}

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        for name, points in self.history.items():
            if name in trainer.callback_metrics:
                points.append((trainer.current_epoch, float(trainer.callback_metrics[name])))


def is_quiet(quiet: bool | None = None) -> bool:
    return bool(quiet) if quiet is not None else os.environ.get(QUIET_ENV, "") not in ("", "0")


def make_deterministic(seed: int) -> None:
    """Same config -> same numbers on CPU: one seed for Python, NumPy and torch, deterministic kernels."""
    pl.seed_everything(seed, workers=True, verbose=False)
    torch.use_deterministic_algorithms(True)


def _quiet_lightning() -> None:
    for name in ("lightning.pytorch", "lightning.fabric", "lightning"):
        logging.getLogger(name).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")
    warnings.filterwarnings("ignore", message=".*LeafSpec.*")


def build_trainer(
    config: dict[str, Any], logger: MLFlowLogger | None, checkpoint_dir: Path, callbacks: list[Callback], quiet: bool
) -> pl.Trainer:
    trainer_cfg = config["trainer"]
    monitor, mode = trainer_cfg["monitor"], metric_mode(trainer_cfg["monitor"])
    monitors: list[Callback] = [
        ModelCheckpoint(
            dirpath=checkpoint_dir, filename="best", monitor=monitor, mode=mode, save_top_k=1, save_weights_only=True
        )
    ]
    if trainer_cfg["patience"] > 0:
        monitors.append(EarlyStopping(monitor=monitor, mode=mode, patience=trainer_cfg["patience"]))
    return pl.Trainer(
        accelerator="cpu",
        devices=1,
        deterministic=True,
        logger=logger if logger is not None else False,
        callbacks=[*monitors, *callbacks],
        max_epochs=trainer_cfg["max_epochs"],
        gradient_clip_val=trainer_cfg["gradient_clip_val"] or None,
        limit_train_batches=trainer_cfg["limit_train_batches"],
        limit_val_batches=trainer_cfg["limit_val_batches"],
        limit_test_batches=trainer_cfg["limit_test_batches"],
        num_sanity_val_steps=0,
        log_every_n_steps=1,
        enable_progress_bar=trainer_cfg["progress"] and not quiet,
        enable_model_summary=not quiet,
    )


def run_tags(config: dict[str, Any], parent_run_id: str | None, extra: dict[str, str]) -> dict[str, str]:
    tags = {
        "stw.tool": "st-workbench",
        "stw.data": config["data"]["name"],
        "stw.family": config["model"]["family"],
        "stw.seed": str(config["seed"]),
        "stw.command": tracking.command_line(),
        **tracking.git_state(),
        **tracking.package_versions(),
        **extra,
    }
    if parent_run_id:
        tags["mlflow.parentRunId"] = parent_run_id
    return tags


def run_training(
    config: dict[str, Any],
    tracking_uri: str | None = None,
    *,
    quiet: bool | None = None,
    parent_run_id: str | None = None,
    callbacks: tuple[Callback, ...] = (),
    tags: dict[str, str] | None = None,
    run_name: str | None = None,
    finished_on: tuple[type[BaseException], ...] = (),
) -> RunResult:
    """Train, test and track one run. Exceptions in `finished_on` (e.g. a pruned trial) end the run FINISHED.

    The MLflow run is opened first, so a run that fails on its data or its config is still recorded,
    with the error as the `stw.error` tag.
    """
    quiet = is_quiet(quiet)
    if quiet:
        _quiet_lightning()
    tracking_uri = tracking.default_tracking_uri(tracking_uri)
    client = MlflowClient(tracking_uri)
    experiment = tracking.experiment_id(client, config["data"]["name"], tracking_uri)
    run_name = run_name or f"{config['model']['family']}-seed{config['seed']}"
    run_id = client.create_run(
        experiment, run_name=run_name, tags=run_tags(config, parent_run_id, tags or {})
    ).info.run_id
    client.log_batch(run_id, params=[mlflow.entities.Param(k, str(v)) for k, v in flatten(config).items()])
    workdir = Path(tempfile.mkdtemp(prefix="stw-run-"))
    history, status, parts = EpochHistory(), "FINISHED", {}
    try:
        make_deterministic(config["seed"])
        datamodule = parts["datamodule"] = datamodule_for(config)
        datamodule.prepare_data()
        datamodule.setup()
        fingerprint = parts["fingerprint"] = datamodule.fingerprint()
        client.set_tag(run_id, "stw.data_fingerprint", fingerprint["digest"])
        module = parts["module"] = TASKS[datamodule.task](config, datamodule.spec)
        logger = MLFlowLogger(tracking_uri=tracking_uri, run_id=run_id, synchronous=False)
        trainer = build_trainer(config, logger, workdir / "checkpoints", [history, *callbacks], quiet)
        started = time.perf_counter()
        trainer.fit(module, datamodule=datamodule)
        client.log_metric(run_id, "fit_seconds", time.perf_counter() - started)
        trainer.test(module, datamodule=datamodule, ckpt_path="best", verbose=not quiet)
    except finished_on:
        raise
    except (KeyboardInterrupt, SystemExit) as stop:
        # Lightning turns Ctrl-C during fit/test into sys.exit(1) raised while handling it; callers (a sweep,
        # the CLI) need the interrupt itself, so it is raised again in place of the exit.
        status = "KILLED"
        interrupt = stop if isinstance(stop, KeyboardInterrupt) else stop.__context__
        if not isinstance(interrupt, KeyboardInterrupt):
            interrupt = KeyboardInterrupt(f"exit {stop.code}")
        client.set_tag(run_id, "stw.error", f"stopped: {interrupt}")
        raise interrupt from None
    except BaseException as error:
        status = "FAILED"
        client.set_tag(run_id, "stw.error", f"{type(error).__name__}: {error}"[:5000])
        raise
    finally:
        _log_artifacts(client, run_id, config, parts, history, workdir, status)
        mlflow.flush_async_logging()
        client.set_terminated(run_id, status)
        shutil.rmtree(workdir, ignore_errors=True)
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}
    metrics["fit_seconds"] = client.get_run(run_id).data.metrics["fit_seconds"]
    best = trainer.checkpoint_callback.best_model_score
    return RunResult(run_id, experiment, metrics, float(best) if best is not None else float("nan"))


def _best_checkpoint(workdir: Path) -> str | None:
    best = workdir / "checkpoints" / "best.ckpt"
    return str(best) if best.exists() else None


def _log_artifacts(
    client: MlflowClient,
    run_id: str,
    config: dict[str, Any],
    parts: dict[str, Any],
    history: EpochHistory,
    workdir: Path,
    status: str,
) -> None:
    """Everything needed to inspect and rebuild the run; written even when training failed part-way."""
    files = {"config.yaml": dump_config(config), "requirements.txt": tracking.pip_freeze()}
    if "fingerprint" in parts:
        files["fingerprint.json"] = json.dumps(parts["fingerprint"], indent=2)
        files["preprocessing.json"] = json.dumps(parts["datamodule"].state_dict(), indent=2)
    for name, text in files.items():
        (workdir / name).write_text(text)
        client.log_artifact(run_id, str(workdir / name))
    if best := _best_checkpoint(workdir):
        client.log_artifact(run_id, best, artifact_path="checkpoints")
    if any(history.history.values()):
        plots.learning_curves(history.history, workdir / "learning_curves.png", _title(config))
        client.log_artifact(run_id, str(workdir / "learning_curves.png"))
    if status == "FINISHED" and "module" in parts:
        report = TASK_REPORTS[parts["datamodule"].task]
        for path in report(parts["datamodule"], parts["module"], workdir, _title(config)):
            client.log_artifact(run_id, str(path))


def _title(config: dict[str, Any]) -> str:
    return f"{config['model']['family']} on {config['data']['name']} (seed {config['seed']})"
