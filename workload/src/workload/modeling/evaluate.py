"""Score a model bundle on a labelled split: accuracy, F1, confusion matrix and throughput."""

from __future__ import annotations

import time

from workload.bundle.predictor import Predictor
from workload.data.processed import ProcessedData, Review, split_validation
from workload.errors import WorkloadError

EVALUATION_SPLITS = ("test", "validation", "train")
AUTO_SPLIT = "auto"


def resolve_split(data: ProcessedData, requested: str) -> str:
    """`auto` is `test` when the source had one, else `validation` (a train-only tarball has none)."""
    if requested != AUTO_SPLIT:
        return requested
    return "test" if data.has_split("test") else "validation"


def reviews_for_split(data: ProcessedData, split: str, predictor: Predictor) -> list[Review]:
    """`validation` is the carve-out the model was trained without, rebuilt from the bundle's own settings."""
    if split not in EVALUATION_SPLITS:
        raise WorkloadError(f"unknown split {split!r} (expected one of {', '.join(EVALUATION_SPLITS)})")
    if split == "test" and not data.has_split("test"):
        raise WorkloadError(
            f"the data at {data.uri} has no test split (its source had none); use --split validation or auto instead"
        )
    if split == "validation":
        options = predictor.config["training"]["options"]
        return split_validation(data.reviews("train"), options["validation_fraction"], options["split_seed"])[1]
    return data.reviews(split)


def evaluate(predictor: Predictor, reviews: list[Review], split: str) -> dict:
    if not reviews:
        raise WorkloadError(f"the {split} split is empty")
    started = time.perf_counter()
    predictions = predictor.predict([review.text for review in reviews])
    seconds = time.perf_counter() - started
    counts = {(truth, guess): 0 for truth in ("negative", "positive") for guess in ("negative", "positive")}
    for review, prediction in zip(reviews, predictions, strict=True):
        counts[(review.label, prediction.label)] += 1
    true_positive, false_positive = counts[("positive", "positive")], counts[("negative", "positive")]
    false_negative, true_negative = counts[("positive", "negative")], counts[("negative", "negative")]
    precision = true_positive / (true_positive + false_positive) if true_positive + false_positive else 0.0
    recall = true_positive / (true_positive + false_negative) if true_positive + false_negative else 0.0
    return {
        "split": split,
        "n": len(reviews),
        "accuracy": (true_positive + true_negative) / len(reviews),
        "f1": 2 * precision * recall / (precision + recall) if precision + recall else 0.0,
        "precision": precision,
        "recall": recall,
        # rows: true label, columns: predicted label, both in `labels` order
        "confusion_matrix": {
            "labels": ["negative", "positive"],
            "matrix": [[true_negative, false_positive], [false_negative, true_positive]],
        },
        "examples_per_second": len(reviews) / seconds if seconds > 0 else None,
        "model_version": predictor.version,
    }
