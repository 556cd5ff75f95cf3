"""The server's logs: JSON lines on stdout for gunicorn's error and access logs and the app's own loggers.

Imported by the gunicorn master (gunicorn.conf.py): stdlib, gunicorn and orjson only, never Flask or torch.
"""

from __future__ import annotations

import json
import logging
import time
from datetime import timedelta
from typing import Any

import orjson
from gunicorn.glogging import Logger

from workload.logs import SDK_LOGGERS


class JsonFormatter(logging.Formatter):
    """One JSON object per line (time, level, logger, pid, message, the record's `fields`, any exception), which
    CloudWatch parses. orjson: the server writes one access line per request, and the standard library's `json`
    took half of that line's cost."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "pid": record.process,
            "message": record.getMessage(),
        }
        entry.update(getattr(record, "fields", {}))
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        try:
            return orjson.dumps(entry, default=str).decode()
        except orjson.JSONEncodeError:  # a lone surrogate (from a client's bytes) that only `json` can escape
            return json.dumps(entry, default=str)


def logconfig_dict(level: str = "INFO") -> dict[str, Any]:
    """`logging.config.dictConfig` for gunicorn: everything (gunicorn, workload, root) as JSON on stdout."""
    handler = {"class": "logging.StreamHandler", "formatter": "json", "stream": "ext://sys.stdout"}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": JsonFormatter}},
        "handlers": {"stdout": handler},
        "root": {"level": level, "handlers": ["stdout"]},
        "loggers": {
            "gunicorn.error": {"level": level, "handlers": ["stdout"], "propagate": False},
            "gunicorn.access": {"level": "INFO", "handlers": ["stdout"], "propagate": False},
            # The AWS SDK logs every credential and endpoint lookup at INFO: noise in CloudWatch.
            **{name: {"level": "WARNING"} for name in SDK_LOGGERS},
        },
    }


class JsonAccessLogger(Logger):
    """gunicorn's logger with structured access entries instead of an Apache-style format string."""

    def access(self, resp: Any, req: Any, environ: dict[str, Any], request_time: timedelta) -> None:
        if not self.access_log_enabled:
            return
        status = resp.status.split(None, 1)[0] if isinstance(resp.status, str) else resp.status
        fields = {
            "method": environ.get("REQUEST_METHOD"),
            "path": environ.get("PATH_INFO"),
            "query": environ.get("QUERY_STRING") or None,
            "status": int(status),
            "bytes": getattr(resp, "sent", None),
            "duration_ms": round(request_time.total_seconds() * 1000, 3),
            "remote_addr": environ.get("REMOTE_ADDR"),
            "user_agent": environ.get("HTTP_USER_AGENT"),
        }
        self.access_log.info("request", extra={"fields": fields})
