"""Benchmark the architectures on movie-blocked k-fold validation: accuracy, training time, peak RSS, latency.

    python benchmarks/train_eval.py --data PROCESSED_DIR [--architectures ngram,bilstm] [--folds 5]
        [--only-folds 0,1] [--sample N] [--epochs E]
    python benchmarks/train_eval.py --source aclImdb_v1.tar.gz ...   (ingests into a temp dir first)

Fold f trains on the other folds of the train split (per label, the reviews in id order cut into k blocks:
`split_validation(fraction=1/k, seed=f)`, the carve-out `train` itself uses) and scores fold f, never trained
on. Each fit runs in a child process, so its peak RSS is its own. The first fold's model is written as a bundle
and a fresh interpreter measures single-review latency on it, the way an API worker scores; its tokenizer's
fast path is checked against the `tokenizers` library on every labelled review (mismatches must be 0). Prints
one JSON line per fold, then one summary line per architecture (mean and sample sd of the fold accuracies), then
a table.
`--sample N` trains each fold on N labelled reviews (a stratified sample of its train part) so a sequence model
can be measured on CPU; the validation folds stay whole. No figure is asserted: this prints what it measured.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

# One fold's fit in a child process: prints its metrics, its own peak RSS, and writes the bundle if asked.
FOLD_PROBE = r"""
import json, resource, sys
from workload.bundle.format import write_bundle
from workload.data.processed import open_processed
from workload.modeling.train import TrainOptions, train

data_uri, arch, folds, fold, train_fraction, epochs, bundle = sys.argv[1:8]
options = TrainOptions(
    arch=arch, epochs=int(epochs) if epochs else None, device="cpu", validation_fraction=1 / int(folds),
    split_seed=int(fold), train_fraction=float(train_fraction),
)
with open_processed(data_uri) as data:
    trained = train(data, options)
    if bundle:
        write_bundle(bundle, trained=trained, data_manifest_sha256="0" * 64, data_uri=data_uri)
metrics = trained.metrics
print(json.dumps({
    "validation_accuracy": metrics["validation_accuracy"], "n_train": metrics["n_train"],
    "n_validation": metrics["n_validation"], "n_pseudo_labelled": metrics.get("n_pseudo_labelled"),
    "epochs_run": metrics["epochs_run"], "training_seconds": metrics["training_seconds"],
    "validation_accuracy_by_round": {row.get("round", 1): row["validation_accuracy"] for row in metrics["history"]},
    "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
}))
"""

# Run in a fresh interpreter: what an API worker pays per review (imports and loading reported apart).
LATENCY_PROBE = r"""
import json, statistics, sys, time
from workload.bundle.predictor import Predictor
started = time.perf_counter()
predictor = Predictor.load(sys.argv[1])
predictor.predict([sys.argv[2]])
ready = time.perf_counter()
timings = []
for _ in range(300):
    start = time.perf_counter()
    predictor.predict([sys.argv[2]])
    timings.append((time.perf_counter() - start) * 1000)
timings.sort()
print(json.dumps({
    "load_and_first_prediction_seconds": ready - started,
    "predict_latency_ms_p50": statistics.median(timings),
    "predict_latency_ms_p99": timings[int(len(timings) * 0.99) - 1],
}))
"""

# A review of typical IMDB length (~230 words), for the latency probe.
TYPICAL_REVIEW = " ".join(
    ["I went in expecting a dull sequel, but the acting was superb and the story kept me hooked."] * 13
)


def run_child(*args: str) -> dict:
    result = subprocess.run([sys.executable, *args], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        sys.exit(f"{' '.join(args[:2])[:60]} failed:\n{result.stderr.strip()[-2000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def ingest(source: str, workdir: Path) -> str:
    data = str(workdir / "data")
    run_child("-m", "workload", "ingest", "--source", source, "--output", data)
    return data


def tokenizer_parity(bundle: Path, data: str) -> dict:
    """Every labelled review through the encoder's fast path and through the library: the ids must agree."""
    from tokenizers import Tokenizer
    from workload.bundle.format import TOKENIZER
    from workload.data.processed import open_processed
    from workload.modeling.text import TextEncoder

    encoder = TextEncoder(Tokenizer.from_file(str(bundle / TOKENIZER)))
    total = fast = mismatches = 0
    with open_processed(data) as processed:
        for split in ("train", "test"):
            for review in processed.reviews(split) if processed.has_split(split) else []:
                total += 1
                ids = encoder.ids(review.text)
                if ids is not None:
                    fast += 1
                    mismatches += ids != encoder.tokenizer.encode(review.text, add_special_tokens=False).ids
    return {"tokenizer_fast_path_share": round(fast / total, 4), "tokenizer_fast_path_mismatches": mismatches}


def train_fraction(data: str, n_folds: int, sample: int | None) -> float:
    """The --train-fraction that leaves about `sample` labelled reviews in a fold's train part."""
    if sample is None:
        return 1.0
    from workload.data.processed import open_processed

    with open_processed(data) as processed:
        n_train_part = len(processed.reviews("train")) * (n_folds - 1) / n_folds
    return min(1.0, sample / n_train_part)


def benchmark(args: argparse.Namespace, data: str, workdir: Path) -> list[dict]:
    summaries = []
    folds = args.only_folds or list(range(args.folds))
    fraction = train_fraction(data, args.folds, args.sample)
    for arch in args.architectures:
        rows = []
        for fold in folds:
            bundle = workdir / f"bundle-{arch}" if fold == folds[0] else None
            epochs = str(args.epochs or "")
            fit = run_child("-c", FOLD_PROBE, data, arch, str(args.folds), str(fold), str(fraction), epochs,
                            str(bundle or ""))  # fmt: skip
            row = {"arch": arch, "fold": fold, **fit}
            if bundle:
                latency = run_child("-c", LATENCY_PROBE, str(bundle), TYPICAL_REVIEW)
                row.update(latency, **tokenizer_parity(bundle, data))
            print(json.dumps(row), flush=True)
            rows.append(row)
        accuracies = [row["validation_accuracy"] for row in rows]
        summaries.append({
            "arch": arch, "folds": folds, "of": args.folds, "sample": args.sample, "epochs": args.epochs,
            "accuracies": accuracies, "mean": statistics.mean(accuracies),
            "sd": statistics.stdev(accuracies) if len(accuracies) > 1 else None,
            "training_seconds_mean": statistics.mean(row["training_seconds"] for row in rows),
            "peak_rss_mb_max": max(row["peak_rss_mb"] for row in rows),
            "predict_latency_ms_p50": rows[0]["predict_latency_ms_p50"],
        })  # fmt: skip
        print(json.dumps(summaries[-1]), flush=True)
    return summaries


def print_table(summaries: list[dict]) -> None:
    print("| arch | folds | accuracy per fold | mean ± sd | train s (mean) | peak RSS MB | p50 ms |")
    print("|---|---|---|---|---|---|---|")
    for row in summaries:
        spread = f" ± {row['sd']:.4f}" if row["sd"] is not None else ""
        per_fold = ", ".join(f"{accuracy:.4f}" for accuracy in row["accuracies"])
        costs = (
            f"{row['training_seconds_mean']:.0f} | {row['peak_rss_mb_max']:.0f} | {row['predict_latency_ms_p50']:.3f}"
        )
        print(f"| {row['arch']} | {len(row['folds'])}/{row['of']} | {per_fold} | {row['mean']:.4f}{spread} | {costs} |")


def comma_list(value: str) -> list[str]:
    return [item for item in value.split(",") if item]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--data", help="processed data (from `workload ingest`)")
    where.add_argument("--source", help="ingest this source (.tar.gz, aclImdb/ folder, URL or s3://) first")
    parser.add_argument("--architectures", type=comma_list, default=["ngram"], help="comma-separated (default ngram)")
    parser.add_argument("--folds", type=int, default=5, help="k of the movie-blocked k-fold split (default 5)")
    parser.add_argument("--only-folds", type=lambda value: [int(fold) for fold in comma_list(value)],
                        help="run these folds only, e.g. 0,1 (default: all k)")  # fmt: skip
    parser.add_argument("--sample", type=int, help="train each fold on about N labelled reviews (default: all)")
    parser.add_argument("--epochs", type=int, help="epochs (default: each architecture's own)")
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="imdb-bench-"))
    try:
        data = args.data or ingest(args.source, workdir)
        print_table(benchmark(args, data, workdir))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
