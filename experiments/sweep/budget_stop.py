"""The Lightning callback that enforces a sweep's and a trial's time budget (rules in budget.py)."""

import time
from typing import Any

import optuna
from lightning.pytorch.callbacks import Callback

from experiments.sweep.budget import SWEEP_CUT, TRIAL_CUT


class BudgetStop(Callback):
    """Sets `trainer.should_stop` at the first training batch or validation past the earlier of the two stop times
    (wall-clock time.time(), so spawned workers share the sweep's); Lightning then validates once more, and the
    run goes on to test its best checkpoint. `cut_by` names the budget that stopped it. A trial stopped before any
    validation left a checkpoint has nothing to test: it is pruned, saying why."""

    def __init__(self, sweep_stop: float | None, trial_stop: float | None) -> None:
        self.stops = sorted((at, why) for at, why in ((sweep_stop, SWEEP_CUT), (trial_stop, TRIAL_CUT)) if at)
        self.cut_by: str | None = None
        self.cut_at: float | None = None  # time.time() of the cut: what closing the trial took is measured from it
        self.train_end_at: float | None = None
        self.last_validation_s = 0.0
        self._validation_start = 0.0

    def _check(self, trainer: Any) -> None:
        if self.cut_by is None and self.stops and time.time() >= self.stops[0][0]:
            self.cut_by, self.cut_at = self.stops[0][1], time.time()
            trainer.should_stop = True

    def on_train_batch_end(self, trainer: Any, *args: Any) -> None:
        self._check(trainer)

    def on_validation_start(self, trainer: Any, pl_module: Any) -> None:
        self._validation_start = time.time()

    def on_validation_end(self, trainer: Any, pl_module: Any) -> None:
        self.last_validation_s = time.time() - self._validation_start
        self._check(trainer)

    def on_train_end(self, trainer: Any, pl_module: Any) -> None:
        self.train_end_at = time.time()
        if self.cut_by and not trainer.checkpoint_callback.best_model_path:
            raise optuna.TrialPruned(f"cut by the {self.cut_by.replace('_', ' ')} before its first validation")

    def closing_seconds(self) -> float | None:
        """Seconds from the cut to now; for a trial that was not cut, from the end of its training plus its last
        validation, which is what a cut would have cost it (a cut trial validates once more)."""
        if self.cut_at is not None:
            return time.time() - self.cut_at
        if self.train_end_at is not None:
            return time.time() - self.train_end_at + self.last_validation_s
        return None
