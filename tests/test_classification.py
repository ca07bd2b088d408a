"""Classification: modality stems, pooling heads, every variable-length family on padded token batches, and the
shared classification LightningModule (loss weighting, metrics, majority baseline, multi-clip test items, report)."""

import math
from dataclasses import replace

import lightning.pytorch as pl
import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader

from datamodules.errors import ConfigError
from datamodules.specs import ClassifySpec
from experiments.config import config_from_dict, parse_run_args, run_parser
from experiments.sweep.space import knobs_for, load_space, nest
from experiments.task_reports import TASK_REPORTS, classification_report
from lightning_modules import TASKS
from lightning_modules.classify_model import Classifier
from lightning_modules.classify_training import ClassificationModule, MatthewsCorrCoef, Predictions
from lightning_modules.families import built_in_families
from lightning_modules.stems import STEMS, build_stem

VARIABLE_LENGTH_FAMILIES = [
    "cnn",
    "rnn",
    "transformer",
    "cnn_rnn",
    "cnn_transformer",
    "cnn_rnn_transformer",
    "frame_avg",
]
FIXED_LENGTH_FAMILIES = ["linear", "mlp"]
CLIP_FAMILIES = ["c3d", "convlstm"]  # read raw frames only: specified in test_video_models.py
FORECAST_ONLY_FAMILIES = ["segrnn", "sparsetsf"]  # decode a forecast horizon themselves
POOLINGS = ["last", "mean", "max", "attention"]
CLASSES = ["ham", "spam", "phishing"]
TOKENS = ClassifySpec("tokens", CLASSES, [50, 10, 5], vocab_size=40, pad_id=0)
LENGTHS = [9, 4, 6, 1]


def padded_ids(lengths: list[int], seed: int = 0) -> Tensor:
    """Right-padded token ids [B, max(lengths)] with real ids in 2..39 (0 is padding, 1 unknown)."""
    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(2, TOKENS.vocab_size, (len(lengths), max(lengths)), generator=generator)
    return ids.masked_fill(torch.arange(max(lengths)) >= torch.tensor(lengths)[:, None], TOKENS.pad_id)


def classifier(family: str, family_config: dict | None = None, pooling: str = "mean") -> Classifier:
    torch.manual_seed(0)
    return Classifier(family, family_config, spec=TOKENS, embed_dim=16, pooling=pooling).eval()


# Models: stems, heads and every family behind them.


def test_every_family_is_classified_as_variable_length_fixed_length_clip_or_forecast_only() -> None:
    groups = VARIABLE_LENGTH_FAMILIES + FIXED_LENGTH_FAMILIES + CLIP_FAMILIES + FORECAST_ONLY_FAMILIES
    assert sorted(groups) == sorted(built_in_families())


@pytest.mark.parametrize("family", FORECAST_ONLY_FAMILIES)
def test_families_that_forecast_by_themselves_refuse_to_classify_and_say_what_works(family: str) -> None:
    with pytest.raises(ConfigError, match=rf"the {family} family decodes a forecast horizon itself.*cnn, rnn"):
        classifier(family)


@pytest.mark.parametrize("family", VARIABLE_LENGTH_FAMILIES)
def test_every_variable_length_family_gives_one_row_of_logits_per_padded_token_sequence(family: str) -> None:
    logits = classifier(family)(padded_ids(LENGTHS))
    assert logits.shape == (len(LENGTHS), TOKENS.num_classes) and torch.isfinite(logits).all()


@pytest.mark.parametrize("family", FIXED_LENGTH_FAMILIES)
def test_families_that_need_a_fixed_length_refuse_tokens_and_name_the_families_that_work(family: str) -> None:
    with pytest.raises(
        ConfigError, match=rf"the {family} family .* needs a fixed seq_len; use cnn, rnn or transformer"
    ):
        classifier(family)


@pytest.mark.parametrize("pooling", POOLINGS)
@pytest.mark.parametrize(
    "family, family_config",
    [
        ("rnn", {"cell": "lstm", "bidirectional": True, "num_layers": 2}),
        ("cnn", {"kernel_sizes": [3, 4, 5], "num_layers": 1}),  # Kim (2014)
        ("cnn", {"num_layers": 2, "dilation_growth": 2, "residual": True}),
        ("transformer", {"d_model": 16, "n_heads": 2}),
        (
            "cnn_rnn_transformer",
            {
                "cnn": {"channels": 8},
                "rnn": {"hidden_size": 8},
                "transformer": {"d_model": 8, "n_heads": 2, "ff_dim": 16},
            },
        ),
    ],
    ids=["bilstm", "kim_cnn", "tcn", "transformer", "cnn_rnn_transformer"],
)
def test_padding_does_not_change_a_sequences_logits(family: str, family_config: dict, pooling: str) -> None:
    model, ids = classifier(family, family_config, pooling), padded_ids(LENGTHS)
    with torch.no_grad():
        batched = model(ids)
        alone = torch.cat([model(ids[i : i + 1, :length]) for i, length in enumerate(LENGTHS)])
    torch.testing.assert_close(batched, alone, rtol=1e-5, atol=1e-5)


def test_an_item_with_no_step_left_after_a_pooling_cnn_is_an_error_not_a_guess() -> None:
    model = classifier("cnn", {"pool": "max", "pool_size": 2, "num_layers": 2})
    with pytest.raises(ConfigError, match="no real step left after the encoder.*model.pool=none"):
        model(padded_ids([8, 3]))


def test_token_stem_masks_padding_and_embeds_it_as_zeros() -> None:
    stem = build_stem(TOKENS, dim=8, dropout=0.0)
    h, mask = stem(padded_ids([3, 1]))
    assert mask.tolist() == [[True, True, True], [True, False, False]]
    assert h.shape == (2, 3, 8) and not h[1, 1:].any() and stem.seq_len is None


def test_vector_stem_projects_per_step_features_and_lets_fixed_length_families_work() -> None:
    spec = ClassifySpec("vectors", list("abcd"), [1] * 4, seq_len=10, n_inputs=6)
    h, mask = build_stem(spec, dim=8, dropout=0.0)(torch.randn(3, 10, 6))
    assert h.shape == (3, 10, 8) and mask is None
    assert Classifier("mlp", spec=spec, embed_dim=8)(torch.randn(3, 10, 6)).shape == (3, 4)


def test_an_input_kind_without_a_stem_lists_the_registered_ones() -> None:
    assert sorted(STEMS) == ["frames", "tokens", "values", "vectors"]
    with pytest.raises(
        ConfigError, match="no stem for input_kind 'audio'; registered: frames, tokens, values, vectors"
    ):
        build_stem(replace(TOKENS, input_kind="audio"), dim=8, dropout=0.0)


# The classification LightningModule, driven with known logits: an Echo model returns its input as logits.

SPEC = ClassifySpec("vectors", CLASSES, [50, 10, 5], n_inputs=3)


class Echo(nn.Module):
    def forward(self, x: Tensor) -> Tensor:
        return x


def run_config(*words: str) -> dict:
    return parse_run_args(["--data", "sms", "--model", "cnn", *words])


def echo_module(spec: ClassifySpec, *words: str) -> ClassificationModule:
    module = ClassificationModule(run_config(*words), spec)
    module.model = Echo()
    return module


def one_hot_logits(classes: list[int]) -> Tensor:
    return 5 * F.one_hot(torch.tensor(classes), len(CLASSES)).float()


def run_test(module: ClassificationModule, batches: list[tuple[Tensor, Tensor]]) -> dict[str, float]:
    trainer = pl.Trainer(
        accelerator="cpu",
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
    )
    return trainer.test(module, dataloaders=DataLoader(batches, batch_size=None), verbose=False)[0]


# Test labels are mostly spam, but the majority class is ham, the most frequent class in *training*.
LABELS, PREDICTED = [1, 1, 1, 1, 0, 2], [1, 1, 0, 1, 0, 2]


@pytest.fixture(scope="module")
def tested() -> tuple[ClassificationModule, dict[str, float]]:
    module = echo_module(SPEC)
    logits, labels = one_hot_logits(PREDICTED), torch.tensor(LABELS)
    return module, run_test(module, [(logits[:4], labels[:4]), (logits[4:], labels[4:])])


def test_classify_task_is_registered_and_its_options_are_documented_cli_options() -> None:
    assert TASKS["classify"] is ClassificationModule and ClassificationModule.sweep_metric == "val_f1"
    assert run_config("task.pooling=max", "task.label_smoothing=0.1")["task"]["pooling"] == "max"
    assert "max-over-time" in run_parser("sms", "cnn").format_help()
    with pytest.raises(ConfigError):
        run_config("task.pooling=median")


def test_test_metrics_cover_the_full_test_set_over_batches(tested) -> None:
    _, scores = tested
    assert scores["test_acc"] == pytest.approx(5 / 6)
    # ham: precision 1/2, recall 1; spam: precision 1, recall 3/4; phishing: perfect.
    assert scores["test_precision"] == pytest.approx((0.5 + 1 + 1) / 3)
    assert scores["test_recall"] == pytest.approx((1 + 0.75 + 1) / 3)
    assert scores["test_f1"] == pytest.approx((2 / 3 + 6 / 7 + 1) / 3)
    # One-vs-rest AUROC, ties counting half: ham 4.5/5 (item 2 ties the ham item), spam 7/8, phishing 1.
    assert scores["test_auroc"] == pytest.approx((0.9 + 0.875 + 1) / 3)


def test_per_class_f1_is_logged_under_each_class_name(tested) -> None:
    _, scores = tested
    assert (scores["test_f1_ham"], scores["test_f1_spam"], scores["test_f1_phishing"]) == pytest.approx(
        (2 / 3, 6 / 7, 1.0)
    )
    assert "test_f1_per_class" not in scores


def test_majority_baseline_always_predicts_the_most_frequent_training_class(tested) -> None:
    _, scores = tested
    assert scores["baseline_majority_acc"] == pytest.approx(1 / 6)  # one ham among six test items
    assert scores["baseline_majority_f1"] == pytest.approx((2 / 7 + 0 + 0) / 3)
    assert scores["baseline_majority_mcc"] == 0.0


def test_the_module_keeps_its_test_predictions_for_reports(tested) -> None:
    module, _ = tested
    assert module.test_predictions.labels.tolist() == LABELS
    assert module.test_predictions.probs.argmax(dim=1).tolist() == PREDICTED
    torch.testing.assert_close(module.test_predictions.probs.sum(dim=1), torch.ones(len(LABELS)))


def test_mcc_is_zero_for_a_constant_prediction_and_the_textbook_value_otherwise() -> None:
    constant = MatthewsCorrCoef(2)
    constant.update(torch.zeros(4, dtype=torch.long), torch.tensor([0, 0, 0, 1]))
    assert constant.compute() == 0.0  # torchmetrics' own MCC gives 0.58 here
    mixed = MatthewsCorrCoef(2)
    mixed.update(torch.tensor([0, 0, 0, 1, 1, 1, 0]), torch.tensor([0, 0, 0, 0, 1, 1, 1]))
    tp, tn, fp, fn = 2, 3, 1, 1
    textbook = (tp * tn - fp * fn) / math.sqrt((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn))
    assert mixed.compute().item() == pytest.approx(textbook)


@pytest.mark.filterwarnings("ignore:No positive samples in targets")  # no ham among the two items
def test_several_clips_per_test_item_are_averaged_as_probabilities() -> None:
    module = echo_module(replace(SPEC, test_clips=2))
    # Item 0: one clip sure of spam, one mildly ham; averaged probabilities say spam. Item 1: both clips say phishing.
    clips = torch.tensor([[[0.5, 0.0, 0.0], [0.0, 6.0, 0.0]], [[0.0, 0.0, 2.0], [0.0, 0.0, 3.0]]])
    scores = run_test(module, [(clips, torch.tensor([1, 2]))])
    torch.testing.assert_close(module.test_predictions.probs, clips.softmax(dim=-1).mean(dim=1))
    assert scores["test_acc"] == 1.0


@pytest.mark.filterwarnings("ignore:You are trying to `self.log")
def test_class_weights_and_label_smoothing_reach_the_loss() -> None:
    logits, labels = torch.randn(6, 3, generator=torch.Generator().manual_seed(0)), torch.tensor(LABELS)
    inverse = torch.tensor([65 / (3 * 50), 65 / (3 * 10), 65 / (3 * 5)])
    module = echo_module(SPEC, "task.label_smoothing=0.2")  # inverse class weights are the default
    loss = module.training_step((logits, labels), 0)
    assert loss.item() == pytest.approx(F.cross_entropy(logits, labels, weight=inverse, label_smoothing=0.2).item())
    assert loss.item() != pytest.approx(F.cross_entropy(logits, labels, label_smoothing=0.2).item())
    plain = echo_module(SPEC, "task.class_weighting=none").training_step((logits, labels), 0)
    assert plain.item() == pytest.approx(F.cross_entropy(logits, labels).item())


def test_a_weighted_sampler_with_inverse_class_weights_is_refused_naming_both_keys_and_the_fix() -> None:
    with pytest.raises(
        ConfigError, match=r"data\.sampler=weighted and task\.class_weighting=inverse.*task\.class_weighting=none"
    ):
        echo_module(SPEC, "data.sampler=weighted")
    assert echo_module(SPEC, "data.sampler=weighted", "task.class_weighting=none").loss_fn.weight is None


@pytest.mark.filterwarnings("ignore:You are trying to `self.log")
def test_input_noise_perturbs_float_inputs_but_never_token_ids() -> None:
    module = echo_module(SPEC, "task.input_noise=1.0")
    logits, labels = torch.zeros(4, 3), torch.tensor([0, 1, 2, 0])
    assert module.training_step((logits, labels), 0).item() != pytest.approx(math.log(3))
    token_module = ClassificationModule(run_config("task.input_noise=1.0"), TOKENS)
    token_module.eval()  # dropout off: only noise could make two forward passes differ
    ids = padded_ids([5, 3])
    torch.testing.assert_close(
        token_module.training_step((ids, labels[:2]), 0), token_module.training_step((ids, labels[:2]), 0)
    )


# The report logged with a finished classification run.


def test_report_writes_a_confusion_matrix_figure_and_a_per_class_table(tmp_path) -> None:
    module = echo_module(SPEC)
    module.test_predictions = Predictions(one_hot_logits(PREDICTED).softmax(dim=1), torch.tensor(LABELS))
    assert TASK_REPORTS["classify"].from_test is classification_report
    paths = classification_report(None, module, tmp_path, "cnn on sms")
    assert [p.name for p in paths] == ["confusion_matrix.png", "per_class_report.csv"]
    assert paths[0].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    table = pd.read_csv(paths[1]).set_index("class")
    assert list(table.index) == CLASSES and list(table.columns) == ["precision", "recall", "f1", "support"]
    np.testing.assert_allclose(table.loc["spam"], [1.0, 0.75, 6 / 7, 4], rtol=1e-5)
    np.testing.assert_allclose(table.loc["ham"], [0.5, 1.0, 2 / 3, 1], rtol=1e-5)


# The text search space.


@pytest.mark.parametrize("family", VARIABLE_LENGTH_FAMILIES)
def test_every_sms_search_space_knob_is_a_valid_key_of_a_text_run(family: str) -> None:
    space = load_space()
    knobs = knobs_for(space, "sms", family, fixed=set())
    assert {
        "task.embed_dim",
        "task.pooling",
        "task.label_smoothing",
        "task.class_weighting",
        "data.tokenizer",
        "data.vocab_size",
        "data.max_len",
    } <= set(knobs)
    first = {
        path: (dist["choice"] if "choice" in dist else dist.get("float") or dist.get("int"))[0]
        for path, dist in knobs.items()
    }
    config = config_from_dict(nest({**first, "data.name": "sms", "model.family": family}))
    assert config["task"]["pooling"] == space["datasets"]["sms"]["task.pooling"]["choice"][0]
