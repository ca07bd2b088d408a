"""`stw train --data sms` end to end on the real SMS Spam Collection: what a text run leaves in MLflow, and determinism."""

import json

import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from experiments.cli import main
from experiments.config import parse_run_args
from experiments.train import run_training

# Short messages and a few batches keep this fast; the data protocol itself is tested in test_text_data.
SMALL = [
    "--data",
    "sms",
    "data.max_len=32",
    "task.embed_dim=16",
    "trainer.max_epochs=1",
    "trainer.limit_train_batches=10",
    "trainer.limit_val_batches=4",
    "trainer.limit_test_batches=6",
]
KIM_CNN = ["--model", "cnn", "model.kernel_sizes=[3,4,5]", "model.num_layers=1", "model.channels=8", "task.pooling=max"]

pytestmark = pytest.mark.slow


def _only_run(client: MlflowClient):
    runs = client.search_runs([client.get_experiment_by_name("sms").experiment_id])
    assert len(runs) == 1
    return runs[0]


def test_stw_train_on_sms_leaves_a_complete_classification_run(tracking_uri) -> None:
    assert main(["train", *SMALL, *KIM_CNN, "--tracking-uri", tracking_uri, "--quiet"]) == 0
    client = MlflowClient(tracking_uri)
    run = _only_run(client)
    assert run.info.status == "FINISHED"
    metrics, run_id = run.data.metrics, run.info.run_id
    for name in (
        "train_loss",
        "val_loss",
        "val_acc",
        "val_f1",
        "test_acc",
        "test_precision",
        "test_recall",
        "test_f1",
        "test_f1_ham",
        "test_f1_spam",
        "test_mcc",
        "test_auroc",
        "baseline_majority_acc",
        "baseline_majority_f1",
        "baseline_majority_mcc",
    ):
        assert name in metrics, name
    assert metrics["baseline_majority_mcc"] == 0.0
    artifacts = {a.path for a in client.list_artifacts(run_id)}
    assert {
        "config.yaml",
        "preprocessing.json",
        "learning_curves.png",
        "confusion_matrix.png",
        "per_class_report.csv",
        "checkpoints",
    } <= artifacts
    preprocessing = json.load(open(client.download_artifacts(run_id, "preprocessing.json")))
    assert preprocessing["tokenizer"]["scheme"] == "word" and preprocessing["class_names"] == ["ham", "spam"]
    report = pd.read_csv(client.download_artifacts(run_id, "per_class_report.csv")).set_index("class")
    assert report["support"].sum() == 6 * 64  # the six test batches the run was limited to
    assert report.loc["spam", "f1"] == pytest.approx(metrics["test_f1_spam"], abs=1e-5)
    # The baseline always says ham, so its accuracy is the share of ham among the same test items.
    assert metrics["baseline_majority_acc"] == pytest.approx(report.loc["ham", "support"] / report["support"].sum())


def test_same_text_config_twice_gives_identical_test_metrics(tracking_uri) -> None:
    config = parse_run_args([*SMALL, "--model", "gru", "model.bidirectional=true", "model.hidden_size=16", "seed=5"])
    first = run_training(config, tracking_uri, quiet=True).metrics
    second = run_training(config, tracking_uri, quiet=True).metrics
    test_metrics = sorted(name for name in first if name.startswith("test_"))
    assert "test_f1_spam" in test_metrics
    assert [first[name] for name in test_metrics] == [second[name] for name in test_metrics]


def test_a_short_default_cnn_run_on_imbalanced_sms_finds_spam(tracking_uri) -> None:
    """Inverse class weights are the default: unweighted, this run called every message ham (spam F1 0.0)."""
    config = parse_run_args(["--data", "sms", "--model", "cnn", "trainer.max_epochs=2"])
    assert config["task"]["class_weighting"] == "inverse"
    assert run_training(config, tracking_uri, quiet=True).metrics["test_f1_spam"] > 0
