"""Video models: the frames stem (a per-frame 2D CNN with spatial pooling and coordinate channels) under every
per-step family, the raw-clip families c3d and convlstm, the frame-average (spatial-only) baseline, multi-clip
test items through the ClassificationModule, and the video search space."""

from dataclasses import replace

import lightning.pytorch as pl
import optuna
import pytest
import torch
from torch import Tensor
from torch.utils.data import DataLoader

from datamodules.errors import ConfigError
from datamodules.specs import ClassifySpec
from experiments.config import config_from_dict, flatten, parse_run_args, run_parser
from experiments.sweep.space import load_space, nest, sample_overrides
from lightning_modules.classify_model import Classifier
from lightning_modules.classify_training import ClassificationModule
from lightning_modules.families import FAMILIES, build_encoder
from lightning_modules.frame_cnn import FrameCNN, FrameCNNOptions
from lightning_modules.pooling import SPATIAL_POOLINGS
from lightning_modules.stems import build_stem

# Per-step families that classify (segrnn and sparsetsf only forecast: see test_classification.py).
STEP_FAMILIES = sorted(n for n, family in FAMILIES.items() if family.input == "steps" and family.output == "steps")
CLIP_FAMILIES = sorted(name for name, family in FAMILIES.items() if family.input == "clip")
CLASSES = ["right", "up", "left", "down"]
FRAMES = ClassifySpec("frames", CLASSES, [5, 5, 5, 5], seq_len=6, frame_shape=[1, 16, 16])
TINY_CNN = FrameCNNOptions(channels=4, layers=2)
TINY = {  # small members keep every shape test fast; defaults are exercised by the end-to-end tests
    "cnn_rnn_transformer": {
        "cnn": {"channels": 8},
        "rnn": {"hidden_size": 8},
        "transformer": {"d_model": 8, "n_heads": 2, "ff_dim": 16, "n_layers": 1},
    },
    "c3d": {"channels": 4, "num_layers": 2},
    "convlstm": {"hidden_channels": 4},
}


def clips(batch: int = 3, spec: ClassifySpec = FRAMES, seed: int = 0) -> Tensor:
    return torch.randn(batch, spec.seq_len, *spec.frame_shape, generator=torch.Generator().manual_seed(seed))


def classifier(family: str, spec: ClassifySpec = FRAMES, pooling: str = "mean") -> Classifier:
    torch.manual_seed(0)
    return Classifier(family, TINY.get(family), spec=spec, embed_dim=8, pooling=pooling, stem_options=TINY_CNN).eval()


def test_every_family_reads_per_step_vectors_or_raw_clips() -> None:
    assert CLIP_FAMILIES == ["c3d", "convlstm"]
    assert {"frame_avg", "cnn", "rnn", "transformer", "cnn_rnn_transformer"} <= set(STEP_FAMILIES)


# The frames stem.


@pytest.mark.parametrize("pooling", sorted(SPATIAL_POOLINGS))
def test_the_frame_stem_turns_every_frame_into_one_vector(pooling: str) -> None:
    stem = build_stem(FRAMES, dim=8, dropout=0.0, options=FrameCNNOptions(channels=4, layers=2, pooling=pooling))
    h, mask = stem(clips())
    assert h.shape == (3, 6, 8) and mask is None
    assert (stem.out_dim, stem.seq_len) == (8, 6)


def test_frame_cnn_depth_and_width_set_its_blocks_and_output_width() -> None:
    cnn = FrameCNN([3, 24, 20], FrameCNNOptions(channels=5, layers=3, pooling="avg"))
    assert len(cnn.blocks) == 3 and cnn.out_dim == 5 * 4
    assert FrameCNN([3, 24, 20], FrameCNNOptions(channels=5, layers=2, pooling="flatten")).out_dim == 10 * 6 * 5
    assert cnn(torch.randn(7, 3, 24, 20)).shape == (7, 20)


def test_a_frame_cnn_deeper_than_the_frame_stops_pooling_at_one_pixel() -> None:
    assert FrameCNN([1, 4, 4], FrameCNNOptions(channels=2, layers=4))(torch.randn(2, 1, 4, 4)).shape == (2, 16)


@pytest.mark.parametrize("pooling", ["max", "avg", "attention"])
def test_pooled_frame_features_ignore_where_a_shape_is_unless_they_read_coordinates(pooling: str) -> None:
    """The same blob moved by whole pooling cells: without coordinate channels the features cannot tell."""

    def blob_at(x: int) -> Tensor:
        frame = torch.zeros(1, 1, 48, 48)
        frame[..., 16:20, x : x + 4] = 4.0  # about a bright shape on black after normalisation
        return frame

    features = {}
    for coords in (False, True):
        torch.manual_seed(0)
        cnn = FrameCNN([1, 48, 48], FrameCNNOptions(channels=4, layers=3, pooling=pooling, coords=coords)).eval()
        with torch.no_grad():
            features[coords] = cnn(blob_at(16)), cnn(blob_at(24))  # 8 pixels: one cell of three 2x2 poolings
    torch.testing.assert_close(*features[False])
    assert (features[True][0] - features[True][1]).abs().max() > 1e-3


@pytest.mark.parametrize("family", STEP_FAMILIES)
def test_every_per_step_family_classifies_clips_behind_the_frame_stem(family: str) -> None:
    logits = classifier(family)(clips())
    assert logits.shape == (3, 4) and torch.isfinite(logits).all()


def test_the_seed_pipeline_runs_cnn_then_lstm_then_transformer_on_frame_vectors() -> None:
    model = classifier("cnn_rnn_transformer")
    assert type(model.stem).__name__ == "FrameStem"
    members = [type(member).__name__ for member in model.encoder.members]
    assert members == ["CNNEncoder", "RNNEncoder", "TransformerEncoder"]
    assert model.encoder.members[1].rnn.mode == "LSTM"


# The raw-clip families.


@pytest.mark.parametrize("family", CLIP_FAMILIES)
@pytest.mark.parametrize("frame_shape, clip_len", [([1, 16, 16], 6), ([3, 24, 20], 8), ([3, 9, 7], 1)])
def test_clip_families_read_raw_frames_and_give_their_declared_sequence(
    family: str, frame_shape: list, clip_len: int
) -> None:
    spec = replace(FRAMES, frame_shape=frame_shape, seq_len=clip_len)
    model = classifier(family, spec)
    assert type(model.stem).__name__ == "ClipStem"
    x = clips(2, spec)
    h, mask = model.encoder(*model.stem(x))
    assert h.shape == (2, model.encoder.out_len, model.encoder.out_dim) and mask is None
    assert model(x).shape == (2, 4)


def test_c3d_keeps_time_in_its_first_pooling_and_halves_it_in_later_ones() -> None:
    encoder = build_encoder("c3d", {"channels": 4, "num_layers": 3}, in_dim=(1, 16, 16), seq_len=8)
    assert (encoder.out_len, encoder.out_dim) == (2, 16)  # 8 -> 8 -> 4 -> 2 steps; 4 -> 8 -> 16 channels


def test_convlstm_keeps_one_output_per_frame_and_its_state_carries_earlier_frames() -> None:
    torch.manual_seed(0)
    encoder = build_encoder("convlstm", {"hidden_channels": 4, "dropout": 0.0}, in_dim=(1, 16, 16), seq_len=6).eval()
    x = clips(1)
    changed_first = x.clone()
    changed_first[:, 0] += 1.0
    with torch.no_grad():
        h, changed = encoder(x)[0], encoder(changed_first)[0]
    assert h.shape == (1, 6, 4)
    assert (h[:, -1] - changed[:, -1]).abs().max() > 1e-4  # the last step still remembers the first frame


def test_clip_families_refuse_per_step_input_and_say_where_they_work() -> None:
    with pytest.raises(ConfigError, match=r"the c3d family reads raw clips .* needs the frame shape"):
        build_encoder("c3d", None, in_dim=16, seq_len=15)
    keypoints = ClassifySpec("vectors", [str(i) for i in range(11)], [1] * 11, seq_len=15, n_inputs=16)
    with pytest.raises(ConfigError, match="reads 'clip' input, which input_kind frames gives but 'vectors' does not"):
        Classifier("convlstm", spec=keypoints, embed_dim=8)


# The frame-average baseline.


def test_the_frame_average_baseline_ignores_frame_order_and_temporal_families_do_not() -> None:
    x = clips()
    reversed_time = x.flip(1)
    with torch.no_grad():
        average = classifier("frame_avg")
        torch.testing.assert_close(average(x), average(reversed_time))
        for family in ("rnn", "transformer", "c3d", "convlstm"):
            model = classifier(family, pooling="last")
            assert (model(x) - model(reversed_time)).abs().max() > 1e-4, family


def test_the_frame_average_is_one_step_per_item_that_counts_only_real_steps() -> None:
    torch.manual_seed(0)
    encoder = build_encoder("frame_avg", {"hidden_size": 5}, in_dim=3, seq_len=None).eval()
    x, mask = torch.randn(2, 4, 3), torch.tensor([[True, True, False, False], [True, True, True, True]])
    with torch.no_grad():
        h, out_mask = encoder(x, mask)
        alone, _ = encoder(x[:1, :2])
    assert h.shape == (2, 1, 5) and out_mask.tolist() == [[True], [True]]
    torch.testing.assert_close(h[:1], alone)


# Through the ClassificationModule.


def module_for(family: str, spec: ClassifySpec, *words: str) -> ClassificationModule:
    torch.manual_seed(0)
    model_words = [f"{key}={value}" for key, value in flatten({"model": TINY.get(family, {})}).items()]
    config = parse_run_args(
        [
            "--data",
            "moving-shapes",
            "--model",
            family,
            "task.embed_dim=8",
            "stem.channels=4",
            "stem.layers=2",
            *model_words,
            *words,
        ]
    )
    return ClassificationModule(config, spec)


@pytest.mark.parametrize("family", ["frame_avg", "cnn_rnn_transformer", "c3d", "convlstm"])
def test_multi_clip_test_items_average_their_clips_probabilities(family: str) -> None:
    spec = replace(FRAMES, test_clips=3)
    module = module_for(family, spec).eval()
    x = clips(6).view(2, 3, *clips(6).shape[1:])  # two test items of three clips each
    y = torch.tensor([0, 2])
    trainer = pl.Trainer(
        accelerator="cpu",
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
    )
    scores = trainer.test(module, dataloaders=DataLoader([(x, y)], batch_size=None), verbose=False)[0]
    with torch.no_grad():
        per_clip = module(x.flatten(0, 1)).softmax(dim=-1).view(2, 3, -1)
    torch.testing.assert_close(module.test_predictions.probs, per_clip.mean(dim=1))
    assert 0.0 <= scores["test_acc"] <= 1.0 and "baseline_majority_acc" in scores


def test_frame_options_are_a_documented_stem_section_that_reaches_the_frame_cnn() -> None:
    help_text = run_parser("moving-shapes", "rnn").format_help()
    assert "--stem.pooling" in help_text and "CoordConv" in help_text and "--task.frame_pooling" not in help_text
    module = module_for(
        "rnn", FRAMES, "stem.layers=3", "stem.channels=6", "stem.pooling=attention", "stem.coords=false"
    )
    cnn = module.model.stem.cnn
    assert len(cnn.blocks) == 3 and cnn.out_dim == 24 and type(cnn.pool).__name__ == "SpatialAttentionPool"
    assert not cnn.coords
    with pytest.raises(ConfigError):
        parse_run_args(["--data", "moving-shapes", "stem.pooling=median"])


# The video search space.

VIDEO_KNOBS = {
    "stem.channels",
    "stem.layers",
    "stem.pooling",
    "data.clip_len",
    "data.frame_stride",
    "data.crop",
    "task.input_noise",
    "task.label_smoothing",
    "data.batch_size",
}


def sampled_configs(data: str, family: str, n: int = 3) -> list[dict]:
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    space = load_space()
    configs = []
    for _ in range(n):
        overrides = sample_overrides(study.ask(), space, data, family, fixed=set())
        configs.append(config_from_dict(nest({**overrides, "data.name": data, "model.family": family})))
    return configs


def spec_for(config: dict) -> ClassifySpec:
    data = config["data"]
    if data["name"] == "gestures":
        return ClassifySpec("vectors", [str(i) for i in range(11)], [1] * 11, seq_len=data["clip_len"], n_inputs=16)
    side = data["crop"] or data["frame_size"]
    return replace(FRAMES, frame_shape=[data["channels"], side, side], seq_len=data["clip_len"])


def test_the_video_search_space_tunes_the_frame_stem_clip_length_and_augmentation() -> None:
    space = load_space()["datasets"]
    assert VIDEO_KNOBS <= set(space["moving-shapes"])
    assert {"data.clip_len", "data.stride", "task.input_noise", "task.label_smoothing"} <= set(space["gestures"])
    assert "data.flip" not in space["moving-shapes"]  # a flip would swap left and right, and so the label


@pytest.mark.parametrize(
    "data, families",
    [
        ("moving-shapes", [*ClassificationModule.sweep_families, "frame_avg", "c3d", "convlstm"]),
        ("gestures", [*ClassificationModule.sweep_families, "frame_avg"]),
    ],
)
def test_every_sampled_video_trial_is_a_valid_config_that_builds_a_model(data: str, families: list[str]) -> None:
    for family in families:
        for config in sampled_configs(data, family):
            module = ClassificationModule(config, spec_for(config))
            assert sum(p.numel() for p in module.parameters()) > 0, family
