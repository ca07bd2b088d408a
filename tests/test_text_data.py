"""The text datamodule: duplicates dropped before a seeded stratified split, a tokenizer fitted on the
training split only, token batches padded to their longest item, and bad files rejected with a clear fix."""

import json
import logging
import shutil
from argparse import ArgumentError
from pathlib import Path

import pytest
import torch
from jsonargparse import ArgumentParser

from datamodules import DATASETS
from datamodules.errors import ConfigError, DataError
from datamodules.text import TextDataModule, TextOptions
from datamodules.text_vocab import PAD_ID, UNK_ID, normalised, words

# 403 rows repeat an earlier message exactly (text/PROVENANCE.md) and 12 more differ from one only in case or spacing.
SMS_ROWS, SMS_DUPLICATES = 5574, 415


def load(path: Path, **options) -> TextDataModule:
    datamodule = TextDataModule(TextOptions(path=str(path), **options))
    datamodule.setup()
    return datamodule


def write(tmp_path: Path, content: str | bytes, name: str = "data.tsv") -> Path:
    path = tmp_path / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    return path


def synthetic_rows(n: int) -> str:
    """n distinct messages, every third one spam."""
    return "".join(f"{'spam' if i % 3 == 0 else 'ham'}\tmessage number {i}\n" for i in range(n))


@pytest.fixture(scope="module")
def sms_file(shared_data: Path) -> Path:
    return shared_data / "text" / "SMSSpamCollection"


@pytest.fixture(scope="module")
def sms(sms_file: Path) -> TextDataModule:
    return load(sms_file)


@pytest.fixture(scope="module")
def sms_slice(sms_file: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The first 800 messages of the real file, for tests that build several datamodules."""
    path = tmp_path_factory.mktemp("sms") / "slice.tsv"
    path.write_bytes(b"".join(sms_file.read_bytes().splitlines(keepends=True)[:800]))
    return path


def split_texts(datamodule: TextDataModule, split: str) -> list[str]:
    return datamodule.datasets[split].texts


def test_registered_as_sms_for_classification() -> None:
    assert DATASETS["sms"] is TextDataModule
    assert TextDataModule.task == "classify"


def test_options_become_documented_cli_arguments() -> None:
    parser = ArgumentParser(exit_on_error=False)
    parser.add_class_arguments(TextOptions, "data")
    config = parser.parse_args(
        ["--data.tokenizer", "bpe", "--data.column_names", "[text, label]", "--data.max_len", "32"]
    )
    assert (config.data.tokenizer, tuple(config.data.column_names), config.data.max_len) == (
        "bpe",
        ("text", "label"),
        32,
    )
    assert "longer texts are truncated" in parser.format_help()
    with pytest.raises(ArgumentError):
        parser.parse_args(["--data.tokenizer", "sentencepiece"])


def test_duplicate_messages_are_removed_before_splitting_and_counted(sms: TextDataModule) -> None:
    spec = sms.spec
    assert spec.details["duplicates_removed"] == SMS_DUPLICATES and spec.details["duplicates_conflicting"] == 0
    assert spec.details["n_train"] + spec.details["n_val"] + spec.details["n_test"] == SMS_ROWS - SMS_DUPLICATES
    every_text = [normalised(text, True) for split in ("train", "val", "test") for text in split_texts(sms, split)]
    assert len(set(every_text)) == len(every_text)


def test_no_test_message_appears_in_train_or_val(sms: TextDataModule) -> None:
    seen = set(split_texts(sms, "train")) | set(split_texts(sms, "val"))
    assert not seen & set(split_texts(sms, "test"))


def test_split_is_stratified_by_class(sms: TextDataModule) -> None:
    shares = {split: sms.datasets[split].labels.double().mean().item() for split in ("train", "val", "test")}
    overall = (sum(shares[s] * len(sms.datasets[s]) for s in shares)) / sum(len(sms.datasets[s]) for s in shares)
    assert sms.spec.class_names == ["ham", "spam"]
    assert all(abs(share - overall) < 0.01 for share in shares.values()), shares
    assert sms.spec.details["n_test"] == pytest.approx(0.2 * (SMS_ROWS - SMS_DUPLICATES), abs=2)


def test_same_seed_gives_the_same_split_and_another_seed_a_different_one(sms_slice: Path) -> None:
    first, again, other = load(sms_slice, seed=1), load(sms_slice, seed=1), load(sms_slice, seed=2)
    assert split_texts(first, "test") == split_texts(again, "test")
    assert split_texts(first, "test") != split_texts(other, "test")
    assert sorted(split_texts(first, "test") + split_texts(first, "val") + split_texts(first, "train")) == sorted(
        split_texts(other, "test") + split_texts(other, "val") + split_texts(other, "train")
    )


def test_vocabulary_is_built_from_the_training_split_only(sms: TextDataModule) -> None:
    vocab = sms.state_dict()["tokenizer"]["vocab"]
    train_words = set(words(split_texts(sms, "train"), lowercase=True))
    assert vocab[:2] == ["<pad>", "<unk>"]
    assert set(vocab[2:]) == train_words  # min_freq 1 and a vocabulary cap above the train word count
    test_only = sorted(set(words(split_texts(sms, "test"), lowercase=True)) - train_words)
    assert test_only, "the real test split has words never seen in training"
    assert sms.encode_texts(test_only[:5]).tolist() == [[UNK_ID]] * 5
    assert UNK_ID not in sms.encode_texts(["call me later"]).tolist()[0]


def test_file_split_column_decides_the_split_and_the_vocabulary(tmp_path: Path) -> None:
    rows = [
        "label,text,split",
        'ham,"see you at lunch, ok",train',
        "spam,win cash now,train",
        "ham,lunch ok,val",
        "spam,win a zebra,test",
    ]
    datamodule = load(
        write(tmp_path, "\n".join(rows) + "\n", "data.csv"),
        sep=",",
        header=True,
        quoting="minimal",
        split_column="split",
    )
    assert (
        datamodule.spec.details["n_train"],
        datamodule.spec.details["n_val"],
        datamodule.spec.details["n_test"],
    ) == (2, 1, 1)
    assert split_texts(datamodule, "train")[0] == "see you at lunch, ok"
    assert datamodule.encode_texts(["win zebra"]).tolist() == [[datamodule.encode_texts(["win"]).item(), UNK_ID]]


def test_batches_are_long_ids_padded_to_their_longest_item(sms_slice: Path) -> None:
    datamodule = load(sms_slice, batch_size=16)
    for loader in (datamodule.train_dataloader(), datamodule.val_dataloader(), datamodule.test_dataloader()):
        for x, y in loader:
            assert x.dtype == y.dtype == torch.long and x.shape[0] == y.shape[0]
            real = x != PAD_ID
            lengths = real.sum(1)
            assert lengths.max() == x.shape[1] and lengths.min() >= 1
            assert torch.equal(real, torch.arange(x.shape[1]) < lengths[:, None])  # padding only at the end


def test_max_len_truncates_long_texts(sms_slice: Path) -> None:
    datamodule = load(sms_slice, max_len=6)
    widths = [x.shape[1] for x, _ in datamodule.val_dataloader()]
    assert max(widths) == 6 and datamodule.spec.details["max_len"] == 6
    assert datamodule.encode_texts(["one two three four five six seven eight"]).shape == (1, 6)


def test_bpe_splits_unseen_words_into_known_pieces(sms_slice: Path) -> None:
    datamodule = load(sms_slice, tokenizer="bpe", vocab_size=300)
    assert datamodule.spec.vocab_size <= 300
    pieces = datamodule.encode_texts(["unfreeclaimableness"])[0].tolist()
    assert len(pieces) > 1 and UNK_ID not in pieces and PAD_ID not in pieces
    assert datamodule.encode_texts(["\u2603"]).tolist() == [[UNK_ID]]  # a character never seen in training


@pytest.mark.parametrize("tokenizer", ["word", "bpe"])
def test_state_dict_round_trip_gives_identical_encodings(sms_slice: Path, tokenizer: str) -> None:
    fitted = load(sms_slice, tokenizer=tokenizer, vocab_size=500)
    restored = TextDataModule(TextOptions(path=str(sms_slice)))
    restored.load_state_dict(json.loads(json.dumps(fitted.state_dict())))
    texts = split_texts(fitted, "test") + ["an unseen line \u2603", ""]
    assert torch.equal(restored.encode_texts(texts), fitted.encode_texts(texts))
    assert restored.class_names == fitted.class_names == ["ham", "spam"]


def test_class_counts_are_the_training_splits(sms_slice: Path) -> None:
    spec = load(sms_slice).spec
    assert sum(spec.class_counts) == spec.details["n_train"] and len(spec.class_counts) == spec.num_classes == 2
    assert spec.class_counts[1] < spec.class_counts[0]  # spam is rarer: what task.class_weighting corrects


def test_the_run_seed_reorders_training_batches_but_keeps_the_split_and_the_fingerprint(sms_slice: Path) -> None:
    first, other = load(sms_slice, shuffle_seed=1), load(sms_slice, shuffle_seed=2)
    assert all(split_texts(first, split) == split_texts(other, split) for split in ("train", "val", "test"))
    assert first.fingerprint() == other.fingerprint()
    assert not torch.equal(next(iter(first.train_dataloader()))[0], next(iter(other.train_dataloader()))[0])


def test_weighted_sampler_draws_classes_about_equally_and_repeats_under_its_seed(sms_slice: Path) -> None:
    datamodule = load(sms_slice, sampler="weighted", batch_size=32)
    labels = torch.cat([y for _, y in datamodule.train_dataloader()])
    assert len(labels) == datamodule.spec.details["n_train"]
    assert 0.4 < labels.double().mean().item() < 0.6
    again = torch.cat([y for _, y in load(sms_slice, sampler="weighted", batch_size=32).train_dataloader()])
    assert torch.equal(labels, again)


def test_training_batches_cover_every_item_once_grouped_by_length(sms_slice: Path) -> None:
    datamodule = load(sms_slice, batch_size=16)
    train = list(datamodule.train_dataloader())
    labels = torch.cat([y for _, y in train])
    assert torch.equal(torch.bincount(labels), torch.tensor(datamodule.spec.class_counts))

    def padding_share(batches: list) -> float:
        return sum((x == PAD_ID).sum().item() for x, _ in batches) / sum(x.numel() for x, _ in batches)

    assert padding_share(train) < padding_share(list(datamodule.val_dataloader())) / 2


def test_fingerprint_ignores_where_the_file_lives_but_not_shaping_options(sms_slice: Path, tmp_path: Path) -> None:
    def digest(path: Path, **options) -> str:
        return TextDataModule(TextOptions(path=str(path), **options)).fingerprint()["digest"]

    moved = Path(shutil.copy(sms_slice, tmp_path / sms_slice.name))
    assert digest(moved) == digest(sms_slice) == digest(sms_slice, batch_size=7)
    assert digest(sms_slice, max_len=9) != digest(sms_slice)


# Bad input: each error names the file, the column or line, and the fix.


def test_missing_columns_are_named_with_the_columns_found(tmp_path: Path) -> None:
    path = write(tmp_path, "category,message\nham,hi\nspam,win\n", "data.csv")
    with pytest.raises(DataError, match=r"no column 'text', 'label'; found \['category', 'message'\]") as error:
        load(path, sep=",", header=True)
    assert str(path) in str(error.value)


def test_empty_texts_are_reported_by_line(tmp_path: Path) -> None:
    path = write(tmp_path, "ham\thello\nspam\t  \nham\tfine\nham\t\n")
    with pytest.raises(DataError, match=r"column 'text' is empty on 2 line\(s\): 2, 4; fill or delete") as error:
        load(path)
    assert str(path) in str(error.value)


def test_a_label_column_with_one_class_is_rejected(tmp_path: Path) -> None:
    path = write(tmp_path, "".join(f"ham\tmessage {i}\n" for i in range(20)))
    with pytest.raises(DataError, match=r"column 'label' holds one class \['ham'\]"):
        load(path)


def test_undecodable_bytes_are_reported_with_offset_and_line(tmp_path: Path) -> None:
    path = write(tmp_path, b"ham\thello\nspam\tbad \xff byte\n")
    with pytest.raises(DataError, match=r"byte 0xff at offset 19 \(line 2\) is not UTF-8; re-save") as error:
        load(path)
    assert str(path) in str(error.value)


def test_too_few_rows_for_a_split_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(
        DataError,
        match=r"the val split is empty: 4 unique rows \{'ham': 2, 'spam': 2\} with val_fraction=0.1, test_fraction=0.2; add rows",
    ):
        load(write(tmp_path, "ham\ta\nham\tb\nspam\tc\nspam\td\n"))


def test_a_class_missing_from_training_is_rejected(tmp_path: Path) -> None:
    path = write(tmp_path, "label,text,split\nham,a,train\nham,b,val\nspam,c,test\n", "data.csv")
    with pytest.raises(DataError, match=r"classes \['spam'\] have no training row"):
        load(path, sep=",", header=True, split_column="split")


def test_split_values_other_than_train_val_test_are_rejected(tmp_path: Path) -> None:
    path = write(tmp_path, "label,text,split\nham,a,training\nspam,b,val\nham,c,test\n", "data.csv")
    with pytest.raises(DataError, match=r"column 'split' holds \['training'\]; use only train, val, test"):
        load(path, sep=",", header=True, split_column="split")


def test_ragged_lines_name_the_line_and_the_options_to_check(tmp_path: Path) -> None:
    path = write(tmp_path, synthetic_rows(10) + "ham\ttext with\ta tab\n")
    with pytest.raises(
        DataError,
        match=r"line 11 has 3 '\\t'-separated field\(s\) .*quoted \(data.quoting=minimal\) or use another data.sep",
    ):
        load(path)


def test_duplicates_are_dropped_before_the_split_size_check(tmp_path: Path) -> None:
    datamodule = load(write(tmp_path, synthetic_rows(30) + synthetic_rows(30)))
    assert datamodule.spec.details["duplicates_removed"] == 30
    assert sum(datamodule.spec.details[f"n_{split}"] for split in ("train", "val", "test")) == 30


# Lines 1-6; the rows after them are distinct, so the splits are never too small.
CASE_AND_SPACING = (
    "ham\tHello there\n"
    "ham\thello   there\n"  # the same words to the tokenizer
    "spam\t  HELLO there \n"  # the same words, another label
    "spam\tWin a prize, now\n"
    "spam\twin a prize ,now\n"  # the tokenizer splits punctuation off words: the same tokens
    "ham\tWin a   prize, now\n"  # the same tokens whatever the case, another label
)


def test_texts_the_tokenizer_sees_alike_are_duplicates_whatever_their_case_and_spacing(tmp_path: Path) -> None:
    datamodule = load(write(tmp_path, CASE_AND_SPACING + synthetic_rows(30)))
    assert datamodule.spec.details["duplicates_removed"] == 4
    kept = [text for split in ("train", "val", "test") for text in split_texts(datamodule, split)]
    assert "Hello there" in kept and "Win a prize, now" in kept and len(kept) == 32


def test_case_tells_texts_apart_when_lowercase_is_off(tmp_path: Path) -> None:
    datamodule = load(write(tmp_path, CASE_AND_SPACING + synthetic_rows(30)), lowercase=False)
    assert (
        datamodule.spec.details["duplicates_removed"] == 1
    )  # only "Win a   prize, now" has the words of an earlier text
    assert datamodule.spec.details["duplicates_conflicting"] == 1


def test_duplicates_with_another_label_are_counted_and_shown_keeping_the_first_label(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="datamodules.text"):
        datamodule = load(write(tmp_path, CASE_AND_SPACING + synthetic_rows(30)))
    assert datamodule.spec.details["duplicates_conflicting"] == 2
    [warning] = [record.getMessage() for record in caplog.records if record.levelno == logging.WARNING]
    assert "data.tsv: 2 duplicate texts have another label than their first occurrence" in warning
    assert "line 3 ('  HELLO there ') is 'spam' but line 1 ('Hello there') is 'ham'" in warning
    labels = {
        text: datamodule.class_names[label]
        for split in ("train", "val", "test")
        for text, label in zip(split_texts(datamodule, split), datamodule.datasets[split].labels.tolist(), strict=True)
    }
    assert labels["Hello there"] == "ham" and labels["Win a prize, now"] == "spam"


def test_invalid_option_values_are_rejected_with_the_choices() -> None:
    with pytest.raises(ConfigError, match="tokenizer='sentencepiece'; choose one of: word, bpe"):
        TextOptions(tokenizer="sentencepiece")
    with pytest.raises(ConfigError, match="sum to < 1"):
        TextOptions(val_fraction=0.5, test_fraction=0.5)
