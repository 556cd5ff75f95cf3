"""The predictor: a loaded, verified bundle that scores reviews, and the self-test the API's readiness uses."""

from __future__ import annotations

import json
import math
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np
from tokenizers import Tokenizer

from workload.bundle.fetch import fetch
from workload.bundle.format import CONFIG, TOKENIZER, BundleError
from workload.bundle.scorers import Scorer, load_scorer
from workload.errors import WorkloadError, first_line
from workload.modeling.features import ModelConfig, featurize
from workload.modeling.text import TextEncoder

SELF_TEST_TEXTS = ("The movie was amazing!", "A dull, boring waste of two hours.")
_PREDICT_CHUNK = 512  # bounds memory for long lists; one chunk is still a single vectorised pass


class Prediction(NamedTuple):
    label: str  # "positive" | "negative"
    score: float  # P(positive)


class TokenStats(NamedTuple):
    lengths: np.ndarray  # tokens per text (int64)
    unknown_rates: np.ndarray  # share of each text's tokens outside the vocabulary (float64; 0 for no tokens)


class Encoding(NamedTuple):
    """Texts' token ids as the model read them: all concatenated, each text's length, and the unknown id."""

    flat: np.ndarray
    lengths: np.ndarray
    unknown_id: int

    def unknown_counts(self) -> list[int]:
        """Each text's number of tokens outside the vocabulary (one text, the API's usual request: two numpy calls)."""
        unknown = self.flat == self.unknown_id
        if len(self.lengths) == 1:
            return [int(np.count_nonzero(unknown))]
        # unknown tokens up to each text's end, minus those before its start
        running = np.concatenate(([0], np.cumsum(unknown)))
        ends = np.cumsum(self.lengths)
        return (running[ends] - running[ends - self.lengths]).tolist()

    def stats(self) -> TokenStats:
        unknown = np.asarray(self.unknown_counts(), dtype=np.float64)
        return TokenStats(self.lengths, unknown / np.maximum(self.lengths, 1))


class _RecordingEncoder:
    """The predictor's TextEncoder, keeping each thread's encodings of its latest `predict` call, so data capture
    reads a request's token stats from them instead of tokenizing it twice (a second pass cost ~40 % of a
    prediction). Keeping references costs nothing; stats are computed only when asked for."""

    def __init__(self, encoder: TextEncoder) -> None:
        self.encoder = encoder
        self.latest = threading.local()

    def start(self) -> None:
        self.latest.encodings = []

    def encode(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        encoded = self.encoder.encode(texts)
        self.latest.encodings.append(encoded)
        return encoded


class Predictor:
    """A loaded, verified bundle ready to score reviews on CPU, without torch."""

    def __init__(
        self, model_config: ModelConfig, tokenizer: Tokenizer, score: Scorer, manifest: dict, config: dict
    ) -> None:
        self.model_config = model_config
        self.encoder = TextEncoder(tokenizer)
        self._recording = _RecordingEncoder(self.encoder)
        self.manifest = manifest
        self.config = config
        self.version: str = manifest["version"]
        self._score = score

    @classmethod
    def load(cls, model_uri: str, cache_dir: Path | None = None) -> Predictor:
        folder, manifest = fetch(model_uri, cache_dir)
        try:
            config = json.loads((folder / CONFIG).read_text(encoding="utf-8"))
            model_config = ModelConfig.from_dict(config["model"])
            score = load_scorer(model_config, folder)  # first: its load peak passes before the tokenizer is in
            tokenizer = Tokenizer.from_file(str(folder / TOKENIZER))
        except Exception as exc:  # any failure here means a bad bundle: say so in one line, never half-load
            raise BundleError(f"bundle at {model_uri} cannot be loaded: {first_line(exc)}") from exc
        return cls(model_config, tokenizer, score, manifest, config)

    def predict(self, texts: Sequence[str]) -> list[Prediction]:
        if isinstance(texts, str) or not all(isinstance(text, str) for text in texts):
            raise WorkloadError("predict expects a sequence of strings")
        predictions: list[Prediction] = []
        self._recording.start()
        for start in range(0, len(texts), _PREDICT_CHUNK):
            batch = featurize(self.model_config, self._recording, texts[start : start + _PREDICT_CHUNK])  # type: ignore[arg-type]
            scores = self._score(batch).tolist()
            predictions.extend(Prediction("positive" if s >= 0.5 else "negative", s) for s in scores)
        return predictions

    def token_stats(self, texts: Sequence[str]) -> TokenStats:
        """Each text's length in tokens and unknown-token rate, by the model's own tokenizer (monitoring's
        derived features: no model involved, so no torch)."""
        return Encoding(*self.encoder.encode(texts), self.encoder.unknown_id).stats()

    def last_encoding(self) -> Encoding:
        """The token ids of this thread's latest `predict` call, as it encoded them (no second pass)."""
        chunks = getattr(self._recording.latest, "encodings", None) or [(np.zeros(0, np.int64),) * 2]
        if len(chunks) == 1:  # one request's texts fit one chunk: no copy
            return Encoding(*chunks[0], self.encoder.unknown_id)
        flat, lengths = (np.concatenate(parts) for parts in zip(*chunks, strict=True))
        return Encoding(flat, lengths, self.encoder.unknown_id)


def self_test(predictor: Predictor) -> None:
    """Readiness check (the API's): every self-test text gets a valid label and a finite score in [0, 1].

    Raises BundleError if not. Takes anything with `predict` and `version`, so the API's tests can feed it fakes.
    """
    predictions = predictor.predict(list(SELF_TEST_TEXTS))
    if len(predictions) != len(SELF_TEST_TEXTS):
        expected = len(SELF_TEST_TEXTS)
        raise BundleError(f"model {predictor.version} self-test returned {len(predictions)} predictions for {expected}")
    for prediction in predictions:
        if prediction.label not in ("positive", "negative") or not (
            math.isfinite(prediction.score) and 0.0 <= prediction.score <= 1.0
        ):
            raise BundleError(f"model {predictor.version} self-test returned an invalid prediction: {prediction!r}")
