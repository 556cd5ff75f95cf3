"""Real gunicorn on a free loopback port, serving `tiny_bundle` from S3 (moto_server via EmbeddedS3).

One server for the module (starting gunicorn + torch costs seconds): the fixture starts it before the bundle
exists in S3, so readiness must go 503 -> 200 once the bundle is uploaded; the tests then exercise the API,
the multi-worker metrics, worker replacement, the OpenAPI contract, and finally a graceful SIGTERM.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from prometheus_client.parser import text_string_to_metric_families
from schemathesis.generation import GenerationMode
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


def metric(url: str, name: str, timeout: float = 10, **labels: str) -> float:
    text = requests.get(url + "/metrics", timeout=timeout).text
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
            # Until the first fetch attempt fails the reason is "model is loading"; wait for the failure.
            deadline = time.monotonic() + 60
            while json.loads((health := get(server.url + "/health"))[1])["reason"] == "model is loading":
                assert time.monotonic() < deadline, "the loader never reported the missing bundle"
                time.sleep(0.1)
            status, body = health
            upload_bundle(s3, tiny_bundle, MODEL_URI)
            uploaded = time.monotonic()
            server.wait_ready(timeout=60)
            yield LiveServer(server, log, (status, json.loads(body)), time.monotonic() - uploaded)


def test_health_is_503_until_the_bundle_exists_then_200(live, tiny_bundle):
    status, body = live.health_before_upload
    assert status == 503 and body["status"] == "not_ready" and body["reason"].startswith("model not ready:")
    manifest = json.loads((tiny_bundle / "manifest.json").read_text())
    assert live.server.health() == {"status": "ready", "model_version": manifest["version"]}
    assert requests.get(live.url + "/health/live", timeout=5).json() == {"status": "alive"}
    # The missing bundle was logged once per worker, not once per retry, as one JSON line each.
    failures = [json.loads(line) for line in live.log.read_text().splitlines() if "model not ready" in line]
    assert 1 <= len(failures) <= WORKERS, failures
    assert all(entry["level"] == "ERROR" for entry in failures)


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
    before = metric(live.url, "sentiment_http_requests_total", endpoint="/predict", status="200")
    negative_before = metric(live.url, "sentiment_predictions_total", label="negative")
    n = 40
    for _ in range(n):
        # Sync workers close each connection, so the requests spread over the workers.
        response = requests.post(live.url + "/predict", json={"text": "A dull, boring waste of two hours."})
        assert response.status_code == 200
    assert metric(live.url, "sentiment_http_requests_total", endpoint="/predict", status="200") - before == n
    assert metric(live.url, "sentiment_predictions_total", label="negative") - negative_before == n
    assert metric(live.url, "sentiment_http_request_duration_seconds_count", endpoint="/predict") >= n
    assert metric(live.url, "sentiment_model_ready") == WORKERS
    assert metric(live.url, "sentiment_model_load_seconds") > 0


def test_a_killed_worker_is_replaced_and_the_service_recovers(live):
    workers = live.server.worker_pids()
    assert len(workers) == WORKERS
    victim = min(workers)
    os.kill(victim, signal.SIGKILL)
    deadline = time.monotonic() + 60
    while live.server.worker_pids() == workers or len(live.server.worker_pids()) < WORKERS:
        assert time.monotonic() < deadline, "gunicorn did not replace the killed worker"
        time.sleep(0.1)
    assert victim not in live.server.worker_pids()
    live.server.wait_ready(timeout=60)
    # The dead worker's live gauge was dropped (child_exit -> mark_process_dead), so readiness sums right.
    assert metric(live.url, "sentiment_model_ready") == WORKERS
    for _ in range(10):
        assert requests.post(live.url + "/predict", json={"text": "Wonderful!"}, timeout=10).status_code == 200


def test_the_live_server_matches_its_openapi_document(live):
    schema = schemathesis.openapi.from_url(live.url + "/openapi.json")
    strategy = schema.as_strategy(GenerationMode.POSITIVE) | schema.as_strategy(GenerationMode.NEGATIVE)
    calls = []

    @settings(max_examples=150, deadline=None, database=None, derandomize=True, suppress_health_check=list(HealthCheck))
    @given(case=strategy)
    def check(case):
        calls.append(case.call_and_validate(timeout=10).status_code)

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
        # Wait until a worker is inside the request, blocked on the rest of the body (the scrape counts itself).
        # That sync worker accepts nothing else meanwhile, so the scrapes reach the other one; the short timeout
        # only keeps one stalled scrape from eating the deadline.
        deadline = time.monotonic() + 30
        while True:
            assert time.monotonic() < deadline, "the half-sent request never reached a worker"
            try:
                if metric(live.url, "sentiment_http_requests_in_progress", timeout=1) >= 2:
                    break
            except requests.Timeout:
                pass
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
    with pytest.raises(requests.ConnectionError):
        requests.get(live.url + "/health/live", timeout=2)
