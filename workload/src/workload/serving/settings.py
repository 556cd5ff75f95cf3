"""Serving settings read from the environment (12-factor), so the container and ECS need no config files.

- `MODEL_URI`: the bundle to serve (local path or s3://bucket/prefix); `serve --model` sets it.
- `MODEL_CACHE_DIR`: where S3 bundles are cached and verified (default: ~/.cache/imdb-sentiment).
- `MAX_BODY_BYTES` (1 MiB), `MAX_BATCH` (64), `MAX_TEXT_CHARS` (20000): request limits (413 / 422).
- `MODEL_RETRY_SECONDS` (10): how often a worker retries a missing or bad bundle while not ready.
- `CAPTURE_PERCENT` (0): share of `/predict` requests recorded for monitoring, 0-100; needs `CAPTURE_URI`
  (s3://bucket/capture/ or a local folder). `CAPTURE_TEXT` (true): false keeps the review text out of the
  records (the derived features stay). `CAPTURE_FLUSH_SECONDS` (30): how long a record may wait in the
  worker's buffer before it is written. See `workload.serving.capture`.
gunicorn.conf.py adds `WEB_CONCURRENCY`, `GUNICORN_TIMEOUT`, `GUNICORN_GRACEFUL_TIMEOUT`, `LOG_LEVEL` and
`OPS_PORT` (8081).
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from workload.errors import WorkloadError

_Number = TypeVar("_Number", int, float)


def _positive(source: Mapping[str, object], key: str, default: _Number, cast: Callable[[Any], _Number]) -> _Number:
    """`source[key]` (or `default`) as a positive `cast` (int or float); a clear error otherwise."""
    raw = source.get(key, default)
    kind = "integer" if cast is int else "number"
    try:
        value = cast(raw)
    except (TypeError, ValueError):
        raise WorkloadError(f"{key} must be a positive {kind}, got {raw!r}") from None
    if not value > 0:  # also rejects NaN
        raise WorkloadError(f"{key} must be a positive {kind}, got {raw!r}")
    return value


@dataclass(frozen=True)
class ServeSettings:
    model_uri: str | None
    model_cache_dir: str | None
    max_body_bytes: int
    max_batch: int
    max_text_chars: int
    model_retry_seconds: float
    capture_percent: float = 0.0
    capture_uri: str | None = None
    capture_text: bool = True
    capture_flush_seconds: float = 30.0

    @classmethod
    def from_mapping(cls, overrides: Mapping[str, object] | None = None) -> ServeSettings:
        """Environment variables, with `overrides` (same keys) taking precedence."""
        source: dict[str, object] = {**os.environ, **(overrides or {})}
        return cls(
            model_uri=str(source["MODEL_URI"]) if source.get("MODEL_URI") else None,
            model_cache_dir=str(source["MODEL_CACHE_DIR"]) if source.get("MODEL_CACHE_DIR") else None,
            max_body_bytes=_positive(source, "MAX_BODY_BYTES", 1024 * 1024, int),
            max_batch=_positive(source, "MAX_BATCH", 64, int),
            # The longest IMDB review is ~14k characters; leave headroom without inviting huge inputs.
            max_text_chars=_positive(source, "MAX_TEXT_CHARS", 20_000, int),
            model_retry_seconds=_positive(source, "MODEL_RETRY_SECONDS", 10.0, float),
            **_capture_settings(source),
        )


def _capture_settings(source: Mapping[str, object]) -> dict[str, Any]:
    raw_percent = source.get("CAPTURE_PERCENT") or 0
    try:
        percent = float(raw_percent)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        percent = math.nan
    if not 0 <= percent <= 100:  # also rejects NaN
        raise WorkloadError(f"CAPTURE_PERCENT must be a number from 0 to 100, got {raw_percent!r}")
    uri = str(source["CAPTURE_URI"]) if source.get("CAPTURE_URI") else None
    if percent > 0 and uri is None:
        raise WorkloadError(f"CAPTURE_PERCENT is {raw_percent} but CAPTURE_URI is not set (where should records go?)")
    raw_text = str(source.get("CAPTURE_TEXT", "true")).strip().lower()
    if raw_text not in _BOOLEANS:
        raise WorkloadError(f"CAPTURE_TEXT must be true or false, got {source.get('CAPTURE_TEXT')!r}")
    return {
        "capture_percent": percent,
        "capture_uri": uri,
        "capture_text": _BOOLEANS[raw_text],
        "capture_flush_seconds": _positive(source, "CAPTURE_FLUSH_SECONDS", 30.0, float),
    }


_BOOLEANS = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}
