"""Greedy ensemble selection (experiments/ensemble_selection.py): forward selection by the validation score of
the members' mean, each member run once."""

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from experiments.ensemble import MeanOfMembers
from experiments.ensemble_selection import greedy_members

BATCHES = [(torch.randn(4, 8, 1), torch.zeros(4, 3, 1)) for _ in range(3)]


class Constant(nn.Module):
    """Forecasts `value` everywhere and counts its forward passes."""

    def __init__(self, value: float) -> None:
        super().__init__()
        self.value, self.calls = value, 0

    def forward(self, x: Tensor, start: Tensor | None = None) -> Tensor:
        self.calls += 1
        return torch.full((len(x), 3, 1), self.value)


@dataclass
class Holder:
    model: nn.Module


@dataclass
class Pool:
    """What greedy_members reads of an Ensemble: its members and the module whose model averages them."""

    members: list[str]
    module: Holder


def validate(module: Holder) -> dict[str, float]:
    errors = [((module.model(x) - y) ** 2).mean() for x, y in BATCHES]
    return {"val_mse": float(torch.stack(errors).mean())}


def pool(values: dict[str, float]) -> tuple[Pool, list[Constant]]:
    models = [Constant(value) for value in values.values()]
    return Pool(list(values), Holder(MeanOfMembers(models, [None] * len(models), probabilities=False))), models


def test_greedy_selection_adds_the_member_whose_errors_cancel_and_stops_when_none_helps():
    # Ranked by their own val MSE: a (1.0), d (1.1025), b (1.21), c (1.44). The top two average to 1.025 (MSE
    # 1.05); a with c averages to -0.1 (MSE 0.01), and no third member brings that lower.
    ensemble, models = pool({"a": 1.0, "d": 1.05, "b": 1.1, "c": -1.2})
    averaging = ensemble.module.model
    assert greedy_members(ensemble, 4, "val_mse", False, validate) == ["a", "c"]
    assert [model.calls for model in models] == [len(BATCHES)] * 4  # recorded once, replayed after
    assert ensemble.module.model is averaging  # the module is left as it was given


def test_greedy_selection_keeps_two_members_even_when_the_pair_is_worse_and_stops_at_the_size():
    ensemble, _ = pool({"a": 1.0, "b": 1.5, "c": 2.0})
    assert greedy_members(ensemble, 4, "val_mse", False, validate) == ["a", "b"]
    ensemble, _ = pool({"a": 1.0, "b": -1.0, "c": 0.5, "d": -0.5})
    assert greedy_members(ensemble, 2, "val_mse", False, validate) == ["a", "b"]


def test_greedy_selection_maximizes_a_score_to_maximize():
    ensemble, _ = pool({"a": 1.0, "d": 1.05, "b": 1.1, "c": -1.2})

    def negated(module: Holder) -> dict[str, float]:
        return {"val_score": -validate(module)["val_mse"]}

    assert greedy_members(ensemble, 4, "val_score", True, negated) == ["a", "c"]
