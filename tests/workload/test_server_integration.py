"""Real gunicorn on a free loopback port, serving `tiny_bundle` from S3 (moto_server via EmbeddedS3).

One server for the module (starting gunicorn + torch costs seconds): the fixture starts it before the bundle
exists in S3, so readiness (on the ops port) must go 503 -> 200 once the bundle is uploaded; the tests then
exercise the API, the multi-worker metrics, health while every worker is busy, worker replacement under load,
malformed chunked bodies and requests gunicorn rejects itself over raw sockets, the OpenAPI contract, and
finally a graceful SIGTERM.
"""

from __future__ import annotations

import collections
import json
import os
import signal
import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from prometheus_client.parser import text_string_to_metric_families
from schemathesis.generation import GenerationMode
from workload.serving.headers import SECURITY_HEADERS
from workload_devtools.embedded_s3 import EmbeddedS3
from workload_devtools.server_process import ServerProcess, get

pytestmark = pytest.mark.integration

BUCKET = "serve-test"
MODEL_URI = f"s3://{BUCKET}/models/v1"
WORKERS = 2


@dataclass
class LiveServer:
    server: ServerProcess
    log: Path
    health_before_upload: tuple[int, dict]
    ready_after_upload_s: float

    @property
    def url(self) -> str:
        return self.server.url


def upload_bundle(s3: EmbeddedS3, bundle: Path, uri: str) -> None:
    client = s3.client()
    bucket, prefix = uri.removeprefix("s3://").split("/", 1)
    files = sorted(p for p in bundle.rglob("*") if p.is_file())
    # manifest.json last: a bundle is complete only once its manifest exists.
    for path in sorted(files, key=lambda p: p.name == "manifest.json"):
        client.upload_file(str(path), bucket, f"{prefix}/{path.relative_to(bundle).as_posix()}")


def metric(ops_url: str, name: str, timeout: float = 10, **labels: str) -> float:
    text = requests.get(ops_url + "/metrics", timeout=timeout).text
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items())
    )


@pytest.fixture(scope="module")
def live(tiny_bundle, tmp_path_factory):
    log = tmp_path_factory.mktemp("gunicorn") / "server.log"
    with EmbeddedS3() as s3:
        s3.client().create_bucket(Bucket=BUCKET)
        env = s3.child_env()
        env.update({"WEB_CONCURRENCY": str(WORKERS), "MODEL_RETRY_SECONDS": "0.3", "GUNICORN_GRACEFUL_TIMEOUT": "20"})
        env.update({"MODEL_CACHE_DIR": str(tmp_path_factory.mktemp("model-cache"))})
        with ServerProcess(MODEL_URI, env=env, log_path=log) as server:
            server.wait_for("/health/live", timeout=60)
            # Wait for the workers' first fetch attempts to fail (they log it), then ask for readiness.
            deadline = time.monotonic() + 60
            while log.read_text().count("model not ready") < WORKERS:
                assert time.monotonic() < deadline, "the workers never reported the missing bundle"
                time.sleep(0.1)
            status, body = get(server.ops_url + "/health")
            upload_bundle(s3, tiny_bundle, MODEL_URI)
            uploaded = time.monotonic()
            server.wait_ready(timeout=60, workers=WORKERS)
            yield LiveServer(server, log, (status, json.loads(body)), time.monotonic() - uploaded)


def test_health_is_503_until_the_bundle_exists_then_200(live, tiny_bundle):
    status, body = live.health_before_upload
    # Generic to clients (no bucket or key); the details are in the workers' log lines.
    assert (status, body) == (503, {"status": "not_ready", "reason": "model not ready"})
    manifest = json.loads((tiny_bundle / "manifest.json").read_text())
    assert live.server.health() == {"status": "ready", "model_version": manifest["version"], "ready_workers": WORKERS}
    assert requests.get(live.server.ops_url + "/health/live", timeout=5).json() == {"status": "alive"}
    # The missing bundle was logged once per worker, not once per retry, as one JSON line each, with its URI.
    failures = [json.loads(line) for line in live.log.read_text().splitlines() if "model not ready" in line]
    assert len(failures) == WORKERS, failures
    assert all(entry["level"] == "ERROR" and MODEL_URI in entry["message"] for entry in failures)


def test_operator_paths_are_only_on_the_ops_port(live):
    ops = live.server.ops_url
    for path in ("/health", "/health/live", "/metrics", "/openapi.json"):
        assert requests.get(live.url + path, timeout=5).status_code == 404, path
        response = requests.get(ops + path, timeout=5)
        assert response.status_code == 200, path
        assert (
            response.headers["X-Frame-Options"] == "DENY"
            and "frame-ancestors 'none'" in response.headers["Content-Security-Policy"]
        )
    assert requests.get(ops + "/predict", timeout=5).status_code == 404


def test_a_forged_host_is_not_reflected_into_redirects(live):
    response = requests.get(
        live.url + "/static//app.js", headers={"Host": "evil.example"}, allow_redirects=False, timeout=5
    )
    assert response.status_code == 308 and response.headers["Location"] == "/static/app.js"
    assert response.headers["X-Content-Type-Options"] == "nosniff"


def test_predict_single_and_batch(live):
    single = requests.post(live.url + "/predict", json={"text": "The movie was amazing!"}, timeout=10).json()
    assert single["label"] == "positive" and 0.5 < single["score"] <= 1.0 and single["model_version"]
    batch = requests.post(
        live.url + "/predict", json={"texts": ["A dull, boring waste of two hours.", "Wonderful!"]}, timeout=10
    ).json()
    assert [p["label"] for p in batch["predictions"]] == ["negative", "positive"]
    assert (
        requests.post(live.url + "/predict", data="{", headers={"Content-Type": "application/json"}).status_code == 400
    )


def test_metrics_aggregate_all_workers(live):
    ops = live.server.ops_url
    before = metric(ops, "sentiment_http_requests_total", endpoint="/predict", status="200")
    negative_before = metric(ops, "sentiment_predictions_total", label="negative")
    n = 40
    for _ in range(n):
        # Sync workers close each connection, so the requests spread over the workers.
        response = requests.post(live.url + "/predict", json={"text": "A dull, boring waste of two hours."})
        assert response.status_code == 200
    assert metric(ops, "sentiment_http_requests_total", endpoint="/predict", status="200") - before == n
    assert metric(ops, "sentiment_predictions_total", label="negative") - negative_before == n
    assert metric(ops, "sentiment_http_request_duration_seconds_count", endpoint="/predict") >= n
    assert metric(ops, "sentiment_model_ready") == WORKERS
    assert metric(ops, "sentiment_model_load_seconds") > 0


def send_raw(port: int, request: bytes, timeout: float = 30) -> bytes:
    """Send `request` bytes on a new connection, half-close, and return everything the server answers."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(request)
        sock.shutdown(socket.SHUT_WR)
        response = b""
        while chunk := sock.recv(65536):
            response += chunk
    return response


CHUNKED_HEAD = (
    b"POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
)


@pytest.mark.parametrize(
    "framing",
    [
        b"zz\r\n{}\r\n0\r\n\r\n",  # a chunk size that is not hex
        b"2\r\n{}XX0\r\n\r\n",  # the CRLF after the chunk data is missing
        b"2\r\n{}\r\n0\r\n" + b"X-Trailer: " + b"a" * 70_000 + b"\r\n\r\n",  # an oversized trailer
        b"2\r\n{}\r\n0\r\nbad trailer line\r\n\r\n",  # a trailer that is not a header
        b"10\r\n{}",  # the body ends inside a chunk
    ],
)
def test_malformed_chunked_bodies_are_400_without_a_traceback(live, framing):
    response = send_raw(live.server.port, CHUNKED_HEAD + framing)
    head, _, body = response.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400"), response[:300]
    assert json.loads(body)["error"]["code"] == "bad_request"
    assert "Traceback" not in live.log.read_text()


@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        (b"NOT A REQUEST LINE\r\n\r\n", 400),
        (b"G@T / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", 400),  # an invalid method
        (b"GET /" + b"a" * 5000 + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", 414),  # request line > 4094 bytes
        (b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: " + b"a" * 9000 + b"\r\n\r\n", 431),  # field > 8190
        (b"GET / HTTP/1.1\r\n" + b"X-Many: 1\r\n" * 101 + b"\r\n", 431),  # more than 100 header fields
        (b"POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: foo\r\n\r\n", 400),  # gunicorn: 501
    ],
)
def test_requests_gunicorn_rejects_itself_get_the_security_headers(live, request_bytes, status):
    """gunicorn answers these before Flask runs; the worker class gives them the headers and the error shape."""
    head, _, body = send_raw(live.server.port, request_bytes).partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in header_lines)
    assert status_line.split(" ")[1] == str(status), status_line
    assert {name: headers.get(name) for name in SECURITY_HEADERS} == SECURITY_HEADERS
    assert headers["Content-Type"] == "application/json" and int(headers["Content-Length"]) == len(body)
    assert set(json.loads(body)["error"]) == {"code", "message"}
    assert b"a" * 100 not in body  # the client's bytes are not echoed back


def test_health_answers_while_every_worker_is_busy(live):
    """A sync worker holds one request at a time; with every worker inside a request, the ops port (served by
    the master) still answers at once, while the app port waits."""
    body = json.dumps({"text": "The movie was amazing!"}).encode()
    head = (
        f"POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode()
    sockets = [socket.create_connection(("127.0.0.1", live.server.port), timeout=30) for _ in range(WORKERS)]
    try:
        for sock in sockets:
            sock.sendall(head + body[:5])  # half a request: the worker that accepts it waits for the rest
        deadline = time.monotonic() + 30
        while metric(live.server.ops_url, "sentiment_http_requests_in_progress") < WORKERS:
            assert time.monotonic() < deadline, "the half-sent requests never reached the workers"
            time.sleep(0.05)
        with pytest.raises(requests.Timeout):
            requests.get(live.url + "/", timeout=1)
        started = time.monotonic()
        assert requests.get(live.server.ops_url + "/health", timeout=5).status_code == 200
        assert time.monotonic() - started < 1.0
    finally:
        for sock in sockets:
            sock.close()


def test_a_killed_workers_replacement_takes_no_request_before_its_model_is_ready(live):
    """SIGKILL a worker while clients send requests: its replacement loads the model before it accepts, so no
    request gets a 503; only the one request the killed worker was inside may be cut."""
    workers = live.server.worker_pids()
    assert len(workers) == WORKERS
    outcomes: collections.Counter[object] = collections.Counter()
    stop = threading.Event()

    def client() -> None:
        while not stop.is_set():
            try:
                outcomes[requests.post(live.url + "/predict", json={"text": "Wonderful!"}, timeout=30).status_code] += 1
            except requests.ConnectionError:
                outcomes["connection_error"] += 1

    clients = [threading.Thread(target=client) for _ in range(4)]
    for thread in clients:
        thread.start()
    try:
        time.sleep(0.5)
        victim = min(workers)
        os.kill(victim, signal.SIGKILL)
        deadline = time.monotonic() + 60
        while victim in (pids := live.server.worker_pids()) or len(pids) < WORKERS:
            assert time.monotonic() < deadline, "gunicorn did not replace the killed worker"
            time.sleep(0.05)
        live.server.wait_ready(timeout=60, workers=WORKERS)
        time.sleep(0.5)  # requests reach the new worker too
    finally:
        stop.set()
        for thread in clients:
            thread.join(timeout=60)
    # The dead worker's live gauge was dropped (child_exit -> mark_process_dead), so readiness sums right.
    assert metric(live.server.ops_url, "sentiment_model_ready") == WORKERS
    assert outcomes[200] > 0 and outcomes["connection_error"] <= 1, outcomes
    assert set(outcomes) <= {200, "connection_error"}, outcomes


def test_the_live_server_matches_its_openapi_document(live):
    schema = schemathesis.openapi.from_url(live.server.ops_url + "/openapi.json")
    strategy = schema.as_strategy(GenerationMode.POSITIVE) | schema.as_strategy(GenerationMode.NEGATIVE)
    calls = []

    @settings(max_examples=150, deadline=None, database=None, derandomize=True, suppress_health_check=list(HealthCheck))
    @given(case=strategy)
    def check(case):
        calls.append(case.call_and_validate(base_url=live.url, timeout=10).status_code)

    check()
    print(f"schemathesis: {len(calls)} live calls, statuses {sorted(set(calls))}")
    assert all(status < 500 for status in calls)


def test_sigterm_lets_an_in_flight_request_finish(live):
    """Send half a request, SIGTERM the master, send the rest: the answer still arrives, then gunicorn exits."""
    body = json.dumps({"text": "The movie was amazing!"}).encode()
    head = (
        f"POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    ).encode()
    with socket.create_connection(("127.0.0.1", live.server.port), timeout=30) as sock:
        sock.sendall(head + body[:10])
        # Wait until a worker is inside the request, blocked on the rest of the body (scrapes are on the ops port).
        deadline = time.monotonic() + 30
        while metric(live.server.ops_url, "sentiment_http_requests_in_progress") < 1:
            assert time.monotonic() < deadline, "the half-sent request never reached a worker"
            time.sleep(0.05)
        live.server.process.send_signal(signal.SIGTERM)
        time.sleep(0.5)
        sock.sendall(body[10:])
        response = b""
        while chunk := sock.recv(65536):
            response += chunk
    status_line, _, rest = response.partition(b"\r\n")
    assert status_line.startswith(b"HTTP/1.1 200"), response[:500]
    assert json.loads(rest.split(b"\r\n\r\n", 1)[1])["label"] == "positive"
    assert live.server.process.wait(timeout=30) == 0
    for url in (live.url + "/", live.server.ops_url + "/health/live"):
        with pytest.raises(requests.ConnectionError):
            requests.get(url, timeout=2)
