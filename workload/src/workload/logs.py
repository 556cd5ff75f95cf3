"""Logging set-up shared by the commands and the server: JSON log lines on stdout (one object per line), which
CloudWatch parses, and the SDK loggers that are kept quiet. Standard library only."""

from __future__ import annotations

import json
import logging
import time
from typing import Any

# The AWS SDK logs every client's endpoint and credentials lookup at INFO: noise in every step's log.
SDK_LOGGERS = ("botocore", "boto3", "s3transfer", "urllib3")


class JsonFormatter(logging.Formatter):
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
