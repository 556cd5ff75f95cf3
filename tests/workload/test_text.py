"""Tokenizer round-trip, the encoder's fast path against the library, and the vectorised n-gram hashing."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tokenizers import Tokenizer, normalizers
from workload.data.ingest import clean_text
from workload.modeling.markup import strip_markup
from workload.modeling.text import UNKNOWN, TextEncoder, build_tokenizer, ngram_features

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
    encoder = TextEncoder(build_tokenizer(CORPUS, vocab_size=1000))
    flat, lengths = encoder.encode(["The movie", "", "was amazing !"])
    assert lengths.tolist() == [2, 0, 3]
    assert flat.tolist() == encoder.tokenizer.encode("The movie was amazing !").ids


def library_ids(encoder: TextEncoder, text: str) -> list[int]:
    return encoder.tokenizer.encode(text, add_special_tokens=False).ids


ENCODER = TextEncoder(build_tokenizer(CORPUS, vocab_size=1000, min_frequency=1))
# ASCII pieces where a hand-rolled split could drift from the library: word/punctuation boundaries, underscores,
# digits, every ASCII space and control character, and the special tokens the library matches in raw text.
ASCII_PIECES = st.one_of(
    st.text(alphabet=st.characters(max_codepoint=127), max_size=12),
    st.sampled_from(["[UNK]", "[PAD]", "[unk]", "[PAD", "UNK]", "__init__", "can't", "!!!", "...", "a_b9", "MOVIE"]),
    st.sampled_from(CORPUS),
)


@settings(max_examples=3000, deadline=None)
@given(st.lists(ASCII_PIECES, max_size=8).map("".join))
def test_fast_path_matches_the_library_on_ascii_text(text):
    assert ENCODER.ids(text) in (None, library_ids(ENCODER, text))
    flat, lengths = ENCODER.encode([text])
    assert flat.tolist() == library_ids(ENCODER, strip_markup(text)) and lengths.tolist() == [len(flat)]


# What a client pastes from IMDB: printable text with the reviews' HTML line breaks, in any case and spacing.
# (Not control characters: `ingest` turns \x1c-\x1f into spaces, which no review holds.)
MARKUP_PIECES = st.one_of(
    st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=12),
    st.sampled_from(["<br />", "<br/>", "<BR>", "<br  />", "<b>", "<", "/>", "br", "\t", "\n", "café", "\u00a0"]),
    st.sampled_from(CORPUS),
)


@settings(max_examples=1000, deadline=None)
@given(st.lists(MARKUP_PIECES, max_size=10).map("".join))
def test_a_raw_review_gets_the_tokens_of_the_text_ingest_stored_for_training(raw):
    # Training reads reviews as `ingest` cleaned them; the API and its data capture get them as sent.
    assert ENCODER.encode([raw])[0].tolist() == ENCODER.encode([clean_text(raw)])[0].tolist()


@pytest.mark.parametrize("text", ["The café", "naïve ﬁlm", "a\u00a0dull\u2003film", "The movie [UNK] was dull"])
def test_non_ascii_text_and_special_tokens_go_through_the_library(text):
    assert ENCODER.ids(text) is None
    assert ENCODER.encode([text])[0].tolist() == library_ids(ENCODER, text)


def test_other_tokenizer_layouts_always_use_the_library():
    tokenizer = build_tokenizer(CORPUS, vocab_size=1000)
    tokenizer.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Lowercase()])
    encoder = TextEncoder(tokenizer)
    assert encoder.ids("The movie was amazing!") is None
    assert encoder.encode(["The movie was amazing!"])[0].tolist() == library_ids(encoder, "The movie was amazing!")


def test_encode_keeps_order_across_both_paths():
    texts = ["The café", "The movie", "[PAD] dull", "", "amazing, not dull."] * 3
    flat, lengths = ENCODER.encode(texts, chunk_size=2)
    expected = [library_ids(ENCODER, text) for text in texts]
    assert lengths.tolist() == [len(ids) for ids in expected]
    assert flat.tolist() == [token for ids in expected for token in ids]


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


def test_ngram_hashes_are_pinned_for_one_text_and_for_a_batch():
    """Trained bundles store weights by these ids: any change to the hashing (or to the one-text shortcut) would
    score every existing bundle wrongly, so the ids are pinned, one text alone and the same text in a batch."""
    one, offsets = ngram_features(np.array([5, 6, 7, 5]), np.array([4]), order=3, vocab_size=10, n_buckets=1000)
    assert one.tolist() == [5, 6, 7, 51, 160, 479, 808, 988] and offsets.tolist() == [0]
    batch, offsets = ngram_features(
        np.array([5, 6, 7, 5, 1, 2]), np.array([4, 2]), order=3, vocab_size=10, n_buckets=1000
    )
    assert batch.tolist() == [5, 6, 7, 51, 160, 479, 808, 988, 1, 2, 545] and offsets.tolist() == [0, 8]
