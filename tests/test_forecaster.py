"""Specification of the Forecaster: [B, L, C] -> [B, H, K] for every family, RevIN, channel independence, DLinear."""

import math
from dataclasses import replace

import pytest
import torch
from torch import nn

from datamodules.errors import ConfigError
from datamodules.specs import ForecastSpec
from lightning_modules.families import built_in_families
from lightning_modules.forecast_model import Forecaster, RevIN

TRANSFORMER = {"d_model": 16, "n_heads": 2, "n_layers": 1, "ff_dim": 32}
TINY = {
    "linear": {"moving_avg": 5},
    "mlp": {"hidden_size": 32},
    "cnn": {"channels": 8},
    "rnn": {"hidden_size": 16},
    "gru": {"hidden_size": 16},
    "transformer": {**TRANSFORMER, "patch_len": 4},
    "cnn_rnn": {"cnn": {"channels": 8}, "rnn": {"hidden_size": 16}},
    "cnn_transformer": {"cnn": {"channels": 8, "pool": "max"}, "transformer": TRANSFORMER},
    "cnn_rnn_transformer": {
        "cnn": {"channels": 8, "num_layers": 1},
        "rnn": {"hidden_size": 16},
        "transformer": {**TRANSFORMER, "patch_len": 4},
    },
    "segrnn": {"seg_len": 4, "d_model": 32},
    "sparsetsf": {"period": 4},
}
# (lookback, horizon, n_inputs, targets, revin, channel_independent); targets as in series()
SHAPE_CASES = [
    (24, 6, 3, [0, 1, 2], False, False),
    (24, 1, 1, [0], True, False),
    (30, 12, 4, [0, 1, 2, 3], True, True),
    (17, 4, 5, [4, 1], True, False),
    (20, 3, 3, 1, False, False),
]


def series(n_inputs: int, lookback: int, horizon: int, targets: list[int] | int | None = None) -> ForecastSpec:
    """n_inputs channels; the targets are every input (None), the inputs at these positions (a list), or that
    many series that are not inputs (an int)."""
    target_index = list(range(n_inputs)) if targets is None else None if isinstance(targets, int) else targets
    n_targets = targets if isinstance(targets, int) else len(target_index)
    names = [f"x{i}" for i in range(n_inputs)]
    return ForecastSpec("values", lookback, horizon, names, [f"y{k}" for k in range(n_targets)], target_index, 12)


def make(
    family: str,
    lookback: int = 24,
    horizon: int = 4,
    n_inputs: int = 2,
    targets: list[int] | int | None = None,
    **options,
) -> Forecaster:
    torch.manual_seed(0)
    return Forecaster(family, TINY.get(family), spec=series(n_inputs, lookback, horizon, targets), **options)


# The video families (the spatial-only baseline and the raw-clip families) are specified in test_video_models.py.
VIDEO_FAMILIES = {"frame_avg", "c3d", "convlstm"}


def test_tiny_configs_cover_every_family() -> None:
    assert set(built_in_families()) - VIDEO_FAMILIES <= set(TINY)


@pytest.mark.parametrize("family", sorted(TINY))
@pytest.mark.parametrize("case", SHAPE_CASES, ids=lambda c: f"L{c[0]}-H{c[1]}-C{c[2]}-T{c[3]}-revin{c[4]}-ci{c[5]}")
def test_forecasts_have_horizon_by_targets_shape(family: str, case: tuple) -> None:
    lookback, horizon, n_inputs, targets, revin, channel_independent = case
    model = make(family, lookback, horizon, n_inputs, targets, revin=revin, channel_independent=channel_independent)
    n_targets = series(n_inputs, lookback, horizon, targets).n_targets
    assert model(torch.randn(3, lookback, n_inputs)).shape == (3, horizon, n_targets)


@pytest.mark.parametrize(
    "family, config",
    [
        ("transformer", {**TRANSFORMER, "patch_len": 8, "stride": 4}),
        ("transformer", {**TRANSFORMER, "patch_len": 16, "stride": 8, "positional": "learned"}),
        ("cnn_transformer", {"cnn": {"channels": 4}, "transformer": {**TRANSFORMER, "patch_len": 5, "stride": 3}}),
    ],
)
@pytest.mark.parametrize("channel_independent", [False, True])
def test_patched_transformers_forecast_any_lookback(family: str, config: dict, channel_independent: bool) -> None:
    model = Forecaster(family, config, spec=series(3, 37, 5), revin=True, channel_independent=channel_independent)
    assert model(torch.randn(2, 37, 3)).shape == (2, 5, 3)


def test_stem_projects_each_step_before_the_encoder() -> None:
    model = make("rnn", n_inputs=3, stem_dim=10)
    assert isinstance(model.stem.project, nn.Linear) and model.stem.out_dim == model.stem.project.out_features == 10
    assert model.encoder.rnn.input_size == 10
    assert model(torch.randn(2, 24, 3)).shape == (2, 4, 3)
    assert make("rnn", n_inputs=3, stem_dim=10, channel_independent=True).stem.project.in_features == 1


def test_without_stem_dim_the_values_stem_hands_each_steps_values_on_unchanged() -> None:
    model = make("rnn", n_inputs=3)
    x = torch.randn(2, 24, 3)
    h, mask = model.stem(x)
    assert torch.equal(h, x) and mask is None and model.encoder.rnn.input_size == 3


@pytest.mark.parametrize("head", ["last", "mean", "max", "attention"])
def test_summary_heads_forecast_from_one_step_with_far_fewer_weights(head: str) -> None:
    flatten, summary = make("rnn", lookback=48), make("rnn", lookback=48, head=head)
    assert summary(torch.randn(3, 48, 2)).shape == (3, 4, 2)
    assert summary.head.out.in_features * 48 == flatten.head.out.in_features


def test_aliases_and_dict_configs_build_the_family() -> None:
    model = Forecaster("gru", {"hidden_size": 5}, spec=series(2, 10, 3, targets=1))
    assert isinstance(model.encoder.rnn, nn.GRU) and model.encoder.out_dim == 5


@pytest.mark.parametrize("window", [3, 4, 5])  # even windows reach one step further ahead
def test_linear_decomposition_channel_independent_is_exactly_dlinear(window: int) -> None:
    lookback, horizon, channels = 7, 2, 2
    model = Forecaster(
        "linear", {"moving_avg": window}, spec=series(channels, lookback, horizon), channel_independent=True
    )
    g = torch.Generator().manual_seed(0)
    seasonal_weight = torch.randn(horizon, lookback, generator=g)
    trend_weight = torch.randn(horizon, lookback, generator=g)
    bias = torch.randn(horizon, generator=g)
    with torch.no_grad():  # the head sees [seasonal_t, trend_t] pairs, time-major
        model.head.out.weight[:, 0::2] = seasonal_weight
        model.head.out.weight[:, 1::2] = trend_weight
        model.head.out.bias[:] = bias
    x = torch.randn(3, lookback, channels, generator=g)

    expected = torch.empty(3, horizon, channels)
    for b in range(3):
        for c in range(channels):
            values = x[b, :, c].tolist()
            padded = [values[0]] * ((window - 1) // 2) + values + [values[-1]] * (window // 2)
            trend = torch.tensor([sum(padded[t : t + window]) / window for t in range(lookback)])
            seasonal = torch.tensor(values) - trend
            expected[b, :, c] = seasonal_weight @ seasonal + trend_weight @ trend + bias
    torch.testing.assert_close(model(x), expected)


@pytest.mark.parametrize("affine", [False, True])
def test_revin_forecasts_follow_each_windows_level_and_scale(affine: bool) -> None:
    model = make("mlp", n_inputs=3, revin=True, revin_affine=affine).eval()
    x = torch.randn(4, 24, 3)
    scale, shift = torch.tensor([2.0, 0.5, 10.0]), torch.tensor([100.0, -3.0, 0.5])
    with torch.no_grad():
        torch.testing.assert_close(model(x * scale + shift), model(x) * scale + shift, atol=1e-3, rtol=1e-4)


@pytest.mark.parametrize("affine", [False, True])
def test_revin_denormalise_inverts_normalise_on_the_target_channels(affine: bool) -> None:
    revin = RevIN(3, target_index=[2, 0], affine=affine)
    if affine:
        with torch.no_grad():
            revin.weight[:] = torch.tensor([0.5, 2.0, 3.0])
            revin.bias[:] = torch.tensor([1.0, -1.0, 0.2])
    x = 5 * torch.randn(4, 24, 3) + 10
    normalised, stats = revin.normalise(x)
    torch.testing.assert_close(revin.denormalise(normalised[..., [2, 0]], stats), x[..., [2, 0]], atol=1e-4, rtol=1e-4)


def test_revin_denormalises_with_the_target_channels_own_statistics() -> None:
    model = make("cnn", n_inputs=3, targets=[2, 0], revin=True).eval()
    x = torch.randn(4, 24, 3)
    shifted = x + torch.tensor([0.0, 7.0, 50.0])  # channel 1 is an input only
    with torch.no_grad():
        torch.testing.assert_close(model(shifted), model(x) + torch.tensor([50.0, 0.0]), atol=1e-3, rtol=1e-4)


@pytest.mark.parametrize("family", ["linear", "transformer", "cnn_rnn", "segrnn", "sparsetsf"])
def test_channel_independent_forecasts_use_only_their_own_channel(family: str) -> None:
    model = make(family, n_inputs=3, channel_independent=True).eval()
    x = torch.randn(2, 24, 3)
    changed = x.clone()
    changed[:, :, 1] += torch.randn(2, 24)
    with torch.no_grad():
        before, after = model(x), model(changed)
    torch.testing.assert_close(before[..., [0, 2]], after[..., [0, 2]])
    assert not torch.allclose(before[..., 1], after[..., 1])


@pytest.mark.parametrize(
    "targets, options",
    [([2, 0], {}), ([2, 0], {"revin": True}), ([0, 1, 2], {"channel_independent": True, "revin": True})],
)
def test_the_highway_adds_one_linear_map_of_each_targets_own_lookback_to_the_forecast(targets, options) -> None:
    model = make("cnn_rnn_transformer", n_inputs=3, targets=targets, **options).eval()
    assert model.highway is None
    with_highway = make("cnn_rnn_transformer", n_inputs=3, targets=targets, highway=True, **options).eval()
    x = torch.randn(4, 24, 3) * 2 + 5
    direct = with_highway.highway.linear
    assert (direct.in_features, direct.out_features) == (24, 4)
    with torch.no_grad():
        without = with_highway(x)
        direct.weight.zero_()
        direct.bias.fill_(1.0)  # one scaled unit on every target and step, whatever the input
        shifted = with_highway(x)
    assert without.shape == (4, 4, len(targets))
    # RevIN scales the forecast back: one normalised unit is each target channel's own std in the window.
    unit = x.std(dim=1, unbiased=False)[:, None, targets] if options.get("revin") else 1.0
    with torch.no_grad():
        expected = model(x) + unit  # the same network weights (seed 0), without the highway
    torch.testing.assert_close(shifted, expected, atol=1e-4, rtol=1e-4)
    assert not torch.allclose(without, shifted)


@pytest.mark.parametrize(
    "spec, options, message",
    [
        (series(3, 10, 2, targets=1), {"revin": True}, "revin .* needs target_index"),
        (series(3, 10, 2, [0, 1]), {"channel_independent": True}, "targets must be exactly the inputs"),
        (series(3, 10, 2, [2, 1, 0]), {"channel_independent": True}, "targets must be exactly the inputs"),
        (series(3, 10, 2, targets=3), {"channel_independent": True}, "targets must be exactly the inputs"),
        (replace(series(3, 10, 2, [0]), target_names=["y0", "y1"]), {}, "must list 2 target positions"),
        (series(3, 10, 2, [3]), {}, r"among the 3 inputs \(0..2\)"),
        (series(3, 10, 2, targets=1), {"highway": True}, "highway .* needs target_index"),
    ],
)
def test_invalid_target_options_are_refused_with_the_reason(spec: ForecastSpec, options: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Forecaster("linear", None, spec=spec, **options)


def sine_batch(batch: int = 8, lookback: int = 24, horizon: int = 4) -> tuple[torch.Tensor, torch.Tensor]:
    """Two channels of sines with random phase, amplitude and level: learnable, not memorisable by a constant."""
    g = torch.Generator().manual_seed(0)
    t = torch.arange(lookback + horizon, dtype=torch.float32).view(1, -1, 1)
    phase = 2 * math.pi * torch.rand(batch, 1, 2, generator=g)
    amplitude = 0.5 + torch.rand(batch, 1, 2, generator=g)
    series = amplitude * torch.sin(2 * math.pi * t / 12 + phase) + torch.randn(batch, 1, 2, generator=g)
    return series[:, :lookback], series[:, lookback:]


@pytest.mark.parametrize("family", sorted(TINY))
def test_a_tiny_forecaster_overfits_a_fixed_batch(family: str) -> None:
    x, y = sine_batch()
    torch.manual_seed(0)
    model = Forecaster(family, {**TINY[family], "dropout": 0.0}, spec=series(2, 24, 4))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(30):
        loss = nn.functional.mse_loss(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0] / 20, f"{family}: loss {losses[0]:.3f} -> {losses[-1]:.3f} in 30 Adam steps"
