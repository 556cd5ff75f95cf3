"""Data capture: a sampled share of `/predict` requests recorded for the monitoring job (`python -m workload monitor`).

The request only draws the sample and puts its records on a bounded in-memory buffer (never waits, never
fails), with the features (token length, unknown-token rate) taken from the prediction's own tokenization; a
writer thread per worker process writes them as gzip JSON-lines objects:

    <CAPTURE_URI>/model_version=<v>/date=YYYY-MM-DD/hour=HH/<host>-<pid>-<uuid>.jsonl.gz

one object per partition per flush, named by host, process and a random id, so no two workers (or flushes)
ever write the same object. A full buffer drops the new record; a destination that is down drops the batch;
both are counted in `sentiment_capture_records_total{outcome=...}`. `close_all` flushes what is buffered (the
gunicorn `worker_exit` hook and atexit call it).
"""

from __future__ import annotations

import atexit
import gzip
import json
import logging
import os
import random
import re
import socket
import threading
import time
import uuid
from collections import defaultdict, deque
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, NamedTuple

from workload import storage
from workload.bundle.predictor import Prediction, Predictor
from workload.errors import first_line
from workload.serving import metrics
from workload.serving.settings import ServeSettings

log = logging.getLogger("workload.serving.capture")

# Worst case held per worker: QUEUE_RECORDS texts of MAX_TEXT_CHARS; an IMDB review averages ~1.3 kB.
QUEUE_RECORDS = 5_000
DRAIN_SECONDS = 0.5
FLUSH_RECORDS = 1_000
CLOSE_TIMEOUT_SECONDS = 10.0
# A client-chosen id is echoed back only when it is short and plain; anything else gets a fresh one.
_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")


def request_id(given: str | None) -> str:
    """The client's X-Request-Id when it is a plain token, else a new random id."""
    return given if given is not None and _REQUEST_ID.fullmatch(given) else uuid.uuid4().hex


class _Pending(NamedTuple):
    time: float
    request_id: str
    model_version: str
    text: str
    prediction: Prediction
    token_length: int
    unknown_token_rate: float


class CaptureWriter:
    """The worker's background writer: `offer` from request threads, `close` once at shutdown.

    The buffer is a deque (appends are atomic under the GIL) that the writer drains every DRAIN_SECONDS: a
    queue.Queue would wake the writer thread for every record."""

    def __init__(self, uri: str, *, include_text: bool, flush_seconds: float, s3_client: Any = None) -> None:
        self.uri = uri.rstrip("/")
        self.include_text = include_text
        self.flush_seconds = flush_seconds
        self._s3_client = s3_client
        self._buffer: deque[_Pending] = deque()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="capture-writer", daemon=True)
        self._started = threading.Lock()
        self._last_error: str | None = None

    def offer(
        self, request_id: str, predictor: Predictor, texts: Sequence[str], predictions: Sequence[Prediction]
    ) -> None:
        """Buffer one record per text of the request `predictor` has just predicted (in this thread); drops (and
        counts) what does not fit. Never blocks."""
        self._start_once()
        now = time.time()
        stats = predictor.last_token_stats()  # from the prediction's own tokenization: no second pass
        for text, prediction, length, rate in zip(
            texts, predictions, stats.lengths.tolist(), stats.unknown_rates.tolist(), strict=True
        ):
            if len(self._buffer) >= QUEUE_RECORDS:
                metrics.CAPTURE_RECORDS.labels("dropped_full").inc()
                continue
            self._buffer.append(_Pending(now, request_id, predictor.version, text, prediction, length, rate))

    def close(self, timeout: float = CLOSE_TIMEOUT_SECONDS) -> None:
        """Write out what is buffered and stop the thread (waits at most `timeout` seconds)."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def _start_once(self) -> None:
        if not self._thread.is_alive() and self._started.acquire(blocking=False):
            self._thread.start()  # in the serving process, after gunicorn's fork: threads do not survive a fork

    def _run(self) -> None:
        pending: list[_Pending] = []
        deadline = time.monotonic() + self.flush_seconds
        while True:
            stopping = self._stop.wait(min(DRAIN_SECONDS, self.flush_seconds))
            while self._buffer:
                pending.append(self._buffer.popleft())
            if stopping or len(pending) >= FLUSH_RECORDS or time.monotonic() >= deadline:
                self._flush(pending)
                pending = []
                deadline = time.monotonic() + self.flush_seconds
            if stopping:
                return

    def _flush(self, pending: list[_Pending]) -> None:
        partitions: dict[str, list[dict]] = defaultdict(list)
        for item in pending:
            hour = time.strftime("date=%Y-%m-%d/hour=%H", time.gmtime(item.time))
            partitions[f"model_version={item.model_version}/{hour}"].append(self._record(item))
        for partition, records in partitions.items():
            name = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex}.jsonl.gz"
            lines = "".join(json.dumps(record) + "\n" for record in records).encode()
            body = gzip.compress(lines, compresslevel=1)  # a third of level 5's CPU, taken from the workers' cores
            try:
                storage.write_bytes(f"{self.uri}/{partition}/{name}", body, client=self._client())
            except Exception as exc:  # the writer is a boundary: a failed batch is dropped and counted, never raised
                metrics.CAPTURE_RECORDS.labels("dropped_failed").inc(len(records))
                if first_line(exc) != self._last_error:  # once per distinct failure, not once per batch
                    self._last_error = first_line(exc)
                    log.error("capture write failed, %d records dropped: %s", len(records), self._last_error)
                continue
            metrics.CAPTURE_RECORDS.labels("written").inc(len(records))

    def _record(self, item: _Pending) -> dict:
        record = {
            "time": datetime.fromtimestamp(item.time, UTC).isoformat(timespec="milliseconds"),
            "request_id": item.request_id,
            "model_version": item.model_version,
            "token_length": item.token_length,
            "unknown_token_rate": item.unknown_token_rate,
            "non_ascii": not item.text.isascii(),
            "score": float(item.prediction.score),
            "label": item.prediction.label,
        }
        if self.include_text:
            record["text"] = item.text
        return record

    def _client(self) -> Any:
        if self._s3_client is None and storage.is_s3(self.uri):
            import boto3
            from botocore.config import Config

            # Short timeouts and few retries: while the destination is down, the buffer should drop, not stall.
            config = Config(connect_timeout=2, read_timeout=10, retries={"max_attempts": 2, "mode": "standard"})
            self._s3_client = boto3.client("s3", config=config)
        return self._s3_client


class Capture:
    """The request side: draws the sample and hands it to this process's writer (created on first use)."""

    def __init__(self, settings: ServeSettings) -> None:
        self.percent = settings.capture_percent
        self.writer = None
        if settings.capture_uri is not None and self.percent > 0:
            self.writer = CaptureWriter(
                settings.capture_uri, include_text=settings.capture_text, flush_seconds=settings.capture_flush_seconds
            )
        if self.writer is not None:
            _WRITERS.append(self.writer)

    def record(
        self, request_id: str, predictor: Predictor, texts: Sequence[str], predictions: Sequence[Prediction]
    ) -> None:
        if self.writer is not None and random.random() * 100 < self.percent:
            self.writer.offer(request_id, predictor, texts, predictions)


_WRITERS: list[CaptureWriter] = []


def close_all() -> None:
    """Flush and stop every writer of this process (gunicorn's `worker_exit` hook; atexit as a fallback)."""
    while _WRITERS:
        _WRITERS.pop().close()


atexit.register(close_all)
