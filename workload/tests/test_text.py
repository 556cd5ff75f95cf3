"""Tokenizer round-trip and the vectorised n-gram hashing."""

from __future__ import annotations

import numpy as np
from tokenizers import Tokenizer
from workload.text import UNKNOWN, build_tokenizer, encode, ngram_features

CORPUS = ["The movie was amazing!", "A dull, boring waste of two hours.", "The café was amazing, not dull."] * 3


def test_tokenizer_round_trip_through_json(tmp_path):
    tokenizer = build_tokenizer(CORPUS, vocab_size=1000)
    path = tmp_path / "tokenizer.json"
    tokenizer.save(str(path))
    reloaded = Tokenizer.from_file(str(path))
    text = "The movie was AMAZING, a café!"
    assert reloaded.encode(text).ids == tokenizer.encode(text).ids
    assert reloaded.decode(reloaded.encode(text).ids) == "the movie was amazing , a café !"
    assert reloaded.encode("zyzzyva").tokens == [UNKNOWN]


def test_encode_returns_flat_ids_and_lengths():
    tokenizer = build_tokenizer(CORPUS, vocab_size=1000)
    flat, lengths = encode(tokenizer, ["The movie", "", "was amazing !"])
    assert lengths.tolist() == [2, 0, 3]
    assert flat.tolist() == tokenizer.encode("The movie was amazing !").ids


def naive_features(docs: list[list[int]], order: int, vocab_size: int, n_buckets: int) -> list[set[int]]:
    """Reference: which n-gram *positions* each doc has, hashed by the real function one doc at a time."""
    result = []
    for doc in docs:
        features, _ = ngram_features(
            np.array(doc, dtype=np.int64), np.array([len(doc)]), order=order, vocab_size=vocab_size, n_buckets=n_buckets
        )
        result.append(set(features.tolist()))
    return result


def test_ngram_features_match_per_document_hashing_and_are_unique():
    docs = [[5, 6, 7, 5, 6], [], [7], [6, 7, 8, 9]]
    lengths = np.array([len(doc) for doc in docs])
    flat = np.array([token for doc in docs for token in doc], dtype=np.int64)
    features, offsets = ngram_features(flat, lengths, order=3, vocab_size=10, n_buckets=1000)
    ends = np.append(offsets[1:], len(features))
    per_doc = [features[start:end].tolist() for start, end in zip(offsets, ends, strict=True)]
    assert per_doc == [sorted(expected) for expected in naive_features(docs, 3, 10, 1000)]
    # doc 0: unigrams {5,6,7}; bigrams (5,6),(6,7),(7,5) with (5,6) repeated; trigrams (5,6,7),(6,7,5),(7,5,6)
    assert len(per_doc[0]) == 3 + 3 + 3 and per_doc[1] == [] and per_doc[2] == [7]
    assert all(value < 1010 for value in features)
    # n-grams never straddle two documents: doc 2 ([7]) followed by doc 3 has no (7, 6) bigram of its own
    assert set(per_doc[2]) == {7}
