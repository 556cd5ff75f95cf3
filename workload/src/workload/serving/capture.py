"""Data capture: a sampled share of `/predict` requests recorded for the monitoring job (`python -m workload monitor`).

The request only draws the sample and puts its records on a bounded in-memory queue (never waits, never
fails); a writer thread per worker process derives the features (token length, unknown-token rate) with the
model's tokenizer and writes gzip JSON-lines objects:

    <CAPTURE_URI>/model_version=<v>/date=YYYY-MM-DD/hour=HH/<host>-<pid>-<uuid>.jsonl.gz

one object per partition per flush, named by host, process and a random id, so no two workers (or flushes)
ever write the same object. A full queue drops the new record; a destination that is down drops the batch;
both are counted in `sentiment_capture_records_total{outcome=...}`. `close_all` flushes what is buffered (the
gunicorn `worker_exit` hook and atexit call it).
"""

from __future__ import annotations

import atexit
import gzip
import json
import logging
import os
import queue
import random
import re
import socket
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from workload import storage
from workload.bundle.predictor import Prediction, Predictor
from workload.errors import first_line
from workload.serving import metrics
from workload.serving.settings import ServeSettings

log = logging.getLogger("workload.serving.capture")

# Worst case held per worker: QUEUE_RECORDS texts of MAX_TEXT_CHARS; an IMDB review averages ~1.3 kB.
QUEUE_RECORDS = 5_000
FLUSH_RECORDS = 1_000
CLOSE_TIMEOUT_SECONDS = 10.0
# A client-chosen id is echoed back only when it is short and plain; anything else gets a fresh one.
_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")


def request_id(given: str | None) -> str:
    """The client's X-Request-Id when it is a plain token, else a new random id."""
    return given if given is not None and _REQUEST_ID.fullmatch(given) else uuid.uuid4().hex


@dataclass(frozen=True)
class _Pending:
    time: float
    request_id: str
    predictor: Predictor
    text: str
    prediction: Prediction


_STOP = object()


class CaptureWriter:
    """The worker's background writer: `offer` from request threads, `close` once at shutdown."""

    def __init__(self, uri: str, *, include_text: bool, flush_seconds: float, s3_client: Any = None) -> None:
        self.uri = uri.rstrip("/")
        self.include_text = include_text
        self.flush_seconds = flush_seconds
        self._s3_client = s3_client
        self._queue: queue.Queue[object] = queue.Queue(maxsize=QUEUE_RECORDS)
        self._thread = threading.Thread(target=self._run, name="capture-writer", daemon=True)
        self._started = threading.Lock()
        self._last_error: str | None = None

    def offer(
        self, request_id: str, predictor: Predictor, texts: Sequence[str], predictions: Sequence[Prediction]
    ) -> None:
        """Queue one record per text; drops (and counts) what does not fit. Never blocks, never raises."""
        self._start_once()
        now = time.time()
        for text, prediction in zip(texts, predictions, strict=True):
            try:
                self._queue.put_nowait(_Pending(now, request_id, predictor, text, prediction))
            except queue.Full:
                metrics.CAPTURE_RECORDS.labels("dropped_full").inc()

    def close(self, timeout: float = CLOSE_TIMEOUT_SECONDS) -> None:
        """Flush what is buffered and stop the thread (waits at most `timeout` seconds)."""
        if not self._thread.is_alive():
            return
        try:
            self._queue.put(_STOP, timeout=timeout)
        except queue.Full:
            return
        self._thread.join(timeout)

    def _start_once(self) -> None:
        if not self._thread.is_alive() and self._started.acquire(blocking=False):
            self._thread.start()  # in the serving process, after gunicorn's fork: threads do not survive a fork

    def _run(self) -> None:
        pending: list[_Pending] = []
        deadline = time.monotonic() + self.flush_seconds
        while True:
            try:
                item = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                item = None
            if isinstance(item, _Pending):
                pending.append(item)
            if item is _STOP or len(pending) >= FLUSH_RECORDS or time.monotonic() >= deadline:
                self._flush(pending)
                pending = []
                deadline = time.monotonic() + self.flush_seconds
            if item is _STOP:
                return

    def _flush(self, pending: list[_Pending]) -> None:
        partitions: dict[str, list[dict]] = defaultdict(list)
        for record in self._records(pending):
            hour = datetime.fromisoformat(record["time"])
            version = record["model_version"]
            partitions[f"model_version={version}/date={hour:%Y-%m-%d}/hour={hour:%H}"].append(record)
        for partition, records in partitions.items():
            name = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex}.jsonl.gz"
            body = gzip.compress("".join(json.dumps(record) + "\n" for record in records).encode(), compresslevel=5)
            try:
                storage.write_bytes(f"{self.uri}/{partition}/{name}", body, client=self._client())
            except Exception as exc:  # the writer is a boundary: a failed batch is dropped and counted, never raised
                metrics.CAPTURE_RECORDS.labels("dropped_failed").inc(len(records))
                if first_line(exc) != self._last_error:  # once per distinct failure, not once per batch
                    self._last_error = first_line(exc)
                    log.error("capture write failed, %d records dropped: %s", len(records), self._last_error)
                continue
            metrics.CAPTURE_RECORDS.labels("written").inc(len(records))

    def _records(self, pending: list[_Pending]) -> list[dict]:
        by_predictor: dict[int, list[_Pending]] = defaultdict(list)
        for item in pending:
            by_predictor[id(item.predictor)].append(item)
        records = []
        for items in by_predictor.values():
            stats = items[0].predictor.token_stats([item.text for item in items])
            for item, length, unknown_rate in zip(items, stats.lengths, stats.unknown_rates, strict=True):
                record = {
                    "time": datetime.fromtimestamp(item.time, UTC).isoformat(timespec="milliseconds"),
                    "request_id": item.request_id,
                    "model_version": item.predictor.version,
                    "token_length": int(length),
                    "unknown_token_rate": float(unknown_rate),
                    "non_ascii": not item.text.isascii(),
                    "score": float(item.prediction.score),
                    "label": item.prediction.label,
                }
                if self.include_text:
                    record["text"] = item.text
                records.append(record)
        return records

    def _client(self) -> Any:
        if self._s3_client is None and storage.is_s3(self.uri):
            import boto3
            from botocore.config import Config

            # Short timeouts and few retries: while the destination is down, the queue should drop, not stall.
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
