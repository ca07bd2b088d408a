"""Optimizer and learning-rate schedule from config, shared by every LightningModule."""

from dataclasses import dataclass
from typing import Any, Literal

import torch


@dataclass
class OptimConfig:
    """Optimizer and schedule.

    Args:
        optimizer: adam, adamw (decoupled weight decay) or sgd (with momentum).
        lr: learning rate.
        weight_decay: L2 penalty (adam, sgd) or decoupled decay (adamw).
        momentum: SGD momentum; ignored by adam and adamw.
        scheduler: none, cosine (to 0 over trainer.max_epochs), step (x gamma every step_size epochs) or plateau (x gamma when val_loss stalls for step_size epochs).
        step_size: epochs per step for the step and plateau schedules.
        gamma: factor for the step and plateau schedules.
    """

    optimizer: Literal["adam", "adamw", "sgd"] = "adam"
    lr: float = 1e-3
    weight_decay: float = 0.0
    momentum: float = 0.9
    scheduler: Literal["none", "cosine", "step", "plateau"] = "none"
    step_size: int = 3
    gamma: float = 0.5


def configure_optimizers(params: Any, cfg: OptimConfig, max_epochs: int) -> dict[str, Any]:
    """The dict Lightning's `configure_optimizers` returns."""
    if cfg.optimizer == "sgd":
        optimizer = torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    else:
        cls = torch.optim.AdamW if cfg.optimizer == "adamw" else torch.optim.Adam
        optimizer = cls(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    schedulers = {
        "none": None,
        "cosine": lambda: torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(max_epochs, 1)),
        "step": lambda: torch.optim.lr_scheduler.StepLR(optimizer, step_size=cfg.step_size, gamma=cfg.gamma),
        "plateau": lambda: torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimizer, factor=cfg.gamma, patience=cfg.step_size
        ),
    }
    make = schedulers[cfg.scheduler]
    if make is None:
        return {"optimizer": optimizer}
    return {"optimizer": optimizer, "lr_scheduler": {"scheduler": make(), "monitor": "val_loss", "interval": "epoch"}}
