"""Specification of lightning_modules.pooling: the one place poolings over time and over space are written."""

from typing import get_args

import pytest
import torch

from datamodules.errors import ConfigError
from lightning_modules.families import build_encoder
from lightning_modules.pooling import (
    SPATIAL_POOLINGS,
    TEMPORAL_POOLINGS,
    AttentionPool,
    SpatialPooling,
    TemporalPooling,
    build_pooling,
)

# Two items of one feature; the second has one real step, and every padded value is extreme.
STEPS = torch.tensor([[[1.0], [3.0], [2.0], [100.0]], [[5.0], [-100.0], [-100.0], [-100.0]]])
MASK = torch.tensor([[True, True, True, False], [True, False, False, False]])


def test_the_registries_offer_exactly_the_poolings_the_config_types_allow() -> None:
    assert set(TEMPORAL_POOLINGS) == set(get_args(TemporalPooling)) == {"last", "mean", "max", "attention", "flatten"}
    assert set(SPATIAL_POOLINGS) == set(get_args(SpatialPooling)) == {"max", "avg", "attention", "flatten"}


def test_temporal_poolings_read_only_real_steps() -> None:
    pooled = {name: TEMPORAL_POOLINGS[name](1, None)[0](STEPS, MASK)[:, 0].tolist() for name in ("last", "mean", "max")}
    assert pooled == {"last": [2.0, 5.0], "mean": [2.0, 5.0], "max": [3.0, 5.0]}


def test_attention_pooling_gives_padded_steps_no_weight() -> None:
    torch.manual_seed(0)
    pool, width = TEMPORAL_POOLINGS["attention"](4, None)
    h, mask = torch.randn(1, 5, 4), torch.tensor([[True, True, True, False, False]])
    noisy_padding = h.clone()
    noisy_padding[:, 3:] = 1e4
    assert width == 4
    torch.testing.assert_close(pool(h, mask), pool(noisy_padding, mask))


def test_temporal_flatten_keeps_every_step_time_major_and_needs_a_fixed_length() -> None:
    pool, width = TEMPORAL_POOLINGS["flatten"](2, 3)
    h = torch.arange(12.0).view(2, 3, 2)
    assert width == 6 and pool(h, torch.ones(2, 3, dtype=torch.bool)).tolist() == h.view(2, 6).tolist()
    with pytest.raises(ConfigError, match="needs a fixed number of them.*choose last, mean, max or attention"):
        TEMPORAL_POOLINGS["flatten"](2, None)


@pytest.mark.parametrize("name, width", [("max", 3), ("avg", 3), ("attention", 3), ("flatten", 3 * 4 * 5)])
def test_spatial_poolings_turn_a_map_into_one_vector_of_their_declared_width(name: str, width: int) -> None:
    pool, declared = SPATIAL_POOLINGS[name](3, 4 * 5)
    assert declared == width and pool(torch.randn(2, 3, 4, 5)).shape == (2, width)


def test_spatial_max_and_avg_pool_over_positions_per_channel() -> None:
    h = torch.arange(8.0).view(1, 2, 2, 2)
    assert SPATIAL_POOLINGS["max"](2, 4)[0](h).tolist() == [[3.0, 7.0]]
    assert SPATIAL_POOLINGS["avg"](2, 4)[0](h).tolist() == [[1.5, 5.5]]


def test_spatial_attention_is_the_temporal_attention_with_positions_as_steps() -> None:
    torch.manual_seed(0)
    spatial = SPATIAL_POOLINGS["attention"](3, 6)[0]
    temporal = AttentionPool(3)
    temporal.load_state_dict(spatial.state_dict())
    h = torch.randn(2, 3, 2, 3)
    positions = h.flatten(2).transpose(1, 2)
    torch.testing.assert_close(spatial(h), temporal(positions, torch.ones(2, 6, dtype=torch.bool)))


def test_an_unknown_pooling_names_the_config_key_and_the_choices() -> None:
    with pytest.raises(ConfigError, match=r"task\.pooling='median' is not a pooling; choose one of: last, mean"):
        build_pooling(TEMPORAL_POOLINGS, "median", 4, None, "task.pooling")


@pytest.mark.parametrize("spatial_pool", sorted(SPATIAL_POOLINGS))
@pytest.mark.parametrize(
    "family, config", [("c3d", {"channels": 4, "num_layers": 2}), ("convlstm", {"hidden_channels": 4})]
)
def test_clip_families_pool_each_steps_map_with_any_spatial_pooling(
    family: str, config: dict, spatial_pool: str
) -> None:
    encoder = build_encoder(family, {**config, "spatial_pool": spatial_pool}, in_dim=(1, 8, 8), seq_len=4)
    h, mask = encoder(torch.randn(2, 4, 1, 8, 8))
    assert h.shape == (2, encoder.out_len, encoder.out_dim) and mask is None
