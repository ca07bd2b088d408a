"""Stems x families x heads, the same for both tasks: every model is stem -> encoder -> head from the registries."""

import pytest
import torch
from torch import nn

from datamodules.errors import ConfigError
from datamodules.specs import ClassifySpec, ForecastSpec
from lightning_modules import TASKS
from lightning_modules.classify_model import Classifier
from lightning_modules.families import build_encoder
from lightning_modules.forecast_model import Forecaster
from lightning_modules.heads import HEADS, Head
from lightning_modules.stems import STEMS, VectorStem
from lightning_modules.task_model import TaskModel

SERIES = ForecastSpec("values", 20, 5, ["a", "b", "c"], ["a", "b", "c"], [0, 1, 2], season=4)
KEYPOINTS = ClassifySpec("vectors", ["wave", "point"], [4, 6], seq_len=20, n_inputs=3)
TOKENS = ClassifySpec("tokens", ["ham", "spam"], [8, 2], vocab_size=30, pad_id=0)


def test_every_task_has_a_head_and_every_input_kind_a_stem() -> None:
    assert set(HEADS) == set(TASKS)
    assert {"values", "vectors", "tokens", "frames"} <= set(STEMS)
    assert STEMS["values"].stems["steps"] is VectorStem


def test_a_forecaster_and_a_classifier_are_the_same_stem_encoder_head_with_their_tasks_outputs() -> None:
    torch.manual_seed(0)
    forecaster = Forecaster("gru", {"hidden_size": 6}, spec=SERIES, stem_dim=8, head="mean")
    torch.manual_seed(0)
    classifier = Classifier("gru", {"hidden_size": 6}, spec=KEYPOINTS, embed_dim=8, pooling="mean")
    for model in (forecaster, classifier):
        assert isinstance(model, TaskModel) and isinstance(model.stem, VectorStem) and isinstance(model.head, Head)
    # Same stem and encoder from the same seed: the tasks differ only in what the head gives.
    shared = {k: v for k, v in forecaster.state_dict().items() if not k.startswith("head.")}
    assert shared.keys() == {k for k in classifier.state_dict() if not k.startswith("head.")}
    assert all(torch.equal(value, classifier.state_dict()[key]) for key, value in shared.items())
    x = torch.randn(4, 20, 3)
    assert forecaster(x).shape == (4, 5, 3) and classifier(x).shape == (4, 2)
    assert forecaster.head.out_shape == (5, 3) and classifier.head.out_shape == (2,)


def test_a_seeded_forecaster_is_the_linear_stem_encoder_and_linear_head_it_always_was() -> None:
    """Same layers in the same order, so seeded runs of existing configs keep their numbers."""
    torch.manual_seed(0)
    model = Forecaster("cnn", {"channels": 4}, spec=SERIES, stem_dim=6)
    torch.manual_seed(0)
    stem = nn.Linear(3, 6)
    encoder = build_encoder("cnn", {"channels": 4}, in_dim=6, seq_len=20)
    head = nn.Linear(20 * 4, 5 * 3)
    model.eval(), encoder.eval()
    x = torch.randn(2, 20, 3)
    with torch.no_grad():
        expected = head(encoder(stem(x))[0].flatten(1)).view(2, 5, 3)
        assert torch.equal(model(x), expected)


def test_flatten_pools_fixed_length_items_for_either_task_and_is_refused_for_text() -> None:
    classifier = Classifier("rnn", {"hidden_size": 4}, spec=KEYPOINTS, embed_dim=8, pooling="flatten")
    assert classifier.head.out.in_features == 20 * 4 and classifier(torch.randn(2, 20, 3)).shape == (2, 2)
    with pytest.raises(ConfigError, match="flatten pooling keeps every step.*differ in length"):
        Classifier("rnn", spec=TOKENS, embed_dim=8, pooling="flatten")


def test_a_pooling_error_names_each_tasks_own_config_key() -> None:
    with pytest.raises(ConfigError, match=r"task\.head='median'"):
        Forecaster("linear", spec=SERIES, head="median")
    with pytest.raises(ConfigError, match=r"task\.pooling='median'"):
        Classifier("rnn", spec=TOKENS, embed_dim=8, pooling="median")


def test_forecasting_refuses_clip_families_through_the_stem_registry() -> None:
    with pytest.raises(ConfigError, match="reads 'clip' input, which input_kind frames gives but 'values' does not"):
        Forecaster("c3d", spec=SERIES)
