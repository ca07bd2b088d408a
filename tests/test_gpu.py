"""On a CUDA GPU: where `auto` trains, and a bf16-mixed run end to end. Skipped without one; benchmarks/gpu_check.py
runs these (`pytest -m gpu`) on a GPU machine."""

import math

import pytest
import torch
from lightning.pytorch import Trainer
from mlflow.tracking import MlflowClient

from experiments.config import parse_run_args
from experiments.devices import placement
from experiments.train import run_training

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]

SMALL = ["--data", "ett", "--model", "transformer", "data.lookback=48", "data.horizon=24", "trainer.max_epochs=1",
         "trainer.limit_train_batches=8", "trainer.limit_val_batches=4", "trainer.limit_test_batches=4"]  # fmt: skip


def test_auto_places_a_run_where_lightning_trains_it():
    trainer_config = parse_run_args([*SMALL, "trainer.devices=auto"])["trainer"]
    lightning = Trainer(accelerator="auto", devices="auto", logger=False, enable_progress_bar=False)
    where = placement(trainer_config)
    assert (
        (where.device, where.processes)
        == (lightning.strategy.root_device.type, lightning.world_size)
        == (
            "cuda",
            torch.cuda.device_count(),
        )
    )


def test_a_bf16_run_on_the_gpu_scores_and_records_its_device(tracking_uri):
    config = parse_run_args([*SMALL, "trainer.accelerator=cuda", "trainer.precision=bf16-mixed"])
    result = run_training(config, tracking_uri, quiet=True)
    tags = MlflowClient(tracking_uri).get_run(result.run_id).data.tags
    assert result.status == "FINISHED"
    assert tags["stw.device"] == "cuda" and tags["stw.devices"] == "1"
    assert tags["stw.device_name"] == torch.cuda.get_device_name()
    assert math.isfinite(result.metrics["test_mse"]) and math.isfinite(result.metrics["baseline_last_mse"])
