"""Prometheus metrics for the API.

Under gunicorn, `PROMETHEUS_MULTIPROC_DIR` is set (by gunicorn.conf.py) before this module is imported, so
every worker writes its values to mmap files there and `/metrics` aggregates all workers. Without it (Flask
test client, `flask run`) the default single-process registry is used.
"""

from __future__ import annotations

import os
from pathlib import Path

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

REQUESTS = Counter("sentiment_http_requests_total", "HTTP requests by endpoint and status", ["endpoint", "status"])
# Buckets focus on the millisecond range the service is built for, with a tail for slow batches.
LATENCY = Histogram(
    "sentiment_http_request_duration_seconds",
    "HTTP request latency by endpoint",
    ["endpoint"],
    buckets=(0.001, 0.0025, 0.005, 0.0075, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
)
IN_PROGRESS = Gauge(
    "sentiment_http_requests_in_progress",
    "Requests being handled now (a scrape counts itself)",
    multiprocess_mode="livesum",
)
BATCH_SIZE = Histogram(
    "sentiment_batch_size", "Reviews per /predict request", buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256)
)
PREDICTIONS = Counter("sentiment_predictions_total", "Predicted labels (raw drift signal)", ["label"])
CAPTURE_RECORDS = Counter(
    "sentiment_capture_records",
    "Data-capture records by outcome: written, dropped_full (buffer full), dropped_failed (destination failed)",
    ["outcome"],
)
MODEL_LOAD_SECONDS = Gauge(
    "sentiment_model_load_seconds",
    "Seconds the last model load took (fetch, verify, load)",
    ["version"],
    multiprocess_mode="max",
)
MODEL_READY = Gauge("sentiment_model_ready", "1 in each worker whose model is ready", multiprocess_mode="livesum")


def ready_worker_count() -> int | None:
    """Live workers whose model is ready, summed from the shared files; None outside multiprocess mode.

    Reads only the live-sum gauge files, so `/health` stays cheap."""
    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if not directory:
        return None
    files = [str(path) for path in Path(directory).glob("gauge_livesum_*.db")]
    for metric in multiprocess.MultiProcessCollector.merge(files, accumulate=False):
        if metric.name == "sentiment_model_ready":
            return int(sum(sample.value for sample in metric.samples))
    return 0


def render() -> tuple[bytes, str]:
    """The exposition text for `/metrics` and its content type."""
    if "PROMETHEUS_MULTIPROC_DIR" in os.environ:
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST
