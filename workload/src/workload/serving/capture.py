"""Data capture: a sampled share of `/predict` requests recorded for the monitoring job (`python -m workload monitor`).

The request thread draws the sample and, for a sampled request, writes its records' JSON lines (orjson; the
features, token length and unknown-token rate, come from the prediction's own token ids) into a buffer the
writer owns: one bytearray per partition, allocated once and reused, copied into. So nothing a request
allocates outlives the request or is freed by another thread, and what is buffered is bounded in bytes. A full
buffer drops the new records (never waits). A writer thread per worker process swaps the buffers about twice a
second and, when a flush is due, compresses each partition's lines as one block (ISA-L's gzip, about 4x faster
than zlib at the same ratio) and writes it as

    <CAPTURE_URI>/model_version=<v>/date=YYYY-MM-DD/hour=HH/<host>-<pid>-<uuid>.jsonl.gz

one object per partition per flush, named by host, process and a random id, so no two workers (or flushes)
ever write the same object. A destination that is down drops the batch; drops are counted in
`sentiment_capture_records_total{outcome=...}`. `close_all` flushes what is buffered (the gunicorn
`worker_exit` hook and atexit call it). Its cost is in docs/monitoring.md.
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
from collections.abc import Sequence
from typing import Any

import orjson
from isal import igzip

from workload import storage
from workload.bundle.predictor import Prediction, Predictor
from workload.errors import first_line
from workload.serving import metrics
from workload.serving.settings import ServeSettings

log = logging.getLogger("workload.serving.capture")

# Per partition and worker, two buffers of this size (filling and being written): about 2,700 IMDB-length
# records each, a few seconds of a saturated worker.
BUFFER_BYTES = 4 << 20
DRAIN_SECONDS = 0.5
FLUSH_RECORDS = 1_000
CLOSE_TIMEOUT_SECONDS = 10.0
# A client-chosen id is echoed back only when it is short and plain; anything else gets a fresh one.
_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")


def request_id(given: str | None) -> str:
    """The client's X-Request-Id when it is a plain token, else a new random id."""
    return given if given is not None and _REQUEST_ID.fullmatch(given) else uuid.uuid4().hex


class _Lines:
    """One partition's JSON lines, copied into a bytearray allocated once and reused after each write."""

    def __init__(self) -> None:
        self.data = bytearray(BUFFER_BYTES)
        self.used = 0
        self.records = 0

    def append(self, lines: list[bytes]) -> bool:
        """Copy `lines` in, each with its newline; False (and nothing copied) when they do not all fit."""
        end = self.used + sum(len(line) + 1 for line in lines)
        if end > len(self.data):
            return False
        for line in lines:
            self.data[self.used : self.used + len(line)] = line
            self.used += len(line) + 1
            self.data[self.used - 1] = 0x0A  # \n
        self.records += len(lines)
        return True

    def clear(self) -> None:
        self.used = self.records = 0


@functools.lru_cache(maxsize=16)
def _utc_second(epoch_second: int) -> tuple[str, str]:
    """One UTC second's ISO 8601 prefix and capture partition (cached: requests arrive many a second)."""
    moment = time.gmtime(epoch_second)
    return time.strftime("%Y-%m-%dT%H:%M:%S", moment), time.strftime("date=%Y-%m-%d/hour=%H", moment)


class CaptureWriter:
    """The worker's background writer: `offer` from request threads, `close` once at shutdown."""

    def __init__(self, uri: str, *, include_text: bool, flush_seconds: float, s3_client: Any = None) -> None:
        self.uri = uri.rstrip("/")
        self.include_text = include_text
        self.flush_seconds = flush_seconds
        self._s3_client = s3_client
        self._filling: dict[str, _Lines] = {}  # partition -> the lines requests append to
        self._spare: list[_Lines] = []  # written buffers, for the next partitions to fill
        self._lock = threading.Lock()  # held for a copy of a few kB or a swap of two dicts
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="capture-writer", daemon=True)
        self._started = threading.Lock()
        self._last_error: str | None = None

    def offer(
        self, request_id: str, predictor: Predictor, texts: Sequence[str], predictions: Sequence[Prediction]
    ) -> None:
        """Buffer the records of the request `predictor` has just predicted (in this thread), or drop (and count)
        them when they do not fit. Never blocks on the writer."""
        self._start_once()
        partition, lines = self._json_lines(time.time(), request_id, predictor, texts, predictions)
        with self._lock:
            lines_buffer = self._filling.get(partition)
            if lines_buffer is None:
                lines_buffer = self._filling[partition] = self._spare.pop() if self._spare else _Lines()
            fits = lines_buffer.append(lines)
        if not fits:
            metrics.CAPTURE_RECORDS.labels("dropped_full").inc(len(lines))

    def close(self, timeout: float = CLOSE_TIMEOUT_SECONDS) -> None:
        """Write out what is buffered and stop the thread (waits at most `timeout` seconds)."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def _start_once(self) -> None:
        if self._thread.ident is None and self._started.acquire(blocking=False):  # ident: cheaper than is_alive()
            self._thread.start()  # in the serving process, after gunicorn's fork: threads do not survive a fork

    def _json_lines(
        self, now: float, request_id: str, predictor: Predictor, texts: Sequence[str], predictions: Sequence[Prediction]
    ) -> tuple[str, list[bytes]]:
        """The request's partition and one JSON document per text."""
        encoding = predictor.last_encoding()
        second, hour = _utc_second(int(now))
        stamp = f"{second}.{int(now % 1 * 1000):03d}+00:00"
        features = zip(encoding.lengths.tolist(), encoding.unknown_counts(), strict=True)
        lines = []
        for text, prediction, (length, unknown) in zip(texts, predictions, features, strict=True):
            record = {
                "time": stamp,
                "request_id": request_id,
                "model_version": predictor.version,
                "token_length": length,
                "unknown_token_rate": unknown / length if length else 0.0,
                "non_ascii": not text.isascii(),
                "score": float(prediction.score),
                "label": prediction.label,
            }
            if self.include_text:
                record["text"] = text
            lines.append(orjson.dumps(record))  # never fails: texts are valid Unicode, scores finite
        return f"model_version={predictor.version}/{hour}", lines

    def _run(self) -> None:
        deadline = time.monotonic() + self.flush_seconds
        while True:
            stopping = self._stop.wait(min(DRAIN_SECONDS, self.flush_seconds))
            with self._lock:
                records = sum(lines.records for lines in self._filling.values())
                due = stopping or records >= FLUSH_RECORDS or time.monotonic() >= deadline
                if due:
                    written, self._filling = self._filling, {}
            if due:
                self._flush(written)
                with self._lock:
                    self._spare.extend(written.values())
                deadline = time.monotonic() + self.flush_seconds
            if stopping:
                return

    def _flush(self, partitions: dict[str, _Lines]) -> None:
        for partition, lines in partitions.items():
            name = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex}.jsonl.gz"
            body = igzip.compress(memoryview(lines.data)[: lines.used], compresslevel=1)
            records = lines.records
            lines.clear()
            try:
                storage.write_bytes(f"{self.uri}/{partition}/{name}", body, client=self._client())
            except Exception as exc:  # the writer is a boundary: a failed batch is dropped and counted, never raised
                metrics.CAPTURE_RECORDS.labels("dropped_failed").inc(records)
                if first_line(exc) != self._last_error:  # once per distinct failure, not once per batch
                    self._last_error = first_line(exc)
                    log.error("capture write failed, %d records dropped: %s", records, self._last_error)
                continue
            metrics.CAPTURE_RECORDS.labels("written").inc(records)

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
