"""GPU check, one command for a machine with a CUDA GPU (about 5 minutes on one GPU and 16 cores; under 8):

    python benchmarks/gpu_check.py                      # on the GPU; writes benchmarks/results/gpu_check.json
    python benchmarks/gpu_check.py --device cpu         # dry run of every step on the CPU, tiny, in about a minute

1. runs the tests marked `gpu` (pytest -m gpu), which skip without CUDA;
2. trains a video model (the seed's frame CNN -> LSTM -> Transformer on moving-shapes) and a transformer
   forecaster (ETTh1) in bf16-mixed, twice on the device and once on the CPU, each run tracked like any other;
3. writes a JSON: the device, each model's training samples/s on the device and on the CPU, its test metrics, whether
   the two device runs gave identical metrics, and the largest metric difference between the device and the CPU
   (what `stw reproduce` across devices must tolerate; see reproduce.DEVICE_TOLERANCE).

It installs nothing: the environment must already hold a CUDA build of torch (the project's Makefile installs the
CPU build), the project (installed, or PYTHONPATH at the checkout) and ETTh1 ($STW_DATA_DIR, else ./data; fetched
when missing where the network allows). On a machine without a usable GPU it stops at once and says why.
"""

import argparse
import json
import math
import platform
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch import Callback, LightningModule, Trainer

from experiments.config import config_from_dict
from experiments.tracking import final_metrics
from experiments.train import run_training

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
PRECISION = "bf16-mixed"
FORECAST = {"data": {"name": "ett", "lookback": 96, "horizon": 24, "batch_size": 128},
            "model": {"family": "transformer", "d_model": 64, "n_layers": 2, "ff_dim": 128}}  # fmt: skip
VIDEO = {"data": {"name": "moving-shapes", "n_clips": 100, "frame_size": 32, "n_frames": 12, "clip_len": 8,
                  "batch_size": 32}, "model": {"family": "cnn_rnn_transformer"}}  # fmt: skip
# Per device: the workloads and how long they train. The dry run shrinks every one to seconds on the CPU.
SIZES: dict[str, dict[str, Any]] = {
    "cuda": {"epochs": 2, "train_batches": 40, "eval_batches": 1.0, "shrink": {}},
    "cpu": {"epochs": 2, "train_batches": 4, "eval_batches": 2,
            "shrink": {"ett": {"lookback": 48, "batch_size": 32}, "moving-shapes": {"n_clips": 6, "frame_size": 16,
                       "n_frames": 4, "clip_len": 4, "batch_size": 8}}},
}  # fmt: skip
WORKLOADS = {"video (cnn_rnn_transformer on moving-shapes)": VIDEO, "transformer forecaster (ETTh1)": FORECAST}


class TrainingThroughput(Callback):
    """Training samples per second over the steps after the first few (CUDA start-up, cuDNN picking kernels)."""

    warmup = 3

    def __init__(self) -> None:
        self.steps, self.samples, self.seconds, self.started = 0, 0, 0.0, 0.0

    def on_train_batch_start(self, trainer: Trainer, module: LightningModule, batch: Any, batch_idx: int) -> None:
        synchronize(module.device)
        self.started = time.perf_counter()

    def on_train_batch_end(self, trainer: Trainer, module: LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:  # fmt: skip
        synchronize(module.device)
        self.steps += 1
        if self.steps > self.warmup:
            self.samples += len(batch[1])
            self.seconds += time.perf_counter() - self.started

    @property
    def per_second(self) -> float:
        return self.samples / self.seconds if self.seconds else math.nan


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def device_facts(device: str) -> dict[str, Any]:
    facts = {"device": device, "torch": torch.__version__, "cuda": torch.version.cuda, "cpu": platform.processor()
             or platform.machine(), "cpu_threads": torch.get_num_threads()}  # fmt: skip
    if device == "cuda":
        facts.update(name=torch.cuda.get_device_name(0), gpus=torch.cuda.device_count(),
                     bf16=torch.cuda.is_bf16_supported())  # fmt: skip
    return facts


def why_no_gpu() -> str | None:
    if torch.version.cuda is None:
        return (f"this torch ({torch.__version__}) is a CPU build; install the CUDA build of the same version, "
                "or run the dry run with --device cpu")  # fmt: skip
    if not torch.cuda.is_available():
        return "torch cannot use a CUDA GPU here (no GPU, or no driver for this CUDA build)"
    return None


def run_config(workload: dict[str, Any], device: str, accelerator: str) -> dict[str, Any]:
    """The workload sized for `device` (the machine under test), trained on `accelerator`."""
    size = SIZES[device]
    data = {**workload["data"], **size["shrink"].get(workload["data"]["name"], {})}
    trainer = {"accelerator": accelerator, "precision": PRECISION, "max_epochs": size["epochs"], "patience": 0,
               "limit_train_batches": size["train_batches"], "limit_val_batches": size["eval_batches"],
               "limit_test_batches": size["eval_batches"], "progress": False}  # fmt: skip
    return config_from_dict({**workload, "data": data, "trainer": trainer})


@dataclass
class Measured:
    samples_per_s: float
    fit_seconds: float
    metrics: dict[str, float] = field(default_factory=dict)


def train(config: dict[str, Any], tracking_uri: str) -> Measured:
    meter = TrainingThroughput()
    result = run_training(config, tracking_uri, quiet=True, callbacks=(meter,), tags={"stw.benchmark": "gpu_check"})
    return Measured(meter.per_second, result.metrics["fit_seconds"], final_metrics(result.metrics))


def largest_difference(one: dict[str, float], other: dict[str, float]) -> float:
    return max((abs(one[name] - other[name]) for name in one.keys() & other.keys()), default=math.nan)


def check_workload(workload: dict[str, Any], device: str, tracking_uri: str) -> dict[str, Any]:
    first, second = (train(run_config(workload, device, device), tracking_uri) for _ in range(2))
    on_cpu = train(run_config(workload, device, "cpu"), tracking_uri)
    return {
        "device_run": asdict(first),
        "cpu_run": asdict(on_cpu),
        "speedup": first.samples_per_s / on_cpu.samples_per_s,
        "repeat_identical": first.metrics == second.metrics,
        "repeat_largest_difference": largest_difference(first.metrics, second.metrics),
        "device_vs_cpu_largest_difference": largest_difference(first.metrics, on_cpu.metrics),
    }


def gpu_tests(timeout: float) -> dict[str, Any]:
    command = [sys.executable, "-m", "pytest", "-q", "-m", "gpu", "-p", "no:cacheprovider", str(REPO / "tests")]
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=timeout, check=False)
    lines = done.stdout.strip().splitlines()
    return {"exit_code": done.returncode, "summary": lines[-1] if lines else done.stderr[-500:]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", choices=["cuda", "cpu"], default="cuda",
                        help="cuda: the check; cpu: a tiny dry run of every step on the CPU (default: cuda)")  # fmt: skip
    parser.add_argument("--output", type=Path, default=None,
                        help="JSON to write (default: benchmarks/results/gpu_check.json, gpu_check_dry_run.json for cpu)")  # fmt: skip
    parser.add_argument("--tracking-uri", default=None, help="MLflow store for the runs (default: a throwaway one)")
    args = parser.parse_args(argv)
    if args.device == "cuda" and (reason := why_no_gpu()):
        print(f"gpu_check: {reason}", file=sys.stderr)
        return 2
    output = args.output or RESULTS / ("gpu_check.json" if args.device == "cuda" else "gpu_check_dry_run.json")
    started = time.perf_counter()
    report: dict[str, Any] = {"date": time.strftime("%Y-%m-%d %H:%M"), "precision": PRECISION,
                              **device_facts(args.device), "gpu_tests": gpu_tests(timeout=180)}  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="stw-gpu-check-") as tmp:
        tracking_uri = args.tracking_uri or f"sqlite:///{Path(tmp) / 'mlflow.db'}"
        report["workloads"] = {name: check_workload(workload, args.device, tracking_uri)
                               for name, workload in WORKLOADS.items()}  # fmt: skip
    report["seconds"] = time.perf_counter() - started
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))
    return 0 if report["gpu_tests"]["exit_code"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
