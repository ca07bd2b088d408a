"""One training run, start to finish: datamodule -> model -> LightningModule -> Trainer -> tracked MLflow run.

Everything that defines the run is in `config` (see experiments/config.py) and is logged with it. The run is a
`TrackedRun` (experiments/tracking.py), which closes it FINISHED, FAILED or KILLED whatever happens here; this
file only says what to build, train, test and record.
"""

import contextlib
import json
import logging
import os
import tempfile
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import Callback, EarlyStopping, ModelCheckpoint
from lightning.pytorch.loggers import MLFlowLogger

from datamodules import StwDataModule
from datamodules.errors import ConfigError
from datamodules.windows import rank_seed
from experiments import plots
from experiments.config import datamodule_for, dump_config, flatten, metric_mode
from experiments.devices import Placement, check_placement, is_worker_process, placement_tags
from experiments.plugins import plugin_tags
from experiments.task_reports import TASK_REPORTS
from experiments.tracking import Tag, TrackedRun, pip_freeze, provenance_tags
from lightning_modules import TASKS

QUIET_ENV = "STW_QUIET"
# stw logs torchmetrics results, which sum over all data-parallel processes when computed: Lightning's advice to
# sync them again (sync_dist=True) does not apply, and would average what is already the whole set's value.
warnings.filterwarnings("ignore", message=".*when logging on epoch level in distributed setting.*")


@dataclass
class RunResult:
    run_id: str
    experiment_id: str
    metrics: dict[str, float]
    best_score: float  # the monitored validation metric at the best checkpoint
    status: str  # how the run closed: FINISHED, or FAILED when closing it failed (its stw.close_error says why)


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


class SeedPerRank(Callback):
    """Every process of a data-parallel run starts from the run's seed, so their weights agree; once training
    starts each rank but 0 (which draws as a single process would) takes its own stream, or every process would
    draw the same dropout masks and input noise for its share of a batch."""

    def __init__(self, seed: int) -> None:
        self.seed = seed

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.global_rank > 0:
            torch.manual_seed(rank_seed(self.seed, trainer.global_rank))


@contextlib.contextmanager
def quiet_lightning(quiet: bool) -> Iterator[None]:
    """Lightning's info logs and its data-loader advice are noise in sweeps and tests; restored afterwards."""
    if not quiet:
        yield
        return
    loggers = [logging.getLogger(name) for name in ("lightning.pytorch", "lightning.fabric", "lightning")]
    levels = [logger.level for logger in loggers]
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*does not have many workers.*")
        warnings.filterwarnings("ignore", message=".*LeafSpec.*")
        for logger in loggers:
            logger.setLevel(logging.WARNING)
        try:
            yield
        finally:
            for logger, level in zip(loggers, levels, strict=True):
                logger.setLevel(level)


@contextlib.contextmanager
def interrupts_as_keyboard_interrupt() -> Iterator[None]:
    """Lightning turns Ctrl-C during fit/test into sys.exit(1) raised while handling it; callers (a sweep, the
    CLI, the tracked run) need the interrupt itself, so it is raised again in place of the exit."""
    try:
        yield
    except SystemExit as stop:
        interrupt = stop.__context__
        if not isinstance(interrupt, KeyboardInterrupt):
            interrupt = KeyboardInterrupt(f"exit {stop.code}")
        raise interrupt from None


def build_trainer(config: dict[str, Any], where: Placement, logger: MLFlowLogger | None, checkpoint_dir: Path,
                  callbacks: list[Callback], quiet: bool) -> pl.Trainer:  # fmt: skip
    """The devices, strategy and precision are passed to Lightning as configured (check_placement vetted them)."""
    trainer_cfg = config["trainer"]
    monitor, mode = trainer_cfg["monitor"], metric_mode(trainer_cfg["monitor"])
    monitors: list[Callback] = [
        ModelCheckpoint(
            dirpath=checkpoint_dir, filename="best", monitor=monitor, mode=mode, save_top_k=1, save_weights_only=True
        )  # fmt: skip
    ]
    if trainer_cfg["patience"] > 0:
        monitors.append(EarlyStopping(monitor=monitor, mode=mode, patience=trainer_cfg["patience"]))
    return pl.Trainer(
        accelerator=trainer_cfg["accelerator"], devices=trainer_cfg["devices"], strategy=trainer_cfg["strategy"],
        num_nodes=trainer_cfg["num_nodes"], precision=trainer_cfg["precision"],
        # Every CPU kernel has a deterministic version; on a GPU one without it warns rather than stopping the run.
        deterministic=True if where.device == "cpu" else "warn",
        # Batch norm over the whole global batch, as one process computes it; torch syncs it on GPUs only, so on
        # CPU each process normalises its own share.
        sync_batchnorm=where.processes > 1 and where.device == "cuda",
        # The datamodules give each process its share of whole batches themselves, never padding with repeats.
        use_distributed_sampler=False,
        logger=logger if logger is not None else False,
        callbacks=[*monitors, SeedPerRank(config["seed"]), *callbacks],
        max_epochs=trainer_cfg["max_epochs"], gradient_clip_val=trainer_cfg["gradient_clip_val"] or None,
        limit_train_batches=trainer_cfg["limit_train_batches"], limit_val_batches=trainer_cfg["limit_val_batches"],
        limit_test_batches=trainer_cfg["limit_test_batches"], num_sanity_val_steps=0, log_every_n_steps=1,
        enable_progress_bar=trainer_cfg["progress"] and not quiet, enable_model_summary=not quiet,
    )  # fmt: skip


def run_tags(config: dict[str, Any], parent_run_id: str | None, extra: dict[str, str]) -> dict[str, str]:
    tags = {Tag.DATA: config["data"]["name"], Tag.FAMILY: config["model"]["family"], Tag.SEED: str(config["seed"]),
            **provenance_tags(), **plugin_tags(config["data"]["name"], [config["model"]["family"]]), **extra}  # fmt: skip
    if parent_run_id:
        tags[Tag.PARENT] = parent_run_id
    return tags


def default_run_name(config: dict[str, Any]) -> str:
    return f"{config['model']['family']}-seed{config['seed']}"


def run_training(
    config: dict[str, Any], tracking_uri: str | None = None, *, quiet: bool | None = None,
    parent_run_id: str | None = None, callbacks: tuple[Callback, ...] = (), tags: dict[str, str] | None = None,
    run_name: str | None = None, finished_on: tuple[type[BaseException], ...] = (),
) -> RunResult:  # fmt: skip
    """Train, test and track one run. Exceptions in `finished_on` (e.g. a pruned trial) end the run FINISHED,
    untested, and are raised on to the caller. The run is opened first, so a run that fails on its data or its
    config is still recorded, with the error as its `stw.error` tag; devices this machine cannot train on are
    refused before. Under data-parallel training only rank 0 returns (see serve_as_worker)."""
    quiet = is_quiet(quiet)
    where = check_placement(config)
    if is_worker_process():
        serve_as_worker(config, where, quiet)
    run_tags_ = run_tags(config, parent_run_id, {**placement_tags(where), **(tags or {})})
    with (
        tempfile.TemporaryDirectory(prefix="stw-run-") as tmp,  # outlives the run: closing reads the checkpoint
        TrackedRun(tracking_uri, config["data"]["name"], run_name or default_run_name(config), run_tags_,
                   flatten(config), finished_on) as run,
        quiet_lightning(quiet),
    ):  # fmt: skip
        workdir = Path(tmp)
        run.log_text(dump_config(config), "config.yaml")
        run.log_text(pip_freeze(), "requirements.txt")
        datamodule = seeded_datamodule(config)
        record_data(run, datamodule)
        module = build_module(config, datamodule)
        run.log_metric("model_parameters", sum(p.numel() for p in module.parameters()))
        history = EpochHistory()
        logger = MLFlowLogger(tracking_uri=run.tracking_uri, run_id=run.run_id, synchronous=False)
        trainer = build_trainer(config, where, logger, workdir / "checkpoints", [history, *callbacks], quiet)
        run.at_close("training artifacts", lambda status: log_training(run, history, workdir, config, status))
        run.at_close(
            "model figures", lambda status: log_model_figures(run, datamodule, module, workdir, config, status)
        )
        started = time.perf_counter()
        with interrupts_as_keyboard_interrupt():
            trainer.fit(module, datamodule=datamodule)
            run.log_metric("fit_seconds", time.perf_counter() - started)
            log_best_score(run, trainer, config)
            trainer.test(module, datamodule=datamodule, ckpt_path="best", verbose=not quiet)
        log_test_reports(run, datamodule, module, workdir, config)
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}
    metrics["fit_seconds"] = run.client.get_run(run.run_id).data.metrics["fit_seconds"]
    best = trainer.checkpoint_callback.best_model_score
    best_score = float(best) if best is not None else float("nan")
    return RunResult(run.run_id, run.experiment_id, metrics, best_score, run.status)


def log_best_score(run: TrackedRun, trainer: pl.Trainer, config: dict[str, Any]) -> None:
    """`best_<monitor>`: the monitored validation score of the checkpoint the run is tested with, which the last
    epoch's `<monitor>` is not once training went past its best; what a sweep's objective is, and ranks by."""
    best = trainer.checkpoint_callback.best_model_score
    if best is not None:
        run.log_metric(f"best_{config['trainer']['monitor']}", float(best))


def seeded_datamodule(config: dict[str, Any]) -> StwDataModule:
    """Seed everything, then the run's datamodule, set up; every process of a run starts here."""
    make_deterministic(config["seed"])
    datamodule = datamodule_for(config)
    datamodule.prepare_data()
    datamodule.setup()
    return datamodule


def serve_as_worker(config: dict[str, Any], where: Placement, quiet: bool) -> NoReturn:
    """A process Lightning's launcher re-ran for a rank other than 0 (experiments/devices.py): it trains and tests
    its share of every batch beside rank 0, then exits, as the rest of the command (the MLflow run, its logs,
    checkpoint and reports, what the command prints) belongs to rank 0. Its checkpoint folder is never written:
    ModelCheckpoint takes rank 0's, and only rank 0 saves."""
    with tempfile.TemporaryDirectory(prefix="stw-rank-") as tmp, quiet_lightning(quiet):
        datamodule = seeded_datamodule(config)
        module = build_module(config, datamodule)
        trainer = build_trainer(config, where, None, Path(tmp) / "checkpoints", [], quiet)
        trainer.fit(module, datamodule=datamodule)
        trainer.test(module, datamodule=datamodule, ckpt_path="best", verbose=False)
    raise SystemExit(0)


# Training with Adam holds four float32 numbers per parameter (weight, gradient, two moments), activations aside.
BYTES_PER_PARAMETER = 16


def machine_memory() -> int:
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def build_module(config: dict[str, Any], datamodule: Any) -> pl.LightningModule:
    """The task's LightningModule. It is first built on the meta device, which allocates nothing, to count its
    parameters: a model too large for this machine is refused with the figure instead of exhausting memory."""
    task = TASKS[datamodule.task]
    with torch.device("meta"):
        parameters = sum(p.numel() for p in task(config, datamodule.spec).parameters())
    need, have = parameters * BYTES_PER_PARAMETER, machine_memory()
    if need > have // 2:
        raise ConfigError(f"the model has {parameters:,} parameters, which need about {need / 2**30:.1f} GiB to train "
                          f"(weights, gradients and Adam's moments) on a machine with {have / 2**30:.1f} GiB; make it "
                          "smaller (model.hidden_size, model.d_model, model.num_layers, task.head=last or mean, "
                          "a shorter data.lookback)")  # fmt: skip
    return task(config, datamodule.spec)


def record_data(run: TrackedRun, datamodule: Any) -> None:
    """What the run read: its fingerprint (tag and file), its fitted preprocessing, and whether the dataset's
    test scores mean anything (a smoke-check dataset says why not)."""
    fingerprint = datamodule.fingerprint()
    run.set_tag(Tag.FINGERPRINT, fingerprint["digest"])
    run.log_text(json.dumps(fingerprint, indent=2), "fingerprint.json")
    run.log_text(json.dumps(datamodule.state_dict(), indent=2), "preprocessing.json")
    if reason := getattr(datamodule, "smoke_check", None):
        run.set_tag(Tag.SMOKE_CHECK, reason)


def best_checkpoint(workdir: Path) -> Path | None:
    best = workdir / "checkpoints" / "best.ckpt"
    return best if best.exists() else None


def log_training(run: TrackedRun, history: EpochHistory, workdir: Path, config: dict[str, Any], status: str) -> None:
    """The best checkpoint and the learning curves, from any run that trained at all (a failed one too)."""
    if best := best_checkpoint(workdir):
        run.log_file(best, "checkpoints")
    if any(history.history.values()):
        run.log_file(plots.learning_curves(history.history, workdir / "learning_curves.png", title(config)))


def log_model_figures(run: TrackedRun, datamodule: Any, module: pl.LightningModule, workdir: Path,
                      config: dict[str, Any], status: str) -> None:  # fmt: skip
    """Figures drawn from the model alone (a forecast plot), from the best checkpoint's weights, never from the
    last epoch's: also for a pruned run, which ends FINISHED untested."""
    report = TASK_REPORTS[datamodule.task]
    best = best_checkpoint(workdir)
    if status != "FINISHED" or report.from_model is None or best is None:
        return
    module.load_state_dict(torch.load(best, map_location="cpu", weights_only=True)["state_dict"])
    for path in report.from_model(datamodule, module.eval(), workdir, title(config)):
        run.log_file(path)


def log_test_reports(run: TrackedRun, datamodule: Any, module: pl.LightningModule, workdir: Path,
                     config: dict[str, Any]) -> None:  # fmt: skip
    """Reports built from what testing predicted (a confusion matrix); only a tested run has them."""
    report = TASK_REPORTS[datamodule.task]
    if report.from_test is not None:
        for path in report.from_test(datamodule, module, workdir, title(config)):
            run.log_file(path)


def title(config: dict[str, Any]) -> str:
    return f"{config['model']['family']} on {config['data']['name']} (seed {config['seed']})"
