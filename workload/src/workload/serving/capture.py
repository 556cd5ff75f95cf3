"""Data capture: a sampled share of `/predict` requests recorded for the monitoring job (`python -m workload monitor`).

The request thread only draws the sample and puts one tuple on a bounded in-memory buffer (never waits, never
fails): its texts, predictions and the prediction's own token ids. A writer thread per worker process does the
rest in batches: the features (token length, unknown-token rate) in one vectorised pass, the JSON lines
(orjson) and their compression (ISA-L's gzip, about 4x faster than zlib at the same ratio), written as

    <CAPTURE_URI>/model_version=<v>/date=YYYY-MM-DD/hour=HH/<host>-<pid>-<uuid>.jsonl.gz

one object per partition per flush, named by host, process and a random id, so no two workers (or flushes)
ever write the same object. A full buffer drops the new records; a destination that is down drops the batch;
both are counted in `sentiment_capture_records_total{outcome=...}`. `close_all` flushes what is buffered (the
gunicorn `worker_exit` hook and atexit call it). At 100 % its threads use about 2 % of a worker's CPU
(docs/monitoring.md): the work that scales with the text is all in C.
"""

from __future__ import annotations

import atexit
import functools
import logging
import os
import random
import re
import socket
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Sequence
from typing import Any, NamedTuple

import orjson
from isal import igzip

from workload import storage
from workload.bundle.predictor import Encoding, Prediction, Predictor, token_stats
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


class _Request(NamedTuple):
    time: float
    request_id: str
    model_version: str
    texts: Sequence[str]
    predictions: Sequence[Prediction]
    encoding: Encoding


@functools.lru_cache(maxsize=16)
def _utc_second(epoch_second: int) -> tuple[str, str]:
    """One UTC second's ISO 8601 prefix and capture partition (a flush spans a few seconds: cached)."""
    moment = time.gmtime(epoch_second)
    return time.strftime("%Y-%m-%dT%H:%M:%S", moment), time.strftime("date=%Y-%m-%d/hour=%H", moment)


class CaptureWriter:
    """The worker's background writer: `offer` from request threads, `close` once at shutdown."""

    def __init__(self, uri: str, *, include_text: bool, flush_seconds: float, s3_client: Any = None) -> None:
        self.uri = uri.rstrip("/")
        self.include_text = include_text
        self.flush_seconds = flush_seconds
        self._s3_client = s3_client
        self._buffer: list[_Request] = []
        self._buffered_records = 0
        self._lock = threading.Lock()  # uncontended: the writer takes it twice a second
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="capture-writer", daemon=True)
        self._started = threading.Lock()
        self._last_error: str | None = None

    def offer(
        self, request_id: str, predictor: Predictor, texts: Sequence[str], predictions: Sequence[Prediction]
    ) -> None:
        """Buffer the request `predictor` has just predicted (in this thread), or drop (and count) its records
        when they do not fit. Never blocks."""
        self._start_once()
        request = _Request(time.time(), request_id, predictor.version, texts, predictions, predictor.last_encoding())
        with self._lock:
            fits = self._buffered_records + len(texts) <= QUEUE_RECORDS
            if fits:
                self._buffer.append(request)
                self._buffered_records += len(texts)
        if not fits:
            metrics.CAPTURE_RECORDS.labels("dropped_full").inc(len(texts))

    def close(self, timeout: float = CLOSE_TIMEOUT_SECONDS) -> None:
        """Write out what is buffered and stop the thread (waits at most `timeout` seconds)."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def _start_once(self) -> None:
        if self._thread.ident is None and self._started.acquire(blocking=False):  # ident: cheaper than is_alive()
            self._thread.start()  # in the serving process, after gunicorn's fork: threads do not survive a fork

    def _run(self) -> None:
        pending: list[_Request] = []
        pending_records = 0
        deadline = time.monotonic() + self.flush_seconds
        while True:
            stopping = self._stop.wait(min(DRAIN_SECONDS, self.flush_seconds))
            with self._lock:
                pending += self._buffer
                pending_records += self._buffered_records
                self._buffer, self._buffered_records = [], 0
            if stopping or pending_records >= FLUSH_RECORDS or time.monotonic() >= deadline:
                self._flush(pending)
                pending, pending_records = [], 0
                deadline = time.monotonic() + self.flush_seconds
            if stopping:
                return

    def _flush(self, pending: list[_Request]) -> None:
        for partition, lines in self._json_lines(pending).items():
            name = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex}.jsonl.gz"
            body = igzip.compress(b"\n".join(lines) + b"\n", compresslevel=1)
            try:
                storage.write_bytes(f"{self.uri}/{partition}/{name}", body, client=self._client())
            except Exception as exc:  # the writer is a boundary: a failed batch is dropped and counted, never raised
                metrics.CAPTURE_RECORDS.labels("dropped_failed").inc(len(lines))
                if first_line(exc) != self._last_error:  # once per distinct failure, not once per batch
                    self._last_error = first_line(exc)
                    log.error("capture write failed, %d records dropped: %s", len(lines), self._last_error)
                continue
            metrics.CAPTURE_RECORDS.labels("written").inc(len(lines))

    def _json_lines(self, pending: list[_Request]) -> dict[str, list[bytes]]:
        """Each partition's records, one JSON document per text."""
        stats = token_stats([request.encoding for request in pending])
        features = zip(stats.lengths.tolist(), stats.unknown_rates.tolist(), strict=True)
        partitions: dict[str, list[bytes]] = defaultdict(list)
        for request in pending:
            second, hour = _utc_second(int(request.time))
            stamp = f"{second}.{int(request.time % 1 * 1000):03d}+00:00"
            lines = partitions[f"model_version={request.model_version}/{hour}"]
            for text, prediction in zip(request.texts, request.predictions, strict=True):
                length, rate = next(features)
                record = {
                    "time": stamp,
                    "request_id": request.request_id,
                    "model_version": request.model_version,
                    "token_length": length,
                    "unknown_token_rate": rate,
                    "non_ascii": not text.isascii(),
                    "score": float(prediction.score),
                    "label": prediction.label,
                }
                if self.include_text:
                    record["text"] = text
                lines.append(orjson.dumps(record))  # never fails: texts are valid Unicode, scores finite
        return partitions

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
