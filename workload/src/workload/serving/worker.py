"""The gunicorn worker class (`worker_class` in gunicorn.conf.py): gunicorn's sync worker, whose own error
responses carry the security headers and the API's error shape.

gunicorn answers a request it cannot parse (a bad request line 400, a request line too long 414, a header too
large 431, ...) itself, before the app runs, so Flask's `after_request` never sees those responses. A worker
subclass is gunicorn's documented way to change worker behaviour; this one lets gunicorn classify the error and
log it as usual, then writes the response itself.

Imported by the gunicorn master (it loads `worker_class`): stdlib and gunicorn only, never Flask or torch.
"""

from __future__ import annotations

import json
import socket
from http import HTTPStatus
from typing import Any

from gunicorn import util
from gunicorn.http.errors import UnsupportedTransferCoding
from gunicorn.workers.sync import SyncWorker

from workload.serving.errors import HTTP_ERROR_CODES
from workload.serving.headers import SECURITY_HEADERS


class _RecordingSocket:
    """Stands in for the client socket while gunicorn writes its error page: keeps the bytes, sends nothing.
    Everything else (address lookups for the access log, blocking mode) goes to the real socket."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self.written = b""

    def __getattr__(self, name: str) -> Any:  # proxies any socket attribute
        return getattr(self._sock, name)

    def sendall(self, data: bytes) -> None:
        self.written += bytes(data)


def error_response(status: int) -> bytes:
    """A complete HTTP/1.1 error response: the API's JSON error shape and the security headers. The message is
    the reason phrase only: gunicorn's detail quotes the client's bytes back, and the log line already has it."""
    code = HTTP_ERROR_CODES.get(status, "internal_error" if status >= 500 else "http_error")
    reason = HTTPStatus(status).phrase
    body = json.dumps({"error": {"code": code, "message": reason}}).encode()
    headers = {
        "Connection": "close",
        "Content-Type": "application/json",
        "Content-Length": str(len(body)),
        **SECURITY_HEADERS,
    }
    head = f"HTTP/1.1 {status} {reason}\r\n" + "".join(f"{name}: {value}\r\n" for name, value in headers.items())
    return head.encode("latin-1") + b"\r\n" + body


class SecureSyncWorker(SyncWorker):
    def handle_error(self, req: Any, client: socket.socket, addr: Any, exc: BaseException) -> None:
        recorder = _RecordingSocket(client)
        super().handle_error(req, recorder, addr, exc)  # classifies, logs, writes its page into `recorder`
        status_line = recorder.written.split(b"\r\n", 1)[0].decode("latin-1").split(" ", 2)
        if len(status_line) < 3 or not status_line[1].isdigit():
            return  # gunicorn wrote nothing (it failed before writing): nothing to rewrite either
        status = int(status_line[1])
        if isinstance(exc, UnsupportedTransferCoding):
            # gunicorn answers 501 (RFC 9112 6.1 says SHOULD), but it is the client's input: a 5xx would count
            # against the service in the 5xx alarm. gunicorn itself logs it as an invalid request.
            status = 400
        try:
            util.write_nonblock(client, error_response(status))
        except Exception:  # as gunicorn's own handle_error: the client may be gone
            self.log.debug("Failed to send error message.")
