"""The quality gate: may a candidate bundle replace the serving (baseline) one?

Both models are scored on one labelled split of one data set, which must be the data both were trained on (its
manifest sha256 is in every bundle): only then is the validation carve-out held out for both. Latency is each
model's single-review p99, measured in this process with the two models interleaved review by review, so what
noise is left (frequency changes, caches) hits both alike.
"""

from __future__ import annotations

import gc
import statistics
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from workload import storage
from workload.bundle.format import BundleError
from workload.errors import WorkloadError

if TYPE_CHECKING:  # torch is imported only when the gate runs
    from workload.bundle.predictor import Predictor
    from workload.data.processed import ProcessedData, Review

LATENCY_BLOCKS = 5
LATENCY_WARMUP_ROUNDS = 50


@dataclass(frozen=True)
class GateThresholds:
    max_accuracy_drop: float = 0.005
    max_latency_ratio: float = 1.5
    min_accuracy: float = 0.88  # only for a first model, which has no baseline to compare with
    latency_rounds: int = 2000


@dataclass(frozen=True)
class Scored:
    """The models that could be compared, the split, and each model's evaluation on it."""

    split: str
    reviews: list[Review]
    evaluations: list[dict[str, Any]]


def load_candidate(uri: str) -> Predictor:
    """Raise WorkloadError when there is no bundle at all (a wrong URI is an error, not a verdict); a bundle that
    exists but fails verification raises BundleError, which the gate turns into a failure."""
    from workload.bundle.predictor import Predictor

    if not storage.list_names(uri):
        raise WorkloadError(f"no model bundle at {uri}")
    return Predictor.load(uri)


def score(predictors: list[Predictor], data: ProcessedData, split: str) -> tuple[Scored | None, list[str]]:
    """Evaluate every model on the same labelled split; or None and the reasons why they cannot be compared."""
    from workload.modeling.evaluate import evaluate, resolve_split, reviews_for_split

    reasons = [
        f"{predictor.version} was trained on data with manifest sha256 {trained_on[:12]}, not on the data at "
        f"{data.uri} ({data.manifest_sha256[:12]}): that split is not held out for it"
        for predictor in predictors
        if (trained_on := str(predictor.manifest.get("data_manifest_sha256"))) != data.manifest_sha256
    ]
    if reasons:
        return None, reasons
    resolved = resolve_split(data, split)
    per_model = [reviews_for_split(data, resolved, predictor) for predictor in predictors]
    if any([review.id for review in reviews] != [r.id for r in per_model[0]] for reviews in per_model[1:]):
        return None, [f"the models hold out different {resolved} splits (their validation settings differ)"]
    evaluations = [evaluate(predictor, per_model[0], resolved) for predictor in predictors]
    return Scored(resolved, per_model[0], evaluations), []


def measure_latency(predictors: list[Predictor], texts: list[str], rounds: int) -> list[list[list[float]]]:
    """Single-review predict times in ms of this thread's CPU time: [block][model][round].

    CPU time, not wall time: on a busy machine a wall-clock p99 is the scheduler's time slice (measured: p50 0.14 ms,
    p99 8-20 ms for the same ngram model, block to block), while the thread's own CPU time is what the model costs.
    Each round scores one text with every model, in alternating order; the garbage collector is off while timing and
    torch uses one thread, as a serving worker does (OMP_NUM_THREADS=1)."""
    import torch

    torch.set_num_threads(1)
    for round_index in range(LATENCY_WARMUP_ROUNDS):
        for predictor in predictors:
            predictor.predict([texts[round_index % len(texts)]])
    per_block = max(1, rounds // LATENCY_BLOCKS)
    samples: list[list[list[float]]] = [[[] for _ in predictors] for _ in range(LATENCY_BLOCKS)]
    gc.collect()
    gc.disable()
    try:
        for round_index in range(per_block * LATENCY_BLOCKS):
            text = [texts[round_index % len(texts)]]
            order = range(len(predictors)) if round_index % 2 == 0 else reversed(range(len(predictors)))
            for model in order:
                started = time.thread_time_ns()
                predictors[model].predict(text)
                samples[round_index // per_block][model].append((time.thread_time_ns() - started) / 1e6)
    finally:
        gc.enable()
    return samples


def p99(values: list[float]) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[98]


def latency_figures(samples: list[list[list[float]]]) -> list[dict[str, float]]:
    """Per model: p50 and p99 over all rounds."""
    figures = []
    for model in range(len(samples[0])):
        everything = [value for block in samples for value in block[model]]
        figures.append({"p50_ms": statistics.median(everything), "p99_ms": p99(everything)})
    return figures


def latency_ratio(samples: list[list[list[float]]]) -> float:
    """Candidate p99 / baseline p99, the median over the blocks: one noisy block cannot decide the verdict."""
    return statistics.median(p99(block[0]) / p99(block[1]) for block in samples)


def run_gate(
    candidate_uri: str, baseline_uri: str | None, data_uri: str, thresholds: GateThresholds, split: str = "auto"
) -> dict[str, Any]:
    """The verdict as one JSON-ready dict: `passed`, `reasons` (empty when it passes) and the figures."""
    from workload.data.processed import open_processed

    result: dict[str, Any] = {"candidate": {"uri": candidate_uri}, "baseline": None, "data": data_uri}
    try:
        candidate = load_candidate(candidate_uri)
    except BundleError as error:
        return {"passed": False, "reasons": [f"the candidate does not verify: {error}"], **result}
    predictors = [candidate]
    if baseline_uri is not None:
        from workload.bundle.predictor import Predictor

        predictors.append(Predictor.load(baseline_uri))  # a broken baseline is an error: nothing to judge against
        result["baseline"] = {"uri": baseline_uri}
    with open_processed(data_uri) as data:
        result["data_manifest_sha256"] = data.manifest_sha256
        scored, reasons = score(predictors, data, split)
    if scored is None:
        return {"passed": False, "reasons": reasons, **result}
    samples = measure_latency(predictors, [review.text for review in scored.reviews], thresholds.latency_rounds)
    for role, predictor, evaluation, latency in zip(
        ("candidate", "baseline"), predictors, scored.evaluations, latency_figures(samples), strict=False
    ):
        result[role].update(version=predictor.version, accuracy=evaluation["accuracy"], f1=evaluation["f1"], **latency)
    result.update(split=scored.split, n=len(scored.reviews), latency_rounds=len(samples) * len(samples[0][0]))
    result["latency_method"] = (
        f"thread CPU time of one in-process single-review predict, {LATENCY_BLOCKS} blocks of rounds interleaving "
        "the models, one torch thread, gc off; ratio = median over the blocks of candidate p99 / baseline p99"
    )
    reasons = verdict(result, samples, thresholds)
    return {"passed": not reasons, "reasons": reasons, **result}


def verdict(result: dict[str, Any], samples: list[list[list[float]]], thresholds: GateThresholds) -> list[str]:
    """The reasons the candidate fails (none: it passes); records the compared figures in `result`."""
    candidate_accuracy = result["candidate"]["accuracy"]
    if result["baseline"] is None:
        result["min_accuracy"] = thresholds.min_accuracy
        if candidate_accuracy < thresholds.min_accuracy:
            return [f"no baseline: accuracy {candidate_accuracy:.4f} is below the floor {thresholds.min_accuracy:.4f}"]
        return []
    reasons = []
    drop = result["baseline"]["accuracy"] - candidate_accuracy
    ratio = latency_ratio(samples)
    result.update(
        accuracy_drop=drop, max_accuracy_drop=thresholds.max_accuracy_drop,
        latency_ratio=ratio, max_latency_ratio=thresholds.max_latency_ratio,
    )  # fmt: skip
    if drop > thresholds.max_accuracy_drop:
        reasons.append(
            f"accuracy {candidate_accuracy:.4f} is {drop:.4f} below the baseline's "
            f"{result['baseline']['accuracy']:.4f} (allowed drop {thresholds.max_accuracy_drop})"
        )
    if ratio > thresholds.max_latency_ratio:
        reasons.append(
            f"p99 latency is {ratio:.2f}x the baseline's (allowed {thresholds.max_latency_ratio}x): "
            f"{result['candidate']['p99_ms']:.2f} ms vs {result['baseline']['p99_ms']:.2f} ms"
        )
    return reasons
