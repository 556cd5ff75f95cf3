"""Prometheus metrics for the API.

Under gunicorn, `PROMETHEUS_MULTIPROC_DIR` is set (by gunicorn.conf.py) before this module is imported, so
every worker writes its values to mmap files there and the ops port's `/metrics` (in the gunicorn master)
aggregates all workers. Without it (Flask test client, `flask run`) the default single-process registry is used.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

from workload.serving.ops import MODEL_READY_METRIC

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
# Live-sum: a dead worker's file is dropped in child_exit, so the sum counts ready live workers (the ops port's
# `/health`, which reads it by name; the version label tells it what they serve).
MODEL_READY = Gauge(
    MODEL_READY_METRIC, "1 in each worker whose model is ready", ["version"], multiprocess_mode="livesum"
)
