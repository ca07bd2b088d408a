"""Tokenisers for labelled text, fitted on the training split only.

Both kinds share one `tokenizers.Tokenizer` pipeline (optional lowercasing, a split on whitespace and
punctuation, truncation to max_len), so a "word" means the same to both, and ids 0 and 1 are always
<pad> and <unk>. The fitted tokenizer saves to a JSON-serialisable dict and loads back unchanged, so
predict and reproduce encode text exactly as training did.
"""

from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers
from torch import Tensor

PAD, UNK = "<pad>", "<unk>"
SPECIAL_TOKENS = [PAD, UNK]  # this order fixes the ids below
PAD_ID, UNK_ID = 0, 1


def _pipeline(model: models.Model, lowercase: bool, max_len: int) -> Tokenizer:
    tokenizer = Tokenizer(model)
    if lowercase:
        tokenizer.normalizer = normalizers.Lowercase()
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer.enable_truncation(max_length=max_len)
    return tokenizer


# The pipeline's own normaliser and splitter (see _pipeline), so what is counted or compared matches encodings.
_LOWER, _SPLIT = normalizers.Lowercase(), pre_tokenizers.Whitespace()


def text_words(text: str, lowercase: bool) -> list[str]:
    """The words the pipeline sees in one text: lowercased if asked, split on whitespace and punctuation."""
    return [word for word, _ in _SPLIT.pre_tokenize_str(_LOWER.normalize_str(text) if lowercase else text)]


def words(texts: list[str], lowercase: bool) -> Iterator[str]:
    """The words the pipeline sees in every text, in order."""
    for text in texts:
        yield from text_words(text, lowercase)


def normalised(text: str, lowercase: bool) -> str:
    """The text as both tokenizers see it, as one string: two texts with the same one encode alike."""
    return " ".join(text_words(text, lowercase))


def _word_tokenizer(vocab: list[str], lowercase: bool, max_len: int) -> Tokenizer:
    return _pipeline(models.WordLevel({token: i for i, token in enumerate(vocab)}, unk_token=UNK), lowercase, max_len)


def fit_word(texts: list[str], vocab_size: int, min_freq: int, lowercase: bool, max_len: int) -> Tokenizer:
    """Whole words seen at least `min_freq` times, most frequent first; ties go alphabetically so the
    vocabulary is the same on every run (the library's WordLevelTrainer leaves tie order unspecified)."""
    counts = Counter(words(texts, lowercase))
    ranked = sorted((word for word, n in counts.items() if n >= min_freq), key=lambda word: (-counts[word], word))
    return _word_tokenizer(SPECIAL_TOKENS + ranked[: vocab_size - len(SPECIAL_TOKENS)], lowercase, max_len)


def fit_bpe(texts: list[str], vocab_size: int, min_freq: int, lowercase: bool, max_len: int) -> Tokenizer:
    """Byte-pair encoding. Chosen over the library's WordPiece because an unseen word still splits into
    pieces seen in training and only an unseen character becomes <unk>, whereas WordPiece turns the whole
    word into <unk> when any piece is missing: a big loss on SMS misspellings and symbols.
    Training is deterministic (same texts and options give the same merges)."""
    tokenizer = _pipeline(models.BPE(unk_token=UNK), lowercase, max_len)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_freq,
        special_tokens=SPECIAL_TOKENS,
        show_progress=False,
        limit_alphabet=vocab_size - len(SPECIAL_TOKENS),  # keeps vocab_size a true maximum on tiny vocabularies
    )
    tokenizer.train_from_iterator(texts, trainer)
    return tokenizer


def _word_state(tokenizer: Tokenizer) -> dict[str, Any]:
    vocab = tokenizer.get_vocab()
    return {
        "vocab": sorted(vocab, key=vocab.__getitem__),
        "lowercase": tokenizer.normalizer is not None,
        "max_len": tokenizer.truncation["max_length"],
    }


def _word_from_state(state: dict[str, Any]) -> Tokenizer:
    return _word_tokenizer(state["vocab"], state["lowercase"], state["max_len"])


@dataclass(frozen=True)
class Scheme:
    fit: Callable[[list[str], int, int, bool, int], Tokenizer]
    save: Callable[[Tokenizer], dict[str, Any]]
    load: Callable[[dict[str, Any]], Tokenizer]


SCHEMES: dict[str, Scheme] = {
    "word": Scheme(fit_word, _word_state, _word_from_state),
    "bpe": Scheme(
        fit_bpe, lambda tokenizer: {"json": tokenizer.to_str()}, lambda state: Tokenizer.from_str(state["json"])
    ),
}


class TextTokenizer:
    """A fitted tokenizer of one scheme: texts -> LongTensor ids padded with PAD_ID."""

    def __init__(self, scheme: str, tokenizer: Tokenizer) -> None:
        self.scheme, self.tokenizer = scheme, tokenizer

    @property
    def vocab_size(self) -> int:
        return self.tokenizer.get_vocab_size()

    def encode(self, texts: list[str]) -> tuple[Tensor, Tensor]:
        """Ids [N, T] padded to the longest text (at most max_len) and the true lengths [N]."""
        # A text with no tokens becomes one <unk>, so no row is all padding (an all-False mask breaks pooling).
        rows = [encoding.ids or [UNK_ID] for encoding in self.tokenizer.encode_batch(texts)]
        ids = torch.full((len(rows), max(map(len, rows), default=0)), PAD_ID, dtype=torch.long)
        for i, row in enumerate(rows):
            ids[i, : len(row)] = torch.tensor(row)
        return ids, torch.tensor(list(map(len, rows)), dtype=torch.long)

    def state_dict(self) -> dict[str, Any]:
        return {"scheme": self.scheme, **SCHEMES[self.scheme].save(self.tokenizer)}

    @classmethod
    def from_state_dict(cls, state: dict[str, Any]) -> "TextTokenizer":
        return cls(state["scheme"], SCHEMES[state["scheme"]].load(state))


def fit_tokenizer(
    scheme: str, texts: list[str], vocab_size: int, min_freq: int, lowercase: bool, max_len: int
) -> TextTokenizer:
    """Fit `scheme` ("word" or "bpe") on `texts`, which must be the training split only."""
    return TextTokenizer(scheme, SCHEMES[scheme].fit(texts, vocab_size, min_freq, lowercase, max_len))
