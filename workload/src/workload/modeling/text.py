"""Tokenization (a `tokenizers` WordLevel vocabulary trained on the train split) and n-gram feature hashing.

`TextEncoder` turns texts into token ids (training, evaluation, the baseline and the API share it, markup
stripped by `strip_markup` first, so a review pasted with IMDB's `<br />` gets the tokens it was trained on);
everything after it is vectorised with numpy over the whole batch, with no per-token Python loops, because
`Predictor.predict` sits on the API's hot path.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Sequence
from itertools import chain, repeat

import numpy as np
from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers

from workload.modeling.markup import strip_markup

UNKNOWN = "[UNK]"
PADDING = "[PAD]"
PADDING_ID = 0  # [PAD] is the first special token, so id 0; sequence models pad with it


def build_tokenizer(texts: Iterable[str], *, vocab_size: int, min_frequency: int = 2) -> Tokenizer:
    """Lower-cased words and punctuation runs; rarer words than `min_frequency` map to [UNK]."""
    tokenizer = Tokenizer(models.WordLevel(unk_token=UNKNOWN))
    # Lowercase only: NFKC cost a third of the tokenizer's time on the API's hot path and changes almost
    # nothing in these (nearly all ASCII) reviews; Whitespace already splits on Unicode spaces.
    tokenizer.normalizer = normalizers.Lowercase()
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    trainer = trainers.WordLevelTrainer(
        vocab_size=vocab_size, min_frequency=min_frequency, special_tokens=[PADDING, UNKNOWN], show_progress=False
    )
    tokenizer.train_from_iterator(texts, trainer=trainer)
    return tokenizer


# The Whitespace pre-tokenizer's own pattern. On ASCII text Python's `re` in ASCII mode and the library's regex
# agree on \w and \s, and lower-casing agrees, so splitting with it reproduces the library's tokens exactly.
_ASCII_WORDS = re.compile(r"\w+|[^\w\s]+", re.ASCII)


class TextEncoder:
    """Token ids from a trained tokenizer: the one path for training, evaluation and the API.

    Most of the library's time on a short text goes to offset and alignment bookkeeping that is thrown away
    here (about 190 µs of the 300 µs one IMDB-length review took to predict). For a tokenizer laid out like
    `build_tokenizer`'s, an ASCII text is split with the same pattern in Python and looked up in the same
    vocabulary instead, which is exact and about 2.5x faster. Anything else (non-ASCII text, a text
    containing a special token such as "[UNK]", which the library matches before normalising, or another
    tokenizer layout) goes through the library.
    """

    def __init__(self, tokenizer: Tokenizer) -> None:
        self.tokenizer = tokenizer
        splits_like_build_tokenizer = (
            type(tokenizer.normalizer) is normalizers.Lowercase
            and type(tokenizer.pre_tokenizer) is pre_tokenizers.Whitespace
            and type(tokenizer.model) is models.WordLevel
            and tokenizer.truncation is None
            and tokenizer.padding is None
        )
        vocab = tokenizer.get_vocab() if splits_like_build_tokenizer else {}
        self._unknown_id = vocab.get(tokenizer.model.unk_token) if vocab else None
        # Without an id for unseen words the library's own behaviour decides, so the fast path stays off.
        self._vocab: dict[str, int] | None = vocab if self._unknown_id is not None else None
        self._added_tokens = [token.content for token in tokenizer.get_added_tokens_decoder().values()]
        # -1 (never a token id) for a tokenizer without an unknown token: nothing then counts as unknown.
        unknown_id = tokenizer.token_to_id(UNKNOWN)
        self.unknown_id: int = -1 if unknown_id is None else unknown_id

    def ids(self, text: str) -> list[int] | None:
        """The text's token ids by the fast path, or None where only the library is exact."""
        if self._vocab is None or not text.isascii() or any(token in text for token in self._added_tokens):
            return None
        return list(map(self._vocab.get, _ASCII_WORDS.findall(text.lower()), repeat(self._unknown_id)))

    def encode(self, texts: Sequence[str], chunk_size: int = 2048) -> tuple[np.ndarray, np.ndarray]:
        """Token ids of all texts (markup stripped), concatenated, and each text's length: (flat_ids int64,
        lengths int64)."""
        texts = [strip_markup(text) for text in texts]
        fast = [self.ids(text) for text in texts]
        left = [text for text, ids in zip(texts, fast, strict=True) if ids is None]
        from_library = self._library_ids(left, chunk_size)
        id_lists = [ids if ids is not None else next(from_library) for ids in fast]
        lengths = np.fromiter(map(len, id_lists), dtype=np.int64, count=len(id_lists))
        flat = np.fromiter(chain.from_iterable(id_lists), dtype=np.int64, count=int(lengths.sum()))
        return flat, lengths

    def _library_ids(self, texts: list[str], chunk_size: int) -> Iterator[list[int]]:
        # In chunks: the library's Encoding objects are large, and only their ids are kept.
        for start in range(0, len(texts), chunk_size):
            chunk = texts[start : start + chunk_size]
            yield from (encoding.ids for encoding in self.tokenizer.encode_batch_fast(chunk, add_special_tokens=False))


# Multiplier and mixer constants for a 64-bit rolling hash (splitmix64's finaliser): cheap and well spread.
_ROLL = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)


def _mix(values: np.ndarray) -> np.ndarray:
    values = (values ^ (values >> np.uint64(30))) * _MIX1
    values = (values ^ (values >> np.uint64(27))) * _MIX2
    return values ^ (values >> np.uint64(31))


def ngram_features(
    flat_ids: np.ndarray, lengths: np.ndarray, *, order: int, vocab_size: int, n_buckets: int
) -> tuple[np.ndarray, np.ndarray]:
    """Binarised bag of n-grams per text, in CSR form: (feature ids, offsets of each text's first feature).

    Unigrams keep their vocabulary id; n-grams of order 2..`order` are hashed into `n_buckets` slots after
    the vocabulary. Each text lists each feature once (presence, not counts), sorted.
    """
    n_texts = len(lengths)
    # One text (the API's usual request) owns every n-gram: no owner bookkeeping, and each numpy call saved is
    # a few microseconds of a request that costs a few hundred.
    doc_of_token = np.repeat(np.arange(n_texts, dtype=np.int64), lengths) if n_texts > 1 else None
    ids = flat_ids.astype(np.uint64)
    rolling = ids
    grams, gram_owners = [], []
    for n in range(2, order + 1):
        # rolling[i] hashes tokens i..i+n-1; it is an n-gram only if the first and last token share a text
        rolling = rolling[:-1] * _ROLL + ids[n - 1 :]
        if doc_of_token is None:
            grams.append(rolling ^ np.uint64(n))
        else:
            same_text = doc_of_token[: len(rolling)] == doc_of_token[n - 1 :]
            grams.append(rolling[same_text] ^ np.uint64(n))
            gram_owners.append(doc_of_token[: len(rolling)][same_text])
    # all orders hashed in one pass
    rolled = np.concatenate(grams) if grams else np.zeros(0, dtype=np.uint64)
    hashed = (_mix(rolled) % np.uint64(n_buckets)).astype(np.int64) + vocab_size
    n_features = vocab_size + n_buckets
    keys = np.concatenate((flat_ids, hashed))
    if doc_of_token is not None:
        keys += np.concatenate([doc_of_token, *gram_owners]) * n_features
    keys.sort()  # sort + neighbour test: several times faster than np.unique here
    keys = keys[np.concatenate(([True], keys[1:] != keys[:-1]))] if len(keys) else keys
    offsets = np.zeros(n_texts, dtype=np.int64)
    if n_texts > 1:
        offsets[1:] = np.cumsum(np.bincount(keys // n_features, minlength=n_texts))[:-1]
        keys %= n_features
    return keys, offsets
