"""Which trials a sweep's ensemble averages, chosen on validation windows only.

`top`: the K best trials by the validation objective. In a sweep that has converged on one family these are near
copies of one model (the 30-minute ETTh1 sweep's top 5 were all SegRNNs at L = 720), and their mean forecasts much
what each of them does.

`greedy`: forward selection (Caruana et al., "Ensemble selection from libraries of models", ICML 2004), without
replacement. Start from the best trial; add, one at a time, the candidate whose joining gives the mean with the
best validation score; stop at K members, or earlier when no candidate improves it (two members at least, since
an ensemble is two runs or more). A weaker model whose errors differ from the leaders' can join; one that adds
nothing cannot.

Every candidate's validation outputs are computed once (Replayed records them on the first pass): each set tried
after is scored by the ensemble's own validation loop on those recorded outputs, so its score is the one `stw
ensemble` logs for the same members.
"""

from collections.abc import Callable
from typing import Literal

import lightning.pytorch as pl
from torch import Tensor, nn

from experiments.ensemble import Ensemble, MeanOfMembers, Member, assemble, check_same_data, scoring_config

Pick = Literal["greedy", "top"]


class Replayed(nn.Module):
    """A member's model that records its outputs batch by batch while `recording`, then gives them back in the
    same order: the validation loader reads its windows in order, so the n-th call is the n-th batch."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model, self.outputs, self.recording, self.position = model, [], True, 0

    def forward(self, x: Tensor, start: Tensor | None = None) -> Tensor:
        if self.recording:
            self.outputs.append((self.model(x) if start is None else self.model(x, start)).detach())
            return self.outputs[-1]
        self.position += 1
        return self.outputs[self.position - 1]

    def rewind(self) -> None:
        self.recording, self.position = False, 0


def greedy_members(ensemble: Ensemble, size: int, metric: str, maximize: bool,
                   validate: Callable[[pl.LightningModule], dict[str, float]]) -> list[Member]:  # fmt: skip
    """Forward selection of at most `size` members from `ensemble.members` (ranked best first by `metric`) by the
    validation score of their mean; `validate` runs one validation pass of a module and returns its metrics."""
    averaging: MeanOfMembers = ensemble.module.model
    replayed = [Replayed(model) for model in averaging.members]
    lookbacks, probabilities = averaging.lookbacks, averaging.probabilities

    def score(chosen: list[int]) -> float:
        for index in chosen:
            replayed[index].rewind()
        ensemble.module.model = MeanOfMembers([replayed[i] for i in chosen], [lookbacks[i] for i in chosen],
                                              probabilities)  # fmt: skip
        value = validate(ensemble.module)[metric]
        return -value if maximize else value

    ensemble.module.model = MeanOfMembers(replayed, lookbacks, probabilities)
    validate(ensemble.module)  # records every candidate's outputs once
    chosen, best = [0], float("inf")
    while len(chosen) < min(size, len(replayed)):
        scores = {i: score([*chosen, i]) for i in range(len(replayed)) if i not in chosen}
        candidate = min(scores, key=scores.__getitem__)
        if len(chosen) >= 2 and scores[candidate] >= best:
            break
        chosen.append(candidate)
        best = scores[candidate]
    ensemble.module.model = averaging
    return [ensemble.members[i] for i in chosen]


def pick_members(candidates: list[Member], size: int, pick: Pick, metric: str, maximize: bool,
                 data_root: str | None = None, quiet: bool = True) -> list[Member]:  # fmt: skip
    """The members of a sweep's ensemble of `size` from `candidates`, ranked best first by `metric`."""
    if pick == "top" or len(candidates) <= 2:
        return candidates[:size]
    import tempfile
    from pathlib import Path

    from experiments.devices import check_placement
    from experiments.train import build_trainer, quiet_lightning

    ensemble = assemble(candidates, data_root)
    check_same_data(ensemble)
    config = scoring_config(ensemble.reference.config)
    where = check_placement(config)
    with tempfile.TemporaryDirectory(prefix="stw-ensemble-pick-") as tmp, quiet_lightning(quiet):

        def validate(module: pl.LightningModule) -> dict[str, float]:
            trainer = build_trainer(config, where, None, Path(tmp), [], quiet=True)
            [scores] = trainer.validate(module, datamodule=ensemble.datamodule, verbose=False)
            return {name: float(value) for name, value in scores.items()}

        return greedy_members(ensemble, size, metric, maximize, validate)
