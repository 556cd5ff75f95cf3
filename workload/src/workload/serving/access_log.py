"""gunicorn's access log as JSON lines (the format is `workload.logs.JsonFormatter`'s)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from gunicorn.glogging import Logger


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
