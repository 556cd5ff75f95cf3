"""The bundle's `baseline.json`: what the validation split looked like to the model, for drift checks later.

Scores are binned on fixed edges (tenths of [0, 1]); token lengths on the validation split's own deciles, so
every baseline bin holds about a tenth of the texts and the PSI compares like with like. Live traffic is binned
on the same stored edges (`bin_shares`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # training-side imports only: the monitor reads baselines without torch
    from workload.bundle.predictor import Predictor
    from workload.data.processed import ProcessedData

FORMAT = "imdb-sentiment-baseline/1"
SCORE_EDGES = [round(step / 10, 1) for step in range(11)]
LENGTH_QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95)


def bin_shares(values: Sequence[float] | np.ndarray, edges: Sequence[float]) -> list[float]:
    """Share of `values` in each bin of `edges`; values outside the edges count in the first or last bin."""
    inner = np.asarray(edges[1:-1], dtype=np.float64)
    counts = np.bincount(np.searchsorted(inner, np.asarray(values, dtype=np.float64), side="right"),
                         minlength=len(edges) - 1)  # fmt: skip
    return (counts / max(len(values), 1)).tolist()


def length_edges(lengths: np.ndarray) -> list[float]:
    """Decile edges of the baseline lengths (duplicates merged), open-ended: 0 .. max."""
    deciles = np.unique(np.quantile(lengths, np.linspace(0.1, 0.9, 9)))
    return [0.0, *deciles.tolist(), float(lengths.max() + 1)]


def compute_baseline(
    scores: Sequence[float], token_lengths: Sequence[int], unknown_rates: Sequence[float],
    non_ascii_flags: Sequence[bool], accuracy: float | None,
) -> dict:  # fmt: skip
    """The baseline document for one validation split's predictions and derived features."""
    if len(scores) == 0:
        raise ValueError("a baseline needs at least one validation prediction")
    scores_array = np.asarray(scores, dtype=np.float64)
    lengths = np.asarray(token_lengths, dtype=np.float64)
    edges = length_edges(lengths)
    return {
        "format": FORMAT,
        "n": len(scores_array),
        "score": {"edges": SCORE_EDGES, "shares": bin_shares(scores_array, SCORE_EDGES)},
        "positive_rate": float((scores_array >= 0.5).mean()),
        "token_length": {
            "edges": edges,
            "shares": bin_shares(lengths, edges),
            "quantiles": {str(q): float(np.quantile(lengths, q)) for q in LENGTH_QUANTILES},
            "mean": float(lengths.mean()),
        },
        "unknown_token_rate": float(np.mean(unknown_rates)),
        "non_ascii_share": float(np.mean(np.asarray(non_ascii_flags, dtype=np.float64))),
        "validation_accuracy": accuracy,
    }


def validation_baseline(predictor: Predictor, data: ProcessedData) -> dict:
    """Score the model's own validation carve-out (rebuilt the way `evaluate --split validation` does) and
    describe it."""
    from workload.modeling.evaluate import reviews_for_split

    reviews = reviews_for_split(data, "validation", predictor)
    texts = [review.text for review in reviews]
    predictions = predictor.predict(texts)
    stats = predictor.token_stats(texts)
    correct = sum(p.label == review.label for p, review in zip(predictions, reviews, strict=True))
    return compute_baseline(
        scores=[prediction.score for prediction in predictions],
        token_lengths=stats.lengths,
        unknown_rates=stats.unknown_rates,
        non_ascii_flags=[not text.isascii() for text in texts],
        accuracy=correct / len(reviews) if reviews else None,
    )
