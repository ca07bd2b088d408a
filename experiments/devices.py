"""Where a run trains: the device type and count a config resolves to on this machine, what is refused before any
work, and which process of a data-parallel run owns its MLflow run.

Multi-process runs use Lightning's `ddp` strategy (or `fsdp` on GPUs), whose launcher re-runs this process's
command line once per extra device, with LOCAL_RANK set. The launching process is global rank 0: it opens, logs to
and closes the one MLflow run and keeps everything the run's close steps read (learning curves, the best
checkpoint, test predictions) in its own memory. The re-launched processes only train and test their share of
the data (experiments/train.py, serve_as_worker). `ddp_spawn` is not offered: it trains in spawned processes
and hands back to the launching one only the final metrics and the checkpoint path.
"""

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from lightning.pytorch.accelerators import CUDAAccelerator, MPSAccelerator
from lightning.pytorch.utilities import rank_zero_only

from datamodules.errors import ConfigError
from experiments.tracking import Tag

# Lightning's own order for `auto` and `gpu` (lightning.fabric.utilities.device_parser._select_auto_accelerator).
GPU_BACKENDS = {"mps": MPSAccelerator, "cuda": CUDAAccelerator}
ACCELERATOR_DEVICES = {"cpu": "cpu", "cuda": "cuda", "mps": "mps"}  # accelerators that name their device type
# Precision and strategy -> the device types they run on; a setting missing here runs on every device.
PRECISION_DEVICES = {"16-mixed": ("cuda", "mps")}
STRATEGY_DEVICES = {"fsdp": ("cuda",)}
WHY_NOT = {
    "16-mixed": "float16 autocast with a gradient scaler is for GPUs (on cpu Lightning would silently train "
    "bf16-mixed instead); use bf16-mixed or 32-true",
    "fsdp": "Lightning's FSDP shards over CUDA devices only; use ddp",
}


@dataclass(frozen=True)
class Placement:
    device: str  # "cpu", "cuda" or "mps"
    processes: int  # devices per node x nodes: the data-parallel world size

    def describe(self) -> str:
        return f"{self.device} x{self.processes}"


def device_type(accelerator: str) -> str:
    """The device type `accelerator` trains on here: auto takes a GPU when there is one, gpu an MPS or CUDA one."""
    if accelerator in ACCELERATOR_DEVICES:
        return ACCELERATOR_DEVICES[accelerator]
    available = [name for name, backend in GPU_BACKENDS.items() if backend.is_available()]
    if accelerator == "gpu" and not available:
        raise ConfigError("trainer.accelerator=gpu: this machine has no CUDA or MPS GPU that torch can use "
                          "(torch.cuda.is_available() is False); use trainer.accelerator=auto or cpu")  # fmt: skip
    return available[0] if available else "cpu"


def placement(trainer: dict[str, Any]) -> Placement:
    """The device type and number of processes the `trainer` config section trains on, on this machine."""
    device = device_type(trainer["accelerator"])
    devices = trainer["devices"]
    if devices == "auto":
        devices = CUDAAccelerator.auto_device_count() if device == "cuda" else 1
    return Placement(device, devices * trainer["num_nodes"])


def device_refusal(trainer: dict[str, Any], device: str) -> str | None:
    """Why `trainer`'s precision or strategy cannot train on `device`, or None when they can."""
    for key, allowed in (("precision", PRECISION_DEVICES), ("strategy", STRATEGY_DEVICES)):
        value = trainer[key]
        if device not in allowed.get(value, (device,)):
            return (f"trainer.{key}={value} does not train on {device} (it needs {' or '.join(allowed[value])}): "
                    f"{WHY_NOT[value]}")  # fmt: skip
    return None


def check_device_options(trainer: dict[str, Any]) -> None:
    """Refuse what cannot train whatever the machine: a precision or strategy the named accelerator lacks."""
    device = ACCELERATOR_DEVICES.get(trainer["accelerator"])
    if device is not None and (reason := device_refusal(trainer, device)):
        raise ConfigError(reason)


_relaunch_allowed = False  # set while a command that is one run trains (see relaunchable)


@contextmanager
def relaunchable() -> Iterator[None]:
    """Around the run of `stw train` and `stw reproduce`: their command line is that one run, so re-running it once
    per device gives the run's processes. Anything else (a sweep, a notebook, pytest) would be re-run whole."""
    global _relaunch_allowed
    _relaunch_allowed = True
    try:
        yield
    finally:
        _relaunch_allowed = False


def check_placement(config: dict[str, Any]) -> Placement:
    """Refuse, before any work, what would fail or mislead once training started on this machine; return where
    the run trains."""
    trainer = config["trainer"]
    where = placement(trainer)
    if reason := device_refusal(trainer, where.device):
        raise ConfigError(f"{reason} (trainer.accelerator={trainer['accelerator']} is {where.device} here)")
    if where.device == "cuda":
        gpus = CUDAAccelerator.auto_device_count()
        if trainer["devices"] != "auto" and trainer["devices"] > gpus:
            raise ConfigError(f"trainer.devices={trainer['devices']}: this machine has {gpus} CUDA device(s); ask "
                              "for at most that many, or auto for all of them")  # fmt: skip
        if trainer["precision"].startswith("bf16") and not torch.cuda.is_bf16_supported():
            raise ConfigError(f"trainer.precision={trainer['precision']}: this GPU ({torch.cuda.get_device_name()}) "
                              "has no bfloat16; use 16-mixed or 32-true")  # fmt: skip
    if where.processes > 1:
        if config["data"]["batch_size"] < where.processes:
            raise ConfigError(f"data.batch_size={config['data']['batch_size']} is the global batch, split over the "
                              f"{where.processes} processes of trainer.devices x trainer.num_nodes: it must be at "
                              f"least {where.processes}")  # fmt: skip
        if not _relaunch_allowed:
            raise ConfigError(f"{where.processes} processes (trainer.devices x trainer.num_nodes) train through "
                              "Lightning's ddp launcher, which re-runs this command line once per device, so only "
                              "`stw train` and `stw reproduce` can; a sweep uses several devices with --workers N, "
                              "one trial per device")  # fmt: skip
    return where


def is_worker_process() -> bool:
    """Whether this process is a data-parallel rank other than global rank 0 (one Lightning's launcher re-ran, or
    a node other than the first), known before the Trainer exists: Lightning reads the rank from RANK, LOCAL_RANK
    or the cluster's variables at import; NODE_RANK names the node when the command is started on each one."""
    return rank_zero_only.rank != 0 or os.environ.get("NODE_RANK", "0") != "0"


def placement_tags(where: Placement) -> dict[str, str]:
    """stw.device and stw.devices, and for CUDA the GPU's model (numbers differ between GPU models too)."""
    tags = {Tag.DEVICE: where.device, Tag.DEVICES: str(where.processes)}
    if where.device == "cuda":
        tags[Tag.DEVICE_NAME] = torch.cuda.get_device_name()
    return tags


def worker_gpu(worker: int, workers: int, gpus: int) -> str | None:
    """The CUDA device a sweep worker trains on, as CUDA_VISIBLE_DEVICES: its own one when the machine has a GPU for
    every worker; None (nothing changes) for a lone worker, on CPU, or with fewer GPUs than workers."""
    return str(worker) if workers > 1 and gpus >= workers else None
