"""One config per run: data, model, task, optim, trainer and seed (and stem, for inputs whose stem has options),
checked against the registries.

The parser is built for the chosen dataset and model family, so `stw train --data ett --model lstm --help`
lists exactly the options that run has, with their docs, and a misspelt key is an error that names the
valid ones. The resolved config is a plain nested dict: it is saved whole with every run and checkpoint,
and `config_from_dict` turns it back into the same run.
"""

import argparse
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

import yaml
from jsonargparse import ArgumentParser, Namespace

from datamodules import DATASETS, StwDataModule, build_datamodule, dataset_class
from datamodules.errors import ConfigError
from experiments.devices import check_device_options
from lightning_modules import TASKS
from lightning_modules.families import FAMILIES, resolve_family
from lightning_modules.optim import OptimConfig
from lightning_modules.stems import stem_options
from lightning_modules.val_windows import WINDOWS_METRIC

DEFAULT_DATA, DEFAULT_MODEL = "ett", "linear"


@dataclass
class TrainerConfig:
    """Training loop.

    Args:
        max_epochs: upper bound on epochs.
        patience: stop after this many epochs without a better val_loss; 0 turns early stopping off.
        gradient_clip_val: clip the gradient norm to this value; 0 turns clipping off.
        limit_train_batches: fraction (float) or count (int) of train batches per epoch, for quick checks.
        limit_val_batches: fraction or count of val batches per epoch.
        limit_test_batches: fraction or count of test batches.
        progress: show Lightning's progress bar.
        monitor: validation metric that picks the best checkpoint and drives early stopping (and a sweep's objective).
        accelerator: Lightning accelerator: auto (a GPU when there is one, else the CPU), cpu, gpu, cuda or mps.
            CPU runs repeat bit for bit; a run on another device type or count reproduces within a tolerance.
        devices: devices per node (an int), or auto for all GPUs (one process on CPU). More than one trains data
            parallel, one process per device: data.batch_size stays the global batch, each process takes its share
            of every batch and of the evaluation sets, and the test metrics count every test item once. The
            limit_*_batches count each process's batches. Batch norm spans the global batch on GPUs only (torch
            cannot sync it on CPU, where each process normalises its own share).
        strategy: Lightning strategy: auto (ddp for several devices), ddp, or fsdp (sharded weights, CUDA only).
            Several processes are started by re-running the `stw train` command once per device; ddp_spawn is not
            offered: its spawned processes would hand back the final metrics but not the curves, best score and
            test predictions the run records.
        num_nodes: machines, each running the same command with its NODE_RANK (and MASTER_ADDR/MASTER_PORT) set
            and $TMPDIR on a filesystem they share (every node tests the best checkpoint that node 0 writes there).
        precision: Lightning precision: 32-true, bf16-mixed (CPU or a bf16 GPU) or 16-mixed (GPUs only).
    """

    max_epochs: int = 10
    patience: int = 3
    gradient_clip_val: float = 0.0
    limit_train_batches: float | int = 1.0
    limit_val_batches: float | int = 1.0
    limit_test_batches: float | int = 1.0
    progress: bool = True
    monitor: str = "val_loss"
    accelerator: Literal["auto", "cpu", "gpu", "cuda", "mps"] = "auto"
    devices: int | Literal["auto"] = 1
    strategy: Literal["auto", "ddp", "fsdp"] = "auto"
    num_nodes: int = 1
    precision: Literal["32-true", "bf16-mixed", "16-mixed"] = "32-true"


MAXIMIZED = ("acc", "f1", "mcc", "auroc", "precision", "recall", "skill", "hit_rate", "ic", "sharpe", "total_return")


def metric_mode(name: str) -> str:
    """ "max" for scores where higher is better (accuracy, F1, ...), else "min" (losses, errors)."""
    return "max" if re.search(rf"(^|_)({'|'.join(MAXIMIZED)})(_|$)", name) else "min"


def _names(argv: list[str], files: list[dict[str, Any]]) -> tuple[str, str]:
    """Dataset and family from `--data X`/`--model X` (or their full keys `--data.name`/`--model.family`, which
    help lists), else from config files, else the defaults: they choose which options the parser knows."""
    pre = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    pre.add_argument("--data", "--data.name", dest="data")
    pre.add_argument("--model", "--model.family", dest="model")
    known, _ = pre.parse_known_args(argv)
    data, model = known.data, known.model
    for content in files:
        data = data or content.get("data", {}).get("name")
        model = model or content.get("model", {}).get("family")
    return data or DEFAULT_DATA, model or DEFAULT_MODEL


def run_parser(data: str, model: str, prog: str = "stw train") -> ArgumentParser:
    """The jsonargparse parser for one dataset and one family (aliases set their family's defaults)."""
    data_cls = dataset_class(data)
    family, alias_defaults = resolve_family(model)
    parser = ArgumentParser(
        prog=prog,
        exit_on_error=False,
        default_meta=False,
        description="Train one model on one dataset; every run is tracked in MLflow.",
    )
    parser.add_argument(
        "--config", action="config", help="YAML file with any of the keys below (e.g. a saved config.yaml)."
    )
    parser.add_argument(
        "--data.name",
        default=data,
        choices=sorted(DATASETS),
        help=f"dataset; registered: {', '.join(sorted(DATASETS))}",
    )
    parser.add_class_arguments(data_cls.Options, "data", skip={"shuffle_seed"})  # the run's seed is passed down
    parser.add_argument("--model.family", default=model, help="model family or alias (e.g. lstm = rnn with cell lstm)")
    parser.add_class_arguments(FAMILIES[family].config, "model")
    parser.set_defaults({f"model.{k}": v for k, v in alias_defaults.items()})
    parser.add_class_arguments(TASKS[data_cls.task].Task, "task")
    # A `stem` section only where the dataset's input kind has stem options (frames); other runs have none.
    stem = stem_options(data_cls.input_kind)
    if stem is not None:
        parser.add_class_arguments(stem, "stem")
    parser.add_class_arguments(OptimConfig, "optim")
    parser.add_class_arguments(TrainerConfig, "trainer")
    parser.add_argument("--seed", type=int, default=0, help="seeds weights, shuffling and noise; same seed -> same run")
    return parser


def _valid_keys(parser: ArgumentParser) -> list[str]:
    return sorted(_flatten(parser.get_defaults().as_dict()))


def _flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        elif key != "config":
            flat[f"{prefix}{key}"] = value
    return flat


def flatten(config: dict[str, Any]) -> dict[str, Any]:
    """{"model": {"hidden_size": 8}} -> {"model.hidden_size": 8}; used for MLflow params."""
    return _flatten(config)


def _explain(parser: ArgumentParser, error: Exception) -> ConfigError:
    message = str(error)
    if re.search(r"unrecognized arguments|does not accept|No action for key|not accept", message):
        message += "\nvalid keys: " + ", ".join(_valid_keys(parser))
    return ConfigError(message)


def _to_dict(namespace: Namespace) -> dict[str, Any]:
    config = namespace.as_dict()
    config.pop("config", None)
    return config


def read_config_file(path: str | Path) -> dict[str, Any]:
    """A YAML run config as a dict; a missing or unreadable file, bad YAML, YAML tags (safe_load refuses them) or a
    file that is not a mapping of sections is a ConfigError naming the file."""
    path = Path(path)
    try:
        content = yaml.safe_load(path.read_text())
    except OSError as error:
        raise ConfigError(f"--config {path}: cannot read it ({error.strerror or error}); give the path of a YAML file, "
                          "e.g. a run's saved config.yaml") from None  # fmt: skip
    except yaml.YAMLError as error:
        raise ConfigError(f"--config {path}: not valid YAML (tags such as !!python/... are refused): {error}") from None
    if content is None:
        return {}
    if not isinstance(content, dict):
        raise ConfigError(f"--config {path}: holds a {type(content).__name__}, not a mapping of sections "
                          "(data:, model:, task:, optim:, trainer:, seed:)")  # fmt: skip
    return content


def parse_run_args(argv: list[str], prog: str = "stw train") -> dict[str, Any]:
    """CLI words -> resolved, checked config. Plain `key=value` words work like `--key=value`."""
    argv = [f"--{word}" if re.match(r"^[A-Za-z_][\w.]*=", word) else word for word in argv]
    files = [read_config_file(argv[i + 1]) for i, w in enumerate(argv[:-1]) if w == "--config"]
    data, model = _names(argv, files)
    parser = run_parser(data, model, prog)
    argv = joined_lists(_drop_name_options(argv), list_keys(parser))
    try:
        return check_config(_to_dict(parser.parse_args(argv)))
    except argparse.ArgumentError as error:
        raise _explain(parser, error) from None


def list_keys(parser: ArgumentParser) -> set[str]:
    """The keys whose type is a list (or an optional list), from the type jsonargparse recorded for each option."""
    hints = {action.dest: getattr(action, "_typehint", None) for action in parser._actions}
    return {key for key, hint in hints.items() if any(get_origin(h) is list for h in (hint, *get_args(hint)))}


def joined_lists(argv: list[str], keys: set[str]) -> list[str]:
    """List options in the forms people write, as the one jsonargparse reads: `--data.paths a.txt b.txt` (the
    words up to the next --option) and `data.paths=a.txt,b.txt` become `--data.paths=["a.txt", "b.txt"]`. A value
    already in brackets (`data.paths=[a,b]`) or null is left as it is."""
    out, i = [], 0
    while i < len(argv):
        key, sep, value = argv[i].partition("=")
        i += 1
        if not key.startswith("--") or key[2:] not in keys:
            out.append(argv[i - 1])
            continue
        words = [value] if sep else []
        while not sep and i < len(argv) and not argv[i].startswith("--"):
            words.append(argv[i])
            i += 1
        if not words or (len(words) == 1 and (words[0].startswith("[") or words[0] in ("null", "None"))):
            out.append(f"{key}={words[0]}" if words else key)  # jsonargparse reads it, or names what is missing
            continue
        items = [item for word in words for item in word.split(",") if item]
        out.append(f"{key}={json.dumps(items)}")
    return out


def _fraction_or_count(value: float | int) -> bool:
    """As Lightning reads a batch limit: a fraction in (0, 1], or a whole number of batches (4 or 4.0)."""
    return 0 < value <= 1 or (value > 1 and float(value).is_integer())


# Config key -> (a check its value must pass, what is valid): refused before any data is read or run opened.
BOUNDS: dict[str, tuple[Callable[[Any], bool], str]] = {
    "seed": (lambda v: 0 <= v < 2**32, "an integer from 0 to 2**32 - 1"),
    "data.seed": (lambda v: 0 <= v < 2**32, "an integer from 0 to 2**32 - 1"),
    "data.batch_size": (lambda v: v >= 1, "at least 1"),
    "trainer.max_epochs": (lambda v: v >= 1, "at least 1"),
    "trainer.patience": (lambda v: v >= 0, "0 (no early stopping) or more"),
    "trainer.gradient_clip_val": (lambda v: v >= 0, "0 (no clipping) or more"),
    "trainer.limit_train_batches": (_fraction_or_count, "a fraction in (0, 1] or a count of at least 1"),
    "trainer.limit_val_batches": (_fraction_or_count, "a fraction in (0, 1] or a count of at least 1"),
    "trainer.limit_test_batches": (_fraction_or_count, "a fraction in (0, 1] or a count of at least 1"),
    "trainer.devices": (lambda v: v == "auto" or v >= 1, "a count of at least 1, or auto"),
    "trainer.num_nodes": (lambda v: v >= 1, "at least 1"),
    "optim.lr": (lambda v: v > 0, "greater than 0"),
    "optim.weight_decay": (lambda v: v >= 0, "0 or more"),
    "optim.gamma": (lambda v: v > 0, "greater than 0"),
    "optim.step_size": (lambda v: v >= 1, "at least 1"),
    "task.val_windows": (lambda v: v >= 1, "at least 1 (1: one validation score over the whole period)"),
    "task.cycle_len": (
        lambda v: v == "season" or (isinstance(v, int) and (v == 0 or v >= 2)),
        "0 (off), a cycle of at least 2 steps (24: daily, hourly rows) or season (the data's)",
    ),
}


def check_config(config: dict[str, Any]) -> dict[str, Any]:
    """Refuse values no run can use, naming the key, the value and what is valid; then build every options
    dataclass once, so their own checks (a dataset's, a family's) also run before any work."""
    flat = flatten(config)
    for key, (valid, what) in BOUNDS.items():
        if key in flat and not valid(flat[key]):
            raise ConfigError(f"{key}={flat[key]!r} is not valid: it must be {what}")
    task = TASKS[dataset_class(config["data"]["name"]).task]
    monitorable = sorted(task.monitorable)
    if config["trainer"]["monitor"] not in monitorable:
        raise ConfigError(f"trainer.monitor={config['trainer']['monitor']!r} is not a metric this task logs on "
                          f"validation; choose one of: {', '.join(monitorable)}")  # fmt: skip
    if config["trainer"]["monitor"] == WINDOWS_METRIC and flat.get("task.val_windows", 1) < 2:
        raise ConfigError(f"trainer.monitor={WINDOWS_METRIC} needs task.val_windows=K with K >= 2 validation blocks "
                          f"to average; got task.val_windows={flat.get('task.val_windows', 1)}")  # fmt: skip
    check_device_options(config["trainer"])
    family, overrides = resolve_family(config["model"]["family"])
    FAMILIES[family].config(**{**overrides, **{k: v for k, v in config["model"].items() if k != "family"}})
    options = {k: v for k, v in config["data"].items() if k != "name"}
    resolved = dataset_class(config["data"]["name"]).Options(**options)
    # The options as the dataset resolved them (stock tickers named by their paths, a table's path made
    # absolute), so the saved and shown config says what the run read.
    config["data"].update({key: getattr(resolved, key) for key in options})
    return config


def _drop_name_options(argv: list[str]) -> list[str]:
    """`--data X`/`--model X` chose the parser; the parser itself sees them as data.name/model.family."""
    out, skip = [], False
    for i, word in enumerate(argv):
        if skip:
            skip = False
            continue
        if word in ("--data", "--model") and i + 1 < len(argv):
            out.append(f"{word}.{'name' if word == '--data' else 'family'}={argv[i + 1]}")
            skip = True
        elif word.startswith(("--data=", "--model=")):
            key, value = word.split("=", 1)
            out.append(f"{key}.{'name' if key == '--data' else 'family'}={value}")
        else:
            out.append(word)
    return out


def config_from_dict(config: dict[str, Any]) -> dict[str, Any]:
    """Validate and complete a (possibly partial) config dict, e.g. a saved config or a sweep trial's."""
    data = config.get("data", {}).get("name", DEFAULT_DATA)
    model = config.get("model", {}).get("family", DEFAULT_MODEL)
    parser = run_parser(data, model)
    try:
        return check_config(_to_dict(parser.parse_object(config)))
    except argparse.ArgumentError as error:
        raise _explain(parser, error) from None


def dump_config(config: dict[str, Any]) -> str:
    return yaml.safe_dump(config, sort_keys=False)


def datamodule_for(config: dict[str, Any]) -> StwDataModule:
    """The run's datamodule. `data.seed` seeds what the data is (generated clips, random splits); the run's `seed`
    seeds only its training order and augmentation (`shuffle_seed`), so seed-to-seed spread measures training."""
    options = {k: v for k, v in config["data"].items() if k != "name"}
    return build_datamodule(config["data"]["name"], {**options, "shuffle_seed": config["seed"]})
