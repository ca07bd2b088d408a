"""Specification of the temporal encoder families: shapes, masks on padded batches, aliases, hybrids, errors."""

import ast
from dataclasses import fields
from pathlib import Path

import pytest
import torch
from torch import nn

from datamodules.errors import ConfigError
from lightning_modules import families
from lightning_modules.families import FAMILIES, build_encoder, resolve_family
from lightning_modules.families.cnn import CNNConfig
from lightning_modules.families.hybrids import CNNRNNTransformerConfig
from lightning_modules.families.linear import moving_average
from lightning_modules.families.rnn import RNNConfig

# Variable-length (seq_len=None) variants that stress the mask: pooling, dilation, residuals, parallel
# branches, both directions, patches, learned positions, and every hybrid.
MASKED_VARIANTS = {
    "cnn same": ("cnn", {"channels": 6, "num_layers": 2}),
    "cnn pooled dilated residual": (
        "cnn",
        {"channels": 6, "kernel_size": 4, "pool": "max", "dilation_growth": 2, "residual": True},
    ),
    "cnn causal avg-pooled": ("cnn", {"channels": 6, "padding": "causal", "pool": "avg"}),
    "cnn kim 2014": ("cnn", {"channels": 4, "num_layers": 1, "kernel_sizes": [3, 4, 5]}),
    "lstm bidirectional": ("lstm", {"hidden_size": 6, "num_layers": 2, "bidirectional": True}),
    "gru": ("gru", {"hidden_size": 6}),
    "transformer steps learned": (
        "transformer",
        {"d_model": 8, "n_heads": 2, "n_layers": 1, "ff_dim": 16, "positional": "learned", "max_len": 32},
    ),
    "transformer patches post-norm": (
        "transformer",
        {"d_model": 8, "n_heads": 2, "n_layers": 2, "ff_dim": 16, "patch_len": 4, "stride": 3, "norm_first": False},
    ),
    "cnn_rnn": ("cnn_rnn", {"cnn": {"channels": 6, "pool": "max"}, "rnn": {"hidden_size": 6}}),
    "cnn_transformer": (
        "cnn_transformer",
        {
            "cnn": {"channels": 6, "num_layers": 1, "pool": "max"},
            "transformer": {"d_model": 8, "n_heads": 2, "patch_len": 2},
        },
    ),
    "cnn_rnn_transformer": (
        "cnn_rnn_transformer",
        {"cnn": {"channels": 6}, "rnn": {"hidden_size": 6}, "transformer": {"d_model": 8, "n_heads": 2, "n_layers": 1}},
    ),
    "cnn_rnn_transformer residual": (
        "cnn_rnn_transformer",
        {
            "cnn": {"channels": 6},
            "rnn": {"hidden_size": 8},
            "transformer": {"d_model": 8, "n_heads": 2, "n_layers": 1},
            "residual": True,
        },
    ),
}
LENGTHS = [16, 10, 13, 8]  # right-padded to 16


def padded_batch(lengths: list[int] = LENGTHS, in_dim: int = 3, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    x = torch.randn(len(lengths), max(lengths), in_dim, generator=torch.Generator().manual_seed(seed))
    mask = torch.arange(max(lengths)) < torch.tensor(lengths).unsqueeze(1)
    return x * mask.unsqueeze(-1), mask


def assert_padded_items_match_alone(encoder: nn.Module, lengths: list[int]) -> None:
    """Each item of a padded batch has the real steps and the outputs it gets when run alone, unpadded."""
    x, mask = padded_batch(lengths)
    with torch.no_grad():
        h, out_mask = encoder(x, mask)
        assert out_mask.shape == h.shape[:2]
        for i, length in enumerate(lengths):
            alone, alone_mask = encoder(x[i : i + 1, :length])
            real = alone.shape[1]
            assert alone_mask is None
            assert out_mask[i].tolist() == [True] * real + [False] * (h.shape[1] - real)
            torch.testing.assert_close(h[i, :real], alone[0], atol=1e-5, rtol=1e-4)


def eval_encoder(name: str, config: dict | None, in_dim: int, seq_len: int | None) -> nn.Module:
    torch.manual_seed(0)
    return build_encoder(name, config, in_dim=in_dim, seq_len=seq_len).eval()


STEP_FAMILIES = sorted(
    name for name, family in FAMILIES.items() if family.input == "steps" and family.output == "steps"
)
HORIZON_FAMILIES = sorted(name for name, family in FAMILIES.items() if family.output == "horizon")


@pytest.mark.parametrize("name", STEP_FAMILIES)
@pytest.mark.parametrize("seq_len", [7, 24, 30])
def test_default_encoders_produce_their_declared_out_len_and_out_dim(name: str, seq_len: int) -> None:
    encoder = eval_encoder(name, None, in_dim=3, seq_len=seq_len)
    h, mask = encoder(torch.randn(2, seq_len, 3))
    assert h.shape == (2, encoder.out_len, encoder.out_dim)
    assert mask is None


@pytest.mark.parametrize("variant", sorted(MASKED_VARIANTS))
def test_padded_items_come_out_as_if_run_alone(variant: str) -> None:
    name, config = MASKED_VARIANTS[variant]
    assert_padded_items_match_alone(eval_encoder(name, config, in_dim=3, seq_len=None), LENGTHS)


@pytest.mark.parametrize("stride", [1, 2, 4])
def test_items_shorter_than_a_patch_keep_one_patch(stride: int) -> None:
    encoder = eval_encoder(
        "transformer", {"d_model": 8, "n_heads": 2, "patch_len": 4, "stride": stride}, in_dim=3, seq_len=None
    )
    assert_padded_items_match_alone(encoder, [9, 1, 3, 4, 5])


@pytest.mark.parametrize("variant", sorted(MASKED_VARIANTS) + ["linear", "mlp"])
def test_values_at_padded_steps_never_change_real_outputs(variant: str) -> None:
    name, config = MASKED_VARIANTS.get(variant, (variant, None))
    seq_len = max(LENGTHS) if name in ("linear", "mlp") else None
    encoder = eval_encoder(name, config, in_dim=3, seq_len=seq_len)
    x, mask = padded_batch()
    junk = x + 100 * torch.randn(x.shape, generator=torch.Generator().manual_seed(1)) * ~mask.unsqueeze(-1)
    with torch.no_grad():
        h, out_mask = encoder(x, mask)
        h_junk, _ = encoder(junk, mask)
    real = out_mask.unsqueeze(-1)
    torch.testing.assert_close(h * real, h_junk * real, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("name", ["linear", "mlp"])
def test_fixed_window_families_refuse_variable_length_input(name: str) -> None:
    with pytest.raises(ConfigError, match="needs a fixed seq_len"):
        build_encoder(name, None, in_dim=3, seq_len=None)


def test_rnn_refuses_masks_that_are_not_right_padded() -> None:
    x, mask = padded_batch()
    with pytest.raises(ValueError, match="right-padded"):
        build_encoder("rnn", {"hidden_size": 4}, in_dim=3, seq_len=None)(x, mask.flip(1))


@pytest.mark.parametrize(
    "name, config",
    [
        ("cnn", {"padding": "causal", "dilation_growth": 2, "residual": True}),
        ("rnn", {"num_layers": 2}),
        ("cnn_rnn", {"cnn": {"padding": "causal"}}),
    ],
)
def test_causal_encoders_never_look_ahead(name: str, config: dict) -> None:
    encoder = eval_encoder(name, config, in_dim=2, seq_len=20)
    x = torch.randn(3, 20, 2)
    changed = x.clone()
    changed[:, 12:] += 5.0
    with torch.no_grad():
        torch.testing.assert_close(encoder(x)[0][:, :12], encoder(changed)[0][:, :12])
        assert not torch.allclose(encoder(x)[0][:, 12:], encoder(changed)[0][:, 12:])


def test_lstm_and_gru_aliases_are_the_rnn_family_with_that_cell() -> None:
    assert resolve_family("lstm") == ("rnn", {"cell": "lstm"})
    assert isinstance(build_encoder("lstm", None, in_dim=3, seq_len=10).rnn, nn.LSTM)
    gru = build_encoder("gru", {"hidden_size": 5}, in_dim=3, seq_len=10)
    assert isinstance(gru.rnn, nn.GRU) and gru.out_dim == 5


def test_unknown_family_names_list_the_valid_ones() -> None:
    with pytest.raises(ConfigError, match="cnn_rnn_transformer.*lstm"):
        build_encoder("lstn", None, in_dim=3, seq_len=10)


def test_hybrid_configs_turn_member_dicts_into_member_configs() -> None:
    config = CNNRNNTransformerConfig(cnn={"channels": 6}, rnn={"cell": "gru", "hidden_size": 7})
    assert config.cnn == CNNConfig(channels=6)
    assert config.rnn == RNNConfig(cell="gru", hidden_size=7)
    encoder = build_encoder(
        "cnn_rnn_transformer",
        {"cnn": {"channels": 6}, "rnn": {"cell": "gru", "hidden_size": 7}, "transformer": {"d_model": 8, "n_heads": 2}},
        in_dim=3,
        seq_len=12,
    )
    cnn, rnn, transformer = encoder.members
    assert cnn.out_dim == 6 and isinstance(rnn.rnn, nn.GRU) and rnn.rnn.input_size == 6
    assert transformer.project.in_features == 7 and encoder.out_dim == 8


def test_hybrid_chain_passes_lengths_along_pooling_and_patching() -> None:
    encoder = build_encoder(
        "cnn_transformer",
        {"cnn": {"num_layers": 2, "pool": "avg"}, "transformer": {"patch_len": 4, "stride": 2}},
        in_dim=3,
        seq_len=40,
    )
    assert encoder.out_len == 4  # 40 steps pooled twice -> 10, patches of 4 every 2 -> 4
    assert encoder(torch.randn(2, 40, 3))[0].shape == (2, 4, 64)


def dropout_rates(encoder: nn.Module) -> set[float]:
    return {module.p for module in encoder.modules() if isinstance(module, nn.Dropout)}


def test_hybrid_dropout_overrides_every_member_and_none_keeps_theirs() -> None:
    overridden = build_encoder("cnn_rnn", {"dropout": 0.3, "rnn": {"dropout": 0.0}}, in_dim=3, seq_len=10)
    kept = build_encoder("cnn_rnn", {"rnn": {"dropout": 0.0}}, in_dim=3, seq_len=10)
    assert dropout_rates(overridden) == {0.3}
    assert dropout_rates(kept) == {0.1, 0.0}


def test_kim_cnn_concatenates_one_branch_per_kernel_size() -> None:
    encoder = build_encoder("cnn", {"channels": 5, "num_layers": 1, "kernel_sizes": [3, 4, 5]}, in_dim=8, seq_len=None)
    assert [branch[0].conv.kernel_size[0] for branch in encoder.branches] == [3, 4, 5]
    h, _ = encoder(torch.randn(2, 11, 8))
    assert h.shape == (2, 11, 15)


def test_patches_cover_the_whole_lookback_patchtst_style() -> None:
    encoder = build_encoder("transformer", {"patch_len": 16, "stride": 8}, in_dim=1, seq_len=96)
    assert encoder.out_len == 11  # (96 - 16) / 8 + 1
    assert build_encoder("transformer", {"patch_len": 16, "stride": 8}, in_dim=1, seq_len=100).out_len == 12


def test_decomposition_splits_each_channel_into_seasonal_plus_trend() -> None:
    x = torch.randn(2, 30, 3)
    h, _ = build_encoder("linear", {"moving_avg": 5}, in_dim=3, seq_len=30)(x)
    seasonal, trend = h[..., :3], h[..., 3:]
    torch.testing.assert_close(seasonal + trend, x)
    ramp = torch.arange(30.0).view(1, 30, 1)
    torch.testing.assert_close(moving_average(ramp, 5)[:, 2:-2], ramp[:, 2:-2])  # a line is its own centred trend
    assert torch.equal(build_encoder("linear", {"decomposition": False}, in_dim=3, seq_len=30)(x)[0], x)


@pytest.mark.parametrize(
    "name, config, seq_len, message",
    [
        ("cnn", {"num_layers": 3, "pool": "max", "pool_size": 4}, 50, "shorten 50 steps to nothing"),
        ("cnn", {"kernel_sizes": [3, 0]}, 10, "at least 1"),
        ("transformer", {"d_model": 10, "n_heads": 4}, 10, "must divide d_model"),
        ("transformer", {"patch_len": 4, "stride": 5}, 10, "stride must be between 1 and patch_len"),
        ("linear", {"moving_avg": 0}, 10, "moving_avg"),
    ],
)
def test_invalid_configs_fail_at_construction_with_the_option_named(name, config, seq_len, message) -> None:
    with pytest.raises(ConfigError, match=message):
        build_encoder(name, config, in_dim=3, seq_len=seq_len)


def test_learned_positions_refuse_inputs_longer_than_max_len() -> None:
    encoder = build_encoder("transformer", {"positional": "learned", "max_len": 8}, in_dim=3, seq_len=None)
    with pytest.raises(ConfigError, match="raise max_len"):
        encoder(torch.randn(1, 9, 3))


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_every_config_field_is_documented_for_the_cli(name: str) -> None:
    config = FAMILIES[name].config
    assert "Args:" in config.__doc__
    for field in fields(config):
        assert f"\n        {field.name}: " in config.__doc__, f"{config.__name__} lacks an Args entry for {field.name}"


# What a family module may import from the project: the registry, the contract, and the shared building blocks.
FAMILY_IMPORTS = {
    "datamodules.errors",
    "lightning_modules.families",
    "lightning_modules.families.base",
    "lightning_modules.layers",
    "lightning_modules.pooling",
}


FAMILY_FILES = sorted(Path(families.__file__).parent.glob("*.py"))


def project_imports(path: Path) -> set[str]:
    """Every project module a file imports, `from package import module` counted as package.module."""
    modules = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            modules |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            modules.add(node.module)
            modules |= {f"{node.module}.{alias.name}" for alias in node.names if alias.name in FAMILY_MODULES}
    return {name for name in modules if name.split(".")[0] in ("datamodules", "lightning_modules", "experiments")}


FAMILY_MODULES = {path.stem for path in FAMILY_FILES} - {"__init__", "base"}


@pytest.mark.parametrize("path", [p for p in FAMILY_FILES if p.stem != "__init__"], ids=lambda path: path.stem)
def test_families_import_only_the_registry_and_shared_blocks_never_each_other_or_the_heads(path: Path) -> None:
    imported = project_imports(path)
    assert imported <= FAMILY_IMPORTS, f"{path.name} imports {sorted(imported - FAMILY_IMPORTS)}"


def test_segrnn_and_sparsetsf_are_the_families_that_forecast_by_themselves() -> None:
    assert HORIZON_FAMILIES == ["segrnn", "sparsetsf"]


@pytest.mark.parametrize("name", HORIZON_FAMILIES)
@pytest.mark.parametrize("seq_len, horizon, in_dim", [(720, 96, 7), (96, 96, 1), (100, 30, 3), (5, 50, 2)])
def test_forecasting_families_give_one_row_per_step_ahead_of_every_feature(name, seq_len, horizon, in_dim) -> None:
    encoder = build_encoder(name, None, in_dim=in_dim, seq_len=seq_len, horizon=horizon).eval()
    y, mask = encoder(torch.randn(2, seq_len, in_dim))
    assert y.shape == (2, horizon, in_dim) == (2, encoder.out_len, encoder.out_dim) and mask is None


@pytest.mark.parametrize("name", HORIZON_FAMILIES)
def test_forecasting_families_need_a_fixed_lookback_and_a_horizon(name: str) -> None:
    with pytest.raises(ConfigError, match="needs a fixed seq_len"):
        build_encoder(name, None, in_dim=3, seq_len=None, horizon=4)
    with pytest.raises(ConfigError, match=f"the {name} family decodes a forecast horizon itself"):
        build_encoder(name, None, in_dim=3, seq_len=24)


@pytest.mark.parametrize(
    "seq_len, horizon, period, weights",
    [(720, 96, 24, 25 + 30 * 4), (336, 96, 24, 25 + 14 * 4), (96, 96, 24, 25 + 4 * 4), (720, 720, 24, 25 + 30 * 30)],
)
def test_sparsetsf_has_an_aggregation_kernel_and_one_linear_from_cycles_to_cycles(
    seq_len: int, horizon: int, period: int, weights: int
) -> None:
    encoder = build_encoder("sparsetsf", {"period": period}, in_dim=7, seq_len=seq_len, horizon=horizon)
    count = sum(p.numel() for p in encoder.parameters())
    assert count == weights and count < 1000  # the paper's "fewer than 1k parameters", for every horizon


def test_sparsetsf_forecasts_a_constant_window_as_that_constant() -> None:
    encoder = build_encoder("sparsetsf", None, in_dim=2, seq_len=48, horizon=24)
    x = torch.tensor([3.0, -1.5]).expand(4, 48, 2)
    torch.testing.assert_close(encoder(x)[0], x[:, :24])


def test_sparsetsf_shares_one_linear_across_phases_so_a_shifted_period_shifts_the_forecast() -> None:
    torch.manual_seed(0)
    encoder = build_encoder("sparsetsf", {"period": 4}, in_dim=1, seq_len=16, horizon=8).eval()
    nn.init.zeros_(encoder.aggregate.weight)  # no smoothing: every phase is forecast from its own past values only
    x = torch.randn(1, 16, 1)
    y = encoder(x)[0]
    phase_0 = x[:, 0::4] - x.mean(dim=1, keepdim=True)
    expected = encoder.linear(phase_0.transpose(1, 2)).transpose(1, 2) + x.mean(dim=1, keepdim=True)
    torch.testing.assert_close(y[:, 0::4], expected)


def test_segrnn_with_last_value_norm_moves_its_forecast_with_the_level_of_the_window() -> None:
    encoder = build_encoder("segrnn", {"seg_len": 6, "d_model": 8}, in_dim=2, seq_len=24, horizon=12).eval()
    x = torch.randn(3, 24, 2)
    with torch.no_grad():
        torch.testing.assert_close(encoder(x + 5.0)[0], encoder(x)[0] + 5.0)


def test_segrnn_decodes_every_output_segment_in_parallel_from_one_encoder_state() -> None:
    encoder = build_encoder("segrnn", {"seg_len": 4, "d_model": 8}, in_dim=3, seq_len=16, horizon=10)
    assert encoder.n_out == 3 and encoder.position.shape == (3, 4) and encoder.feature.shape == (3, 4)
    assert encoder.pad == 0 and build_encoder("segrnn", {"seg_len": 5}, in_dim=1, seq_len=16, horizon=10).pad == 4


def test_the_seed_pipeline_has_pre_norm_residual_stages_by_default_and_offers_the_plain_chain() -> None:
    config = {"cnn": {"channels": 6}, "rnn": {"hidden_size": 8}, "transformer": {"d_model": 8, "n_heads": 2}}
    residual = build_encoder("cnn_rnn_transformer", config, in_dim=3, seq_len=12).eval()  # the default
    plain = build_encoder("cnn_rnn_transformer", {**config, "residual": False}, in_dim=3, seq_len=12).eval()
    assert build_encoder("cnn_rnn", {}, in_dim=3, seq_len=12).staged == [False, False]  # other hybrids: plain
    assert residual.staged == [False, True, True] and plain.staged == [False, False, False]
    assert [norm.normalized_shape for norm in residual.norms[1:]] == [(6,), (8,)]
    assert isinstance(residual.skips[1], nn.Linear)  # 6 CNN channels onto the LSTM's 8
    assert isinstance(residual.skips[2], nn.Identity)  # the LSTM's 8 onto d_model 8
    x = torch.randn(2, 12, 3)
    with torch.no_grad():
        h = residual.members[0](x)[0]
        for i in (1, 2):
            h = residual.members[i](residual.norms[i](h))[0] + residual.skips[i](h)
        torch.testing.assert_close(residual(x)[0], h)
        h = x
        for member in plain.members:
            h = member(h)[0]
        torch.testing.assert_close(plain(x)[0], h)


def test_a_residual_stage_that_shortens_time_is_applied_without_its_skip() -> None:
    config = {"cnn": {"channels": 6}, "transformer": {"d_model": 8, "n_heads": 2, "patch_len": 4}, "residual": True}
    encoder = build_encoder("cnn_transformer", config, in_dim=3, seq_len=16).eval()
    x = torch.randn(2, 16, 3)
    with torch.no_grad():
        h = encoder.members[0](x)[0]
        torch.testing.assert_close(encoder(x)[0], encoder.members[1](encoder.norms[1](h))[0])
