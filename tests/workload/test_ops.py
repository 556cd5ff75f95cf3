"""The ops port's server (`workload.serving.ops`) on a free loopback port, and the readiness it reads from the
workers' prometheus multiprocess files (written by real worker-like processes)."""

from __future__ import annotations

import collections
import json
import os
import subprocess
import sys

import pytest
import requests
from workload.serving.headers import SECURITY_HEADERS
from workload.serving.ops import OpsServer, health, ready_workers


@pytest.fixture
def ops():
    readiness: collections.Counter[str] = collections.Counter()
    server = OpsServer(("127.0.0.1", 0), lambda: readiness, {"openapi": "3.0.3"}).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", readiness
    server.stop()


def test_health_follows_the_ready_workers_and_never_says_why_to_clients(ops):
    url, readiness = ops
    response = requests.get(url + "/health", timeout=5)
    assert response.status_code == 503 and response.json() == {"status": "not_ready", "reason": "model not ready"}
    readiness.update({"v1": 1})
    assert requests.get(url + "/health", timeout=5).json() == {
        "status": "ready",
        "model_version": "v1",
        "ready_workers": 1,
    }


def test_health_names_the_version_most_workers_serve():
    assert health(collections.Counter({"old": 1, "new": 2})) == (
        200,
        {"status": "ready", "model_version": "new", "ready_workers": 3},
    )


def test_the_other_paths_and_their_errors(ops):
    url, _ = ops
    assert requests.get(url + "/health/live", timeout=5).json() == {"status": "alive"}
    assert requests.get(url + "/openapi.json", timeout=5).json() == {"openapi": "3.0.3"}
    metrics = requests.get(url + "/metrics", timeout=5)
    assert metrics.status_code == 200 and metrics.headers["Content-Type"].startswith("text/plain")
    responses = [requests.get(url + "/predict", timeout=5), requests.post(url + "/health", timeout=5)]
    assert [r.status_code for r in responses] == [404, 405]
    assert [r.json()["error"]["code"] for r in responses] == ["not_found", "method_not_allowed"]
    for response in [*responses, metrics]:
        assert {name: response.headers.get(name) for name in SECURITY_HEADERS} == SECURITY_HEADERS


WORKER = """
import sys
from workload.serving import metrics
metrics.MODEL_READY.labels(sys.argv[1]).set(1)
"""


def test_ready_workers_counts_live_workers_and_forgets_dead_ones(tmp_path):
    """Workers publish readiness as the live-sum gauge; `child_exit` (mark_process_dead) drops a dead one."""
    from prometheus_client import multiprocess

    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    for version in ("v1", "v1", "v2"):
        subprocess.run([sys.executable, "-c", WORKER, version], env=env, timeout=60, check=True)
    files = sorted(tmp_path.glob("gauge_livesum_*.db"))
    assert ready_workers(str(tmp_path)) == {"v1": 2, "v2": 1}
    for path in files:
        multiprocess.mark_process_dead(int(path.stem.rsplit("_", 1)[1]), str(tmp_path))
    assert ready_workers(str(tmp_path)) == {}
    assert json.dumps(health(ready_workers(str(tmp_path)))[1]) == '{"status": "not_ready", "reason": "model not ready"}'
