"""What a datamodule tells a model about its tensors (`datamodule.spec`): one dataclass per task.

Data flows datamodule -> model, so the specs live here and lightning_modules imports them. A spec is plain data:
`asdict(spec)` is what a checkpoint saves beside the run config (torch.load(weights_only=True) reads it back),
and `as_spec` rebuilds the dataclass from it.
"""

from dataclasses import dataclass, field
from typing import Any, TypeVar


@dataclass(frozen=True)
class ForecastSpec:
    """Windows of a multichannel series: x [B, lookback, n_inputs] -> y [B, horizon, n_targets].

    Args:
        input_kind: what x holds, which picks the model's stem: "values" (per-step channel values).
        lookback: input steps L.
        horizon: forecast steps H.
        input_names: the C input channels, in order.
        target_names: the K forecast channels, in order.
        target_index: positions of the targets among the inputs, or None when the targets are not inputs.
        season: the series' season in steps (24 for hourly data), for the seasonal-naive baseline and MASE.
        target_kind: what the targets are, which decides the naive forecasts they are scored against and
            whether trading metrics apply (see lightning_modules.baselines): "level" (a series' own values,
            e.g. loads or temperatures) or "return" (period-over-period log returns, whose sign is the bet).
        main_target: the target channel people read first (ETT's OT, a stock's close return): the one plotted
            and the one return metrics and the backtest use; None takes the first target.
        target_mean, target_std: the fitted target scaler (original = scaled * std + mean), per target, so
            scores in the data's own units can be computed from scaled forecasts; None when unknown.
        naive_mae: per target, the mean absolute error of the seasonal-naive forecast (period `season`) inside
            the training rows, in original units: the denominator of MASE.
        positive_targets: every training value of every target is above 0, so percentage errors (sMAPE) mean
            something.
    """

    input_kind: str
    lookback: int
    horizon: int
    input_names: list[str]
    target_names: list[str]
    target_index: list[int] | None
    season: int
    target_kind: str = "level"
    main_target: str | None = None
    target_mean: list[float] | None = None
    target_std: list[float] | None = None
    naive_mae: list[float] | None = None
    positive_targets: bool = False

    @property
    def main_index(self) -> int:
        """Position of the main target among the targets."""
        return self.target_names.index(self.main_target) if self.main_target is not None else 0

    @property
    def n_inputs(self) -> int:
        return len(self.input_names)

    @property
    def n_targets(self) -> int:
        return len(self.target_names)

    @property
    def seq_len(self) -> int:
        """Steps per item, the name every stem reads."""
        return self.lookback


@dataclass(frozen=True)
class ClassifySpec:
    """Items of one input kind -> one of the classes; the fields after class_counts are set by the kinds that have them.

    Args:
        input_kind: what an item is, which picks the model's stem: "tokens" (ids [B, T]), "vectors" (per-step
            features [B, T, n_inputs]) or "frames" (clips [B, T, C, H, W]).
        class_names: the classes, in label order.
        class_counts: training items per class, in label order.
        seq_len: steps per item when every item has the same length (frames per clip); None when they differ.
        test_clips: clips per test item, whose probabilities are averaged (x [B, test_clips, ...] when above 1).
        n_inputs: features per step (vectors).
        frame_shape: (C, H, W) of a frame (frames).
        vocab_size: token ids are below it (tokens).
        pad_id: the id that pads a batch's shorter items (tokens).
        details: what else the datamodule reports, for people and tests, never read by a model: split sizes
            (n_train, n_val, n_test), items dropped or padded while loading, feature names, persons per split.
    """

    input_kind: str
    class_names: list[str]
    class_counts: list[int]
    seq_len: int | None = None
    test_clips: int = 1
    n_inputs: int | None = None
    frame_shape: list[int] | None = None
    vocab_size: int | None = None
    pad_id: int | None = None
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)


Spec = ForecastSpec | ClassifySpec
S = TypeVar("S", ForecastSpec, ClassifySpec)


def as_spec(cls: type[S], spec: S | dict[str, Any]) -> S:
    """The spec dataclass, also from its asdict() form (as a checkpoint's hyperparameters hold it)."""
    return spec if isinstance(spec, cls) else cls(**spec)


__all__ = ["ClassifySpec", "ForecastSpec", "Spec", "as_spec"]
