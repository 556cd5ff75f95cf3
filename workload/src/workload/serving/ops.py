"""The ops port: `/health`, `/health/live`, `/metrics` and `/openapi.json`, served by a thread in the gunicorn
master (see gunicorn.conf.py's `when_ready`).

Not by the inference workers: a sync worker serves one request at a time, so under a saturating load of valid
batches a health check would queue behind them and time out, and ECS would replace a healthy task. The load
balancer's target group forwards only the app port, so these operator paths are not public.

Readiness comes from the workers through prometheus-client's multiprocess files: each worker sets the live-sum
gauge `sentiment_model_ready{version}` to 1 once its model is loaded and self-tested, and the master drops a
dead worker's file in `child_exit`. The service is ready while at least one worker is: a worker accepts
connections only once its model is loaded, so traffic never reaches one that is still loading.

Stdlib and prometheus-client only: the master must never import torch (or Flask, which it does not need).
"""

from __future__ import annotations

import collections
import json
import logging
import os
import socket
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

# At import, never in a request: the ops thread must not import anything (see `OpsServer`).
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest, multiprocess
from prometheus_client.registry import Collector, CollectorRegistry

from workload.serving.errors import HTTP_ERROR_CODES as ERROR_CODES_BY_STATUS
from workload.serving.headers import SECURITY_HEADERS

log = logging.getLogger("workload.serving.ops")

MODEL_READY_METRIC = "sentiment_model_ready"  # defined in workload.serving.metrics, read here
# Clients get this reason; why (a missing bundle, a failed check) is in the workers' log lines.
NOT_READY_REASON = "model not ready"


def _merged_metrics(files: Callable[[], list[str]]) -> list[Any]:
    """The multiprocess collector's merged metrics; retried when a dead worker's file vanishes mid-read."""
    for _ in range(3):
        try:
            return list(multiprocess.MultiProcessCollector.merge(files(), accumulate=True))
        except FileNotFoundError:
            continue
    return list(multiprocess.MultiProcessCollector.merge(files(), accumulate=True))


def ready_workers(directory: str) -> collections.Counter[str]:
    """Ready workers per model version, from the live-sum gauge files in the multiprocess `directory`."""
    ready: collections.Counter[str] = collections.Counter()
    for metric in _merged_metrics(lambda: [str(path) for path in Path(directory).glob("gauge_livesum_*.db")]):
        if metric.name == MODEL_READY_METRIC:
            for sample in metric.samples:
                ready[sample.labels.get("version", "")] += int(sample.value)
    return +ready  # drops versions with no ready worker


def render_metrics() -> tuple[bytes, str]:
    """Prometheus exposition text for all workers (or this process outside multiprocess mode)."""
    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if not directory:
        return generate_latest(REGISTRY), CONTENT_TYPE_LATEST

    class AllWorkers(Collector):
        def collect(self) -> Any:
            return _merged_metrics(lambda: [str(path) for path in Path(directory).glob("*.db")])

    registry = CollectorRegistry()
    registry.register(AllWorkers())
    return generate_latest(registry), CONTENT_TYPE_LATEST


def health(ready: collections.Counter[str]) -> tuple[int, dict[str, object]]:
    """`/health`'s status and body for the ready workers per version."""
    if not ready:
        return 503, {"status": "not_ready", "reason": NOT_READY_REASON}
    version, _ = ready.most_common(1)[0]
    return 200, {"status": "ready", "model_version": version, "ready_workers": sum(ready.values())}


class OpsHandler(BaseHTTPRequestHandler):
    server: OpsServer
    server_version = "imdb-sentiment-ops"
    sys_version = ""
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        if path == "/health":
            status, body = health(self.server.readiness())
            self._send(status, json.dumps(body).encode(), "application/json")
        elif path == "/health/live":
            self._send(200, b'{"status": "alive"}', "application/json")
        elif path == "/metrics":
            self._send(200, *render_metrics())
        elif path == "/openapi.json":
            self._send(200, self.server.openapi_json, "application/json")
        else:
            self.send_error(404)

    def _method_not_allowed(self) -> None:
        self.send_error(405)

    do_HEAD = do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = _method_not_allowed

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """Errors (also http.server's own: a bad request line, 414, 431) in the API's JSON shape and headers."""
        phrase = self.responses.get(code, ("error",))[0]
        body = {"error": {"code": ERROR_CODES_BY_STATUS.get(code, "http_error"), "message": message or phrase}}
        self.close_connection = True
        self._send(code, json.dumps(body).encode(), "application/json")

    def _send(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        for name, value in {**SECURITY_HEADERS, "Content-Type": content_type}.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        # Health checks every few seconds would drown the access log; errors (send_error) still get logged.
        log.debug(format, *args)

    def log_error(self, format: str, *args: Any) -> None:
        log.warning(format, *args)


class OpsServer(ThreadingHTTPServer):
    """The ops HTTP server; `start()` serves it from a daemon thread of the calling process.

    In the gunicorn master, that thread runs while workers fork. A thread that is importing a module holds
    that module's import lock, and a worker forked at that moment inherits the lock held by a thread it does
    not have: the worker hangs for good when it imports the module (seen: a worker stuck importing
    prometheus_client while the ops thread answered the first `/health`). So serving a request imports
    nothing: everything it needs is imported with this module (tests/workload/test_server.py checks)."""

    daemon_threads = True

    def __init__(
        self, address: tuple[str, int], readiness: Callable[[], collections.Counter[str]], openapi: dict
    ) -> None:
        self.address_family = _family(address[0])
        super().__init__(address, OpsHandler)
        self.readiness = readiness
        self.openapi_json = json.dumps(openapi).encode()
        self._thread: threading.Thread | None = None

    def start(self) -> OpsServer:
        self._thread = threading.Thread(target=self.serve_forever, name="ops-server", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self.shutdown()
        self.server_close()


def _family(host: str) -> int:
    return socket.AF_INET6 if ":" in host else socket.AF_INET
