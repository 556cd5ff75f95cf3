"""Benchmark the default model end to end: ingest -> train -> evaluate -> load + predict.

    python benchmarks/train_eval.py --source /path/to/aclImdb_v1.tar.gz [--workdir DIR] [--arch ngram]

Each step runs through the real CLI in a child process (so peak RSS is the training process's own). Prints
ONE JSON line: accuracy (on the official test split when the source has one, else on the held-out validation
carve-out: see `evaluation_split`), training seconds, peak RSS of training, bundle size, evaluation throughput,
bundle load + first prediction time, single-review predict latency with one thread, and how many labelled
reviews the tokenizer's fast path encodes, with its mismatches against the `tokenizers` library (must be 0).
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# Run in a fresh interpreter: measures what an API worker pays (imports excluded, reported separately).
LATENCY_PROBE = r"""
import json, statistics, sys, time
started = time.perf_counter()
import torch
from workload.bundle.predictor import Predictor
imported = time.perf_counter()
torch.set_num_threads(1)
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
    "import_seconds": imported - started,
    "load_and_first_prediction_seconds": ready - imported,
    "predict_latency_ms_p50": statistics.median(timings),
    "predict_latency_ms_p99": timings[int(len(timings) * 0.99) - 1],
}))
"""

# A review of typical IMDB length (~230 words), for the latency probe.
TYPICAL_REVIEW = " ".join(
    ["I went in expecting a dull sequel, but the acting was superb and the story kept me hooked."] * 13
)


def run_cli(*args: str) -> dict:
    result = subprocess.run([sys.executable, "-m", "workload", *args], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        sys.exit(f"workload {args[0]} failed:\n{result.stderr.strip()}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def tokenizer_parity(model: Path, data: Path) -> dict:
    """Every labelled review through the encoder's fast path and through the library: the ids must agree."""
    from tokenizers import Tokenizer
    from workload.bundle.format import TOKENIZER
    from workload.data.processed import open_processed
    from workload.modeling.text import TextEncoder

    encoder = TextEncoder(Tokenizer.from_file(str(model / TOKENIZER)))
    total = fast = mismatches = 0
    with open_processed(str(data)) as processed:
        for split in ("train", "test"):
            for review in processed.reviews(split) if processed.has_split(split) else []:
                total += 1
                ids = encoder.ids(review.text)
                if ids is not None:
                    fast += 1
                    mismatches += ids != encoder.tokenizer.encode(review.text, add_special_tokens=False).ids
    return {"tokenizer_fast_path_share": round(fast / total, 4), "tokenizer_fast_path_mismatches": mismatches}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", required=True, help="ingest source: .tar.gz, aclImdb/ folder, URL or s3://")
    parser.add_argument("--workdir", type=Path, help="keep data and bundle here (default: a temp dir, removed)")
    parser.add_argument("--arch", default="ngram")
    parser.add_argument("--threads", help="training threads (default: 1 for ngram, all cores for bilstm)")
    args = parser.parse_args()

    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="imdb-bench-"))
    data, model = workdir / "data", workdir / f"model-{args.arch}-{time.strftime('%Y%m%dT%H%M%S')}"
    try:
        run_cli("ingest", "--source", args.source, "--output", str(data))
        train_args = ["train", "--data", str(data), "--output", str(model), "--arch", args.arch, "--device", "cpu"]
        started = time.perf_counter()
        trained = run_cli(*train_args, *(["--threads", args.threads] if args.threads else []))
        train_wall = time.perf_counter() - started
        # ru_maxrss of children: the largest so far, i.e. training's (ingest is far smaller). Linux: KiB.
        peak_rss_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        evaluation = run_cli("evaluate", "--model", str(model), "--data", str(data), "--split", "auto")
        probe = subprocess.run(
            [sys.executable, "-c", LATENCY_PROBE, str(model), TYPICAL_REVIEW], capture_output=True, text=True
        )
        if probe.returncode != 0:
            sys.exit(f"latency probe failed:\n{probe.stderr.strip()}")
        latency = json.loads(probe.stdout)
        report = {
            "arch": args.arch,
            "source": args.source,
            "evaluation_split": evaluation["split"],
            "evaluation_note": None
            if evaluation["split"] == "test"
            else "source has no test split: accuracy is on the validation "
            "carve-out of train (never trained on, but used for early stopping)",
            "accuracy": evaluation["accuracy"],
            "f1": evaluation["f1"],
            "n": evaluation["n"],
            "training_seconds": trained["training_seconds"],
            "train_wall_seconds": train_wall,
            "peak_rss_mb": peak_rss_mb,
            "bundle_bytes": sum(path.stat().st_size for path in model.iterdir()),
            "examples_per_second": evaluation["examples_per_second"],
            **latency,
            **tokenizer_parity(model, data),
            "model_version": trained["version"],
        }
    finally:
        if args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
