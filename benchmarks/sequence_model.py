"""Measure the sequence model (`bilstm`) against the default (`ngram`) on one sample, and project it onto a GPU.

    python benchmarks/sequence_model.py --data PROCESSED_URI [--train-fraction 0.2] [--epochs 3] [--threads N]

Both architectures train through the real CLI, each in its own child process on CPU, on the same sample (the
`--train-fraction` block of the train split left after the movie-blocked validation block, `train`'s own
sampling) and are validated on the same movie-blocked block, so wall time and peak RSS are the child's own.
Single-review latency is train_eval.py's probe (a fresh interpreter, the bundle's scorer on one thread: numpy
for ngram, ONNX Runtime for bilstm). For sequence models it adds the training throughput in tokens and FLOPs
and `gpu_projection`'s estimate of a full-data epoch on prod's former GPU. Prints one JSON line per architecture.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer
from train_eval import LATENCY_PROBE, TYPICAL_REVIEW
from workload.bundle.format import CONFIG, METRICS, TOKENIZER
from workload.data.processed import open_processed
from workload.modeling.features import ModelConfig
from workload.modeling.text import TextEncoder

FULL_TRAIN_REVIEWS = 22_500  # the train split less its 10 % validation block: what a real run trains on
BATCH_SIZE = 64  # bilstm's default (workload.modeling.train.DEFAULTS)
# The step-time range of one LSTM time step on a GPU (forward or backward, both directions at once, as cuDNN
# runs them). At hidden size 64 and 64 reviews a step is a GEMM far too small to fill the chip, so the time
# steps, which must run one after another, set the pace: a few microseconds of launch and synchronisation
# each. 5-20 us spans a fused persistent kernel to a plain launch per step. An assumption, not a measurement.
GPU_STEP_SECONDS = (5e-6, 20e-6)
L4_FP32_FLOPS = 30.3e12  # NVIDIA L4 datasheet peak (g6.xlarge): the compute-bound floor, far below the above


def train_in_child(data: str, bundle: Path, arch: str, args: argparse.Namespace) -> dict:
    """`workload train` in a child process: its JSON summary plus its wall seconds and peak RSS."""
    command = [
        sys.executable, "-m", "workload", "train", "--data", data, "--output", str(bundle), "--arch", arch,
        "--epochs", str(args.epochs), "--train-fraction", str(args.train_fraction), "--device", "cpu",
        *(["--threads", str(args.threads)] if args.threads else []),
    ]  # fmt: skip
    with tempfile.TemporaryFile() as stdout, tempfile.TemporaryFile() as stderr:
        started = time.perf_counter()
        child = subprocess.Popen(command, stdout=stdout, stderr=stderr)
        _, status, usage = os.wait4(child.pid, 0)  # the child's own rusage, not the largest child's so far
        child.returncode = os.waitstatus_to_exitcode(status)
        wall = time.perf_counter() - started
        if child.returncode != 0:
            stderr.seek(0)
            sys.exit(f"workload train --arch {arch} failed:\n{stderr.read().decode().strip()}")
    return {
        "train_wall_seconds": round(wall, 1),
        # on a shared machine the wall time depends on the neighbours; the CPU time much less
        "train_cpu_seconds": round(usage.ru_utime + usage.ru_stime, 1),
        "load_average_5m": round(os.getloadavg()[1], 1),
        "peak_rss_mb": round(usage.ru_maxrss / 1024),  # Linux: KiB
    }


def latency(bundle: Path) -> dict:
    probe = subprocess.run(
        [sys.executable, "-c", LATENCY_PROBE, str(bundle), TYPICAL_REVIEW], capture_output=True, text=True
    )
    if probe.returncode != 0:
        sys.exit(f"latency probe failed:\n{probe.stderr.strip()}")
    figures = json.loads(probe.stdout)
    return {key: round(figures[key], 3) for key in ("predict_latency_ms_p50", "predict_latency_ms_p99")}


def mean_tokens(bundle: Path, data: str, max_tokens: int) -> float:
    """Mean tokens a sequence model reads per review (truncated at `max_tokens`) over the whole train split."""
    encoder = TextEncoder(Tokenizer.from_file(str(bundle / TOKENIZER)))
    with open_processed(data) as processed:
        _, lengths = encoder.encode([review.text for review in processed.reviews("train")])
    return float(np.minimum(lengths, max_tokens).mean())


def lstm_training_flops_per_token(config: ModelConfig) -> int:
    """Multiply-adds x 2 of both LSTM directions' gates per token, x 3 for forward plus backward."""
    gates = 4 * config.hidden_dim * (config.embedding_dim + config.hidden_dim)
    return 3 * 2 * 2 * gates


def gpu_projection(config: ModelConfig, tokens_per_review: float) -> dict:
    """A full-data epoch on an L4: the sequential time-step bound (it dominates) and the FLOP floor."""
    batches = -(-FULL_TRAIN_REVIEWS // BATCH_SIZE)
    steps = batches * 2 * config.max_tokens  # forward and backward through each (padded) batch
    flops = FULL_TRAIN_REVIEWS * tokens_per_review * lstm_training_flops_per_token(config)
    return {
        "gpu_epoch_seconds_step_bound": [round(steps * seconds, 1) for seconds in GPU_STEP_SECONDS],
        "gpu_epoch_seconds_flop_floor": round(flops / L4_FP32_FLOPS, 3),
    }


def sequence_throughput(bundle: Path, data: str, metrics: dict) -> dict:
    config = ModelConfig.from_dict(json.loads((bundle / CONFIG).read_text())["model"])
    tokens_per_review = mean_tokens(bundle, data, config.max_tokens)
    # the loop's seconds include each epoch's validation pass: the rate slightly understates training alone
    loop_seconds = metrics["training_seconds"] - metrics["featurize_seconds"]
    tokens_per_second = metrics["epochs_run"] * metrics["n_train"] * tokens_per_review / loop_seconds
    return {
        "tokens_per_review": round(tokens_per_review, 1),
        "cpu_train_tokens_per_second": round(tokens_per_second),
        "cpu_train_gflops": round(tokens_per_second * lstm_training_flops_per_token(config) / 1e9, 2),
        "cpu_full_data_epoch_minutes": round(FULL_TRAIN_REVIEWS * tokens_per_review / tokens_per_second / 60, 1),
        **gpu_projection(config, tokens_per_review),
    }


def measure(arch: str, workdir: Path, args: argparse.Namespace) -> dict:
    bundle = workdir / f"model-{arch}"
    report = {"arch": arch, **train_in_child(args.data, bundle, arch, args)}
    metrics = json.loads((bundle / METRICS).read_text())
    report |= {
        "n_train": metrics["n_train"],
        "n_validation": metrics["n_validation"],
        "validation_accuracy": round(metrics["validation_accuracy"], 4),
        "validation_accuracy_by_epoch": [round(epoch["validation_accuracy"], 4) for epoch in metrics["history"]],
        "best_epoch": metrics["best_epoch"],
        "training_seconds": round(metrics["training_seconds"], 1),
        "featurize_seconds": round(metrics["featurize_seconds"], 1),
        "threads": metrics["threads"],
        **latency(bundle),
    }
    if arch != "ngram":
        report |= sequence_throughput(bundle, args.data, metrics)
    return report


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="processed data URI (from `workload ingest`)")
    parser.add_argument("--architectures", default="ngram,bilstm", help="comma-separated (default ngram,bilstm)")
    parser.add_argument("--train-fraction", type=float, default=0.2, help="sample of the train split (default 0.2)")
    parser.add_argument("--epochs", type=int, default=3, help="maximum epochs of every architecture (default 3)")
    parser.add_argument("--threads", type=int, help="torch threads (default: per architecture, as `train`'s)")
    parser.add_argument("--workdir", type=Path, help="keep the bundles here (default: a temp dir, removed)")
    args = parser.parse_args()

    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="imdb-sequence-"))
    try:
        for arch in args.architectures.split(","):
            print(json.dumps(measure(arch, workdir, args)), flush=True)
    finally:
        if args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
