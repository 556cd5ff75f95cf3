"""The predictor: a loaded, verified bundle that scores reviews, and the self-test the API's readiness uses."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

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


class Predictor:
    """A loaded, verified bundle ready to score reviews on CPU, without torch."""

    def __init__(
        self, model_config: ModelConfig, tokenizer: Tokenizer, score: Scorer, manifest: dict, config: dict
    ) -> None:
        self.model_config = model_config
        self.encoder = TextEncoder(tokenizer)
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
        for start in range(0, len(texts), _PREDICT_CHUNK):
            batch = featurize(self.model_config, self.encoder, texts[start : start + _PREDICT_CHUNK])
            scores = self._score(batch).tolist()
            predictions.extend(Prediction("positive" if s >= 0.5 else "negative", s) for s in scores)
        return predictions


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
