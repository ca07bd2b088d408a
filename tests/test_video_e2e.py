"""Video end to end: `stw train` on moving-shapes (the seed's CNN -> LSTM -> Transformer on frames) and on
gestures, determinism, a tiny moving-shapes sweep, and a training step on real decoded HMDB51 frames.

Not here yet: a reproduce by run ID and a predict on clips, which belong with those commands (built separately).
"""

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from mlflow.tracking import MlflowClient

from datamodules import build_datamodule
from experiments.cli import main
from experiments.config import parse_run_args
from experiments.sweep.cli import build_plan, sweep_parser
from experiments.sweep.driver import run_sweep
from experiments.train import run_training
from lightning_modules.classify_training import ClassificationModule

pytestmark = pytest.mark.slow

# Few, small clips and one short epoch: the data protocol is tested in test_video_data, the models' shapes in
# test_video_models; here every piece runs together.
TINY_SHAPES = [
    "data.n_clips=6",
    "data.frame_size=16",
    "data.n_frames=6",
    "data.clip_len=4",
    "data.batch_size=4",
    "task.embed_dim=8",
    "stem.channels=4",
    "stem.layers=2",
    "trainer.max_epochs=1",
    "trainer.limit_train_batches=2",
    "trainer.limit_val_batches=1",
    "trainer.limit_test_batches=2",
]
TINY_SEED_PIPELINE = [
    "model.cnn.channels=8",
    "model.rnn.hidden_size=8",
    "model.transformer.d_model=8",
    "model.transformer.n_heads=2",
    "model.transformer.ff_dim=16",
    "model.transformer.n_layers=1",
]


@pytest.fixture(autouse=True)
def _cache_dir(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> None:
    """Generated clips and decoded frames go to a throwaway cache, never into the repository."""
    monkeypatch.setenv("STW_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "video-cache"))


def _only_run(client: MlflowClient, experiment: str):
    [run] = client.search_runs([client.get_experiment_by_name(experiment).experiment_id])
    return run


def test_stw_train_on_moving_shapes_with_the_seed_pipeline_leaves_a_finished_run(tracking_uri: str) -> None:
    argv = [
        "train",
        "--data",
        "moving-shapes",
        "--model",
        "cnn_rnn_transformer",
        *TINY_SHAPES,
        *TINY_SEED_PIPELINE,
        "--tracking-uri",
        tracking_uri,
        "--quiet",
    ]
    assert main(argv) == 0
    client = MlflowClient(tracking_uri)
    run = _only_run(client, "moving-shapes")
    assert run.info.status == "FINISHED" and run.data.params["model.family"] == "cnn_rnn_transformer"
    for name in ("test_acc", "test_f1", "test_f1_right", "test_f1_down", "baseline_majority_acc"):
        assert name in run.data.metrics, name
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"confusion_matrix.png", "per_class_report.csv", "preprocessing.json", "checkpoints"} <= artifacts


def test_the_same_video_config_twice_gives_identical_test_metrics(tracking_uri: str) -> None:
    # Every random draw is on: weights, shuffling, clip offsets, crops, input noise, dropout.
    config = parse_run_args(
        [
            "--data",
            "moving-shapes",
            "--model",
            "convlstm",
            *TINY_SHAPES,
            "task.input_noise=0.1",
            "data.crop=14",
            "seed=3",
        ]
    )
    first = run_training(config, tracking_uri, quiet=True).metrics
    second = run_training(config, tracking_uri, quiet=True).metrics
    test_metrics = sorted(name for name in first if name.startswith("test_"))
    assert "test_acc" in test_metrics
    assert [first[name] for name in test_metrics] == [second[name] for name in test_metrics]


def test_a_tiny_moving_shapes_sweep_completes_both_trials(tmp_path: Path) -> None:
    args = sweep_parser().parse_args(
        [
            "--data",
            "moving-shapes",
            "--trials",
            "2",
            "--families",
            "frame_avg,c3d",
            "--pruner",
            "none",
            "--storage",
            f"sqlite:///{tmp_path / 'optuna.db'}",
            "--tracking-uri",
            f"sqlite:///{tmp_path / 'mlflow.db'}",
            "--study",
            "tiny-video",
            "--quiet",
            *TINY_SHAPES,
            "data.crop=null",
        ]
    )  # 28-pixel crops need larger frames
    plan = build_plan(args)
    study, parent_id = run_sweep(plan)
    assert [trial.state.name for trial in study.trials] == ["COMPLETE", "COMPLETE"]
    client = MlflowClient(plan.tracking_uri)
    children = client.search_runs(
        [client.get_experiment_by_name("moving-shapes").experiment_id], "tags.`stw.role` = 'trial'"
    )
    assert len(children) == 2 and all("test_acc" in child.data.metrics for child in children)
    assert {child.data.tags["mlflow.parentRunId"] for child in children} == {parent_id}


def test_stw_train_on_gestures_classifies_held_out_people(tracking_uri: str) -> None:
    argv = [
        "train",
        "--data",
        "gestures",
        "--model",
        "gru",
        "model.hidden_size=8",
        "task.embed_dim=8",
        "data.stride=8",
        "trainer.max_epochs=1",
        "trainer.limit_train_batches=5",
        "trainer.limit_val_batches=2",
        "trainer.limit_test_batches=3",
        "--tracking-uri",
        tracking_uri,
        "--quiet",
    ]
    assert main(argv) == 0
    run = _only_run(MlflowClient(tracking_uri), "gestures")
    assert run.info.status == "FINISHED"
    assert {"test_acc", "test_f1_standby", "baseline_majority_acc"} <= set(run.data.metrics)


@pytest.mark.parametrize("family", ["cnn_rnn_transformer", "c3d", "convlstm"])
def test_a_training_step_on_real_decoded_hmdb51_frames_lowers_the_loss(family: str) -> None:
    datamodule = build_datamodule("hmdb51-samples", {"resize": 32, "clip_len": 4, "frame_stride": 4, "batch_size": 6})
    datamodule.setup()
    config = parse_run_args(
        [
            "--data",
            "hmdb51-samples",
            "--model",
            family,
            "data.resize=32",
            "data.clip_len=4",
            "stem.channels=4",
            "stem.layers=2",
            "task.embed_dim=8",
            "model.dropout=0.0",
            "task.embed_dropout=0.0",
            "task.head_dropout=0.0",
        ]
    )
    torch.manual_seed(0)
    module = ClassificationModule(config, datamodule.spec)
    x, y = next(iter(datamodule.train_dataloader()))
    assert x.shape == (6, 4, 3, 32, 32) and sorted(y.tolist()) == list(range(6))
    optimizer = torch.optim.Adam(module.parameters(), lr=1e-3)
    losses = []
    for _ in range(5):
        loss = F.cross_entropy(module(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]
