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


def _token_stats(flat: np.ndarray, lengths: np.ndarray, unknown_id: int) -> TokenStats:
    owner = np.repeat(np.arange(len(lengths)), lengths)
    unknown = np.bincount(owner, weights=flat == unknown_id, minlength=len(lengths))
    return TokenStats(lengths, unknown / np.maximum(lengths, 1))


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
        return _token_stats(*self.encoder.encode(texts), self.encoder.unknown_id)

    def last_token_stats(self) -> TokenStats:
        """`token_stats` of the texts of this thread's latest `predict` call, from the encoding it already did."""
        encodings = getattr(self._recording.latest, "encodings", None)
        if not encodings:
            return TokenStats(np.zeros(0, dtype=np.int64), np.zeros(0))
        flat = np.concatenate([encoded[0] for encoded in encodings])
        lengths = np.concatenate([encoded[1] for encoded in encodings])
        return _token_stats(flat, lengths, self.encoder.unknown_id)


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
