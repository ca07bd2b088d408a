"""The LightningModule that trains a Classifier and scores it beside the majority-class baseline.

Shared by every classification dataset (text, video frames, keypoints): the datamodule's spec says what the input is
(input_kind), how many classes there are and their names, and how many training items each class has.
"""

import re
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any, Literal

import lightning.pytorch as pl
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchmetrics import Metric, MetricCollection
from torchmetrics.classification import (
    MulticlassAccuracy,
    MulticlassAUROC,
    MulticlassConfusionMatrix,
    MulticlassF1Score,
    MulticlassPrecision,
    MulticlassRecall,
)

from datamodules.errors import ConfigError
from datamodules.specs import ClassifySpec, as_spec
from lightning_modules.classify_model import Classifier
from lightning_modules.epoch_losses import EpochLosses
from lightning_modules.optim import OptimConfig, configure_optimizers
from lightning_modules.pooling import TemporalPooling


@dataclass
class ClassifyTask:
    """Classification stem width, head, loss and augmentation (a stem's own options are `stem.*`).

    Args:
        embed_dim: width of the stem's output (token embeddings, projected features), the encoder's input.
        embed_dropout: dropout on the stem's output.
        pooling: how the head pools the encoder's sequence over time: "last" real step, "mean", "max"
            (max-over-time, as in Kim 2014's text CNN), "attention" (learned weights over the steps) or "flatten"
            (every step side by side; fixed-length input such as clips only).
        head_dropout: dropout on the pooled vector before the Linear to class logits.
        label_smoothing: share of every target's probability spread evenly over all classes in the cross-entropy.
        class_weighting: "inverse" (the default) weights each class's loss by n / (classes * its training count),
            so a rare class counts as much as a common one; "none" weighs items equally. Inverse by default because
            real classification data is rarely balanced: unweighted, a 2-epoch cnn on sms (13% spam) called every
            message ham (spam F1 0); on balanced data every weight is 1. Not with data.sampler=weighted, which
            corrects the same imbalance by resampling.
        input_noise: std of Gaussian noise added to float training inputs (vectors, frames); token ids are never noised.
    """

    embed_dim: int = 64
    embed_dropout: float = 0.1
    pooling: TemporalPooling = "mean"
    head_dropout: float = 0.1
    label_smoothing: float = 0.0
    class_weighting: Literal["none", "inverse"] = "inverse"
    input_noise: float = 0.0


def check_imbalance_options(config: dict[str, Any]) -> None:
    """Refuse correcting the class imbalance twice: resampled batches are balanced already, and weighting them
    again by the original counts would favour the rare class as much as the raw data favoured the common one."""
    if config["task"]["class_weighting"] == "inverse" and config["data"].get("sampler") == "weighted":
        raise ConfigError(
            "data.sampler=weighted and task.class_weighting=inverse both correct the class imbalance, so together "
            "they over-correct it; keep one: add task.class_weighting=none to keep the weighted sampler, or "
            "data.sampler=none to keep the loss weights"
        )


def class_weights(class_weighting: str, spec: ClassifySpec) -> Tensor | None:
    """Inverse-frequency loss weights from the training class counts when asked for (mean weight 1)."""
    if class_weighting == "none":
        return None
    counts = spec.class_counts  # plain numbers: the module is also built on the meta device, which has no values
    if 0 in counts:
        empty = [name for name, count in zip(spec.class_names, counts, strict=True) if count == 0]
        raise ConfigError(
            f"classes {empty} have no training item, so inverse class weights are infinite; "
            "use task.class_weighting=none or add training items of those classes"
        )
    return torch.tensor([sum(counts) / (len(counts) * count) for count in counts], dtype=torch.float32)


class MatthewsCorrCoef(MulticlassConfusionMatrix):
    """Multiclass MCC (Gorodkin 2004) from the confusion matrix; 0 when undefined, as in scikit-learn.

    torchmetrics 1.9 smooths the undefined two-class cases instead, so a constant majority prediction scores about
    0.58 rather than 0 (torchmetrics issue #3355), which would flatter the majority baseline and a collapsed model.
    """

    def compute(self) -> Tensor:
        confmat = super().compute().double()
        true_counts, predicted_counts = confmat.sum(dim=1), confmat.sum(dim=0)
        correct, total = confmat.trace(), confmat.sum()
        covariance = correct * total - true_counts @ predicted_counts
        spread = (total**2 - predicted_counts @ predicted_counts) * (total**2 - true_counts @ true_counts)
        return (covariance / spread.sqrt() if spread > 0 else torch.zeros((), dtype=torch.float64)).float()


METRICS: dict[str, Callable[[int], Metric]] = {
    "acc": lambda n: MulticlassAccuracy(n, average="micro"),
    "precision": lambda n: MulticlassPrecision(n, average="macro"),
    "recall": lambda n: MulticlassRecall(n, average="macro"),
    "f1": lambda n: MulticlassF1Score(n, average="macro"),
    "f1_per_class": lambda n: MulticlassF1Score(n, average=None),
    "mcc": MatthewsCorrCoef,
    "auroc": lambda n: MulticlassAUROC(n, average="macro"),
}
VAL_METRICS = ("acc", "f1")
TEST_METRICS = tuple(METRICS)
BASELINE_METRICS = ("acc", "f1", "mcc")  # AUROC of a constant score is 0.5 by construction


def classification_metrics(prefix: str, num_classes: int, names: tuple[str, ...]) -> MetricCollection:
    """Metrics updated with class probabilities [B, C] and labels [B]."""
    return MetricCollection({name: METRICS[name](num_classes) for name in names}, prefix=prefix)


def metric_suffix(class_name: str) -> str:
    """A class name as it appears in a metric name: MLflow accepts letters, digits, _ - . only here."""
    return re.sub(r"[^\w.-]+", "_", class_name)


def per_class_scores(scores: dict[str, Tensor], class_names: list[str]) -> dict[str, Tensor]:
    """Per-class vectors become one scalar per class: test_f1_per_class -> test_f1_ham, test_f1_spam."""
    out = {}
    for key, value in scores.items():
        if key.endswith("_per_class"):
            base = key.removesuffix("_per_class")
            out.update(
                {f"{base}_{metric_suffix(name)}": score for name, score in zip(class_names, value, strict=False)}
            )
        else:
            out[key] = value
    return out


def majority_class(class_counts: list[int]) -> int:
    """The class with the most training items (the lowest index on a tie)."""
    return class_counts.index(max(class_counts))


@dataclass
class Predictions:
    """The test set as the model scored it: class probabilities [N, C] and true labels [N], in test order."""

    probs: Tensor
    labels: Tensor


class CollectPredictions(Metric):
    """Every test batch's probabilities and labels, gathered from all data-parallel processes on compute (in rank
    order, which is test order: each rank scores one contiguous block of the test set)."""

    full_state_update = False

    def __init__(self) -> None:
        super().__init__()
        self.add_state("probs", default=[], dist_reduce_fx="cat")
        self.add_state("labels", default=[], dist_reduce_fx="cat")

    def update(self, probs: Tensor, labels: Tensor) -> None:
        self.probs.append(probs.detach())
        self.labels.append(labels)

    def compute(self) -> Predictions:
        # Synced list states arrive as one tensor per state; unsynced ones are still the list of batches.
        probs, labels = (torch.cat(s) if isinstance(s, list) else s for s in (self.probs, self.labels))
        return Predictions(probs.cpu(), labels.cpu())


class ClassificationModule(pl.LightningModule):
    """Trains with cross-entropy; logs train_loss, val_loss/val_acc/val_f1 per epoch, then test and baseline metrics.

    Test metrics: accuracy, macro precision/recall/F1, F1 per class (test_f1_<class>), MCC and AUROC; the
    majority-class baseline (always the most frequent training class) is scored on the same test batches as
    baseline_majority_acc/f1/mcc. When spec.test_clips > 1 a test item is several clips (x [B, clips, ...])
    and its class probabilities are the clips' average. After testing, `test_predictions` holds what the model
    predicted, for reports. The whole run config and the spec (as plain data) are saved in the checkpoint's
    hyperparameters; `spec` may be that plain form.
    """

    Task = ClassifyTask
    sweep_metric = "val_f1"
    monitorable = ("val_loss", *(f"val_{name}" for name in VAL_METRICS))  # trainer.monitor must be one of them
    # Families that work on every classify dataset: variable-length text rules out linear/mlp, and the clip
    # families (c3d, convlstm) read frames only, so a video sweep picks them with --families.
    sweep_families = ("cnn", "rnn", "transformer", "cnn_rnn_transformer")

    def __init__(self, config: dict[str, Any], spec: ClassifySpec | dict[str, Any]) -> None:
        super().__init__()
        spec = as_spec(ClassifySpec, spec)
        # Plain data only, so torch.load(weights_only=True) reads the checkpoint; params are logged flat by the run.
        self.save_hyperparameters({"config": config, "spec": asdict(spec)}, logger=False)
        task = ClassifyTask(**config["task"])
        check_imbalance_options(config)
        self.task, self.optim = task, OptimConfig(**config["optim"])
        model_cfg = {k: v for k, v in config["model"].items() if k != "family"}
        self.model = Classifier(
            config["model"]["family"],
            model_cfg,
            spec=spec,
            embed_dim=task.embed_dim,
            embed_dropout=task.embed_dropout,
            pooling=task.pooling,
            head_dropout=task.head_dropout,
            stem_options=config.get("stem"),  # only input kinds whose stem has options have the section
        )
        self.loss_fn = nn.CrossEntropyLoss(
            weight=class_weights(task.class_weighting, spec), label_smoothing=task.label_smoothing
        )
        self.num_classes, self.class_names = spec.num_classes, list(spec.class_names)
        self.losses = EpochLosses()
        self.val_metrics = classification_metrics("val_", self.num_classes, VAL_METRICS)
        self.test_metrics = classification_metrics("test_", self.num_classes, TEST_METRICS)
        self.baseline_metrics = classification_metrics("baseline_majority_", self.num_classes, BASELINE_METRICS)
        self.majority_class = majority_class(spec.class_counts)
        self.test_clips = spec.test_clips
        self.max_epochs = config["trainer"]["max_epochs"]
        self.test_predictions: Predictions | None = None
        self.collected = CollectPredictions()

    def forward(self, x: Tensor) -> Tensor:
        return self.model(x)

    def predict_proba(self, x: Tensor, clips: int = 1) -> Tensor:
        """Class probabilities [B, C]; with clips > 1, x is [B, clips, ...] and the clips' probabilities are averaged."""
        items = x.flatten(0, 1) if clips > 1 else x
        return self(items).softmax(dim=-1).view(len(x), clips, -1).mean(dim=1)

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        x, y = batch
        if self.task.input_noise > 0 and x.is_floating_point():
            x = x + self.task.input_noise * torch.randn_like(x)
        loss = self.loss_fn(self(x), y)
        self.losses.add_train(self, loss, len(y))
        return loss

    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        x, y = batch
        logits = self(x)
        self.losses.add_val(self.loss_fn(logits, y), len(y))
        self.val_metrics.update(logits.softmax(dim=-1), y)

    def on_validation_epoch_end(self) -> None:
        self.losses.log_val(self)
        self.log_dict(self.val_metrics.compute())
        self.val_metrics.reset()

    def test_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        x, y = batch
        probs = self.predict_proba(x, self.test_clips)
        self.test_metrics.update(probs, y)
        majority = F.one_hot(torch.full_like(y, self.majority_class), self.num_classes).float()
        self.baseline_metrics.update(majority, y)
        self.collected.update(probs, y)

    def on_test_epoch_end(self) -> None:
        scores = per_class_scores(self.test_metrics.compute(), self.class_names)
        scores.update(self.baseline_metrics.compute())
        self.log_dict(scores)
        self.test_metrics.reset()
        self.baseline_metrics.reset()
        self.test_predictions = self.collected.compute()
        self.collected.reset()

    def configure_optimizers(self) -> dict[str, Any]:
        return configure_optimizers(self.parameters(), self.optim, self.max_epochs)


__all__ = ["ClassificationModule", "ClassifyTask", "MatthewsCorrCoef", "Predictions"]
