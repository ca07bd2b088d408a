"""The per-epoch train and val losses, logged once an epoch instead of once a step.

Lightning's `self.log` costs about 1 ms a call on these 2-core machines (its result bookkeeping), as much as a
small model's whole training step; a torchmetrics MeanMetric update costs about 60 us. The logged values are the
same batch-size-weighted epoch means that `self.log(..., on_epoch=True)` gives (benchmarks/ett_protocol.py,
framework overhead).
"""

import lightning.pytorch as pl
from torch import Tensor, nn
from torchmetrics import MeanMetric


class EpochLosses(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.train_loss, self.val_loss = MeanMetric(), MeanMetric()

    def add_train(self, module: pl.LightningModule, loss: Tensor, batch_size: int) -> None:
        """Accumulate a training step; on the epoch's last batch, log the epoch's mean as `train_loss`."""
        self.train_loss.update(loss.detach(), batch_size)
        # Without a Trainer (a step called directly) there is nothing to log to, as with Lightning's own self.log.
        if module._trainer is not None and module.trainer.is_last_batch:
            module.log("train_loss", self.train_loss.compute(), on_step=False, on_epoch=True)
            self.train_loss.reset()

    def add_val(self, loss: Tensor, batch_size: int) -> None:
        self.val_loss.update(loss.detach(), batch_size)

    def log_val(self, module: pl.LightningModule) -> None:
        """At the end of a validation epoch: log its mean as `val_loss`."""
        module.log("val_loss", self.val_loss.compute())
        self.val_loss.reset()
