"""Slow clients against the local server (no ALB in front): how many slow-header sockets stall `/predict`, and
whether the ops port stays up. Prints ONE JSON line.

    python benchmarks/slow_clients.py [--model MODEL_URI] [--hold 8] [--timeout 10]

It starts the real server (2 sync workers, GUNICORN_TIMEOUT=`--timeout`) on 127.0.0.1 and, for 0, 1, 2, ...
up to workers + 1 slow sockets, each sending its request headers one byte per second, checks whether a normal
`POST /predict` is answered within 2 s and how fast the ops port's `/health` answers. A sync worker reads one
request at a time, so each slow socket holds one worker until the master times it out (GUNICORN_TIMEOUT) and
replaces it. Last, it holds every worker past GUNICORN_TIMEOUT and reports how long `/predict` took to answer
again. In production the ALB buffers requests, so workers only ever see complete ones (docs/serving.md).
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import socket
import tempfile
import threading
import time
from pathlib import Path

from serve import quick_bundle, run_benchmark
from workload_devtools.server_process import ServerProcess, get

WORKERS = 2
SLOW_HEAD = b"POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nX-Slow: " + b"a" * 600


class SlowClient(threading.Thread):
    """Sends SLOW_HEAD one byte per second until stopped or the server closes the connection."""

    def __init__(self, port: int) -> None:
        super().__init__(daemon=True)
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=60)
        self.stopped = threading.Event()

    def run(self) -> None:
        for byte in SLOW_HEAD:
            if self.stopped.wait(1.0):
                return
            try:
                self.sock.sendall(bytes([byte]))
            except OSError:
                return  # the worker holding it was timed out and killed

    def stop(self) -> None:
        self.stopped.set()
        self.sock.close()


def predict_seconds(port: int, timeout: float) -> float | None:
    """Seconds until `/predict` answers 200, or None if not within `timeout`."""
    started = time.monotonic()
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        connection.request("POST", "/predict", body=b'{"text": "fine"}', headers={"Content-Type": "application/json"})
        response = connection.getresponse()
        response.read()
        return time.monotonic() - started if response.status == 200 else None
    except (OSError, http.client.HTTPException):
        return None
    finally:
        connection.close()


def health_ms(server: ServerProcess) -> float | str:
    started = time.perf_counter()
    status, _ = get(server.ops_url + "/health", timeout=5)
    return round((time.perf_counter() - started) * 1000, 1) if status == 200 else f"status {status}"


def held_by(server: ServerProcess, count: int, hold: float) -> dict[str, object]:
    clients = [SlowClient(server.port) for _ in range(count)]
    for client in clients:
        client.start()
    try:
        time.sleep(hold)  # the workers accept them and block reading their headers
        answered = predict_seconds(server.port, timeout=2.0)
        return {
            "slow_sockets": count,
            "predict_within_2s": answered is not None,
            "ops_health_ms": health_ms(server),
        }
    finally:
        for client in clients:
            client.stop()


def recovery(server: ServerProcess, worker_timeout: int) -> dict[str, object]:
    """Hold every worker with slow sockets and time until a normal request is answered again."""
    clients = [SlowClient(server.port) for _ in range(WORKERS)]
    for client in clients:
        client.start()
    try:
        time.sleep(1.0)
        answered = predict_seconds(server.port, timeout=worker_timeout * 3 + 30)
        return {"all_workers_held_then_predict_answered_after_s": answered and round(answered, 1)}
    finally:
        for client in clients:
            client.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", help="model bundle URI (default: train a small synthetic bundle)")
    parser.add_argument("--hold", type=float, default=3.0, help="seconds the slow sockets run before checking")
    parser.add_argument("--timeout", type=int, default=10, help="GUNICORN_TIMEOUT for the server (default 10)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-slow-") as tmp:
        model = args.model or str(quick_bundle(Path(tmp)))
        env = {**os.environ, "WEB_CONCURRENCY": str(WORKERS), "GUNICORN_TIMEOUT": str(args.timeout)}
        with ServerProcess(model, env={**env, "LOG_LEVEL": "WARNING"}, log_path=Path(tmp) / "server.log") as server:
            server.wait_ready(timeout=120, workers=WORKERS)
            steps = [held_by(server, count, args.hold) for count in range(WORKERS + 2)]
            server.wait_ready(timeout=120, workers=WORKERS)
            recovered = recovery(server, args.timeout)
    stalls_at = next((step["slow_sockets"] for step in steps if not step["predict_within_2s"]), None)
    figures = {
        "workers": WORKERS,
        "gunicorn_timeout_s": args.timeout,
        "slow_sockets_that_stall_predict": stalls_at,
        "steps": steps,
        **recovered,
    }
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    run_benchmark(main)
