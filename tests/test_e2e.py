"""End to end: `scripts/demo.py` (what `make demo` runs) on a generated sample, through moto_server and gunicorn.

The sample is train-only, like the offline copy of the official tarball, so the demo's `evaluate --split auto`
takes its "evaluate on the validation split" path. Every process the demo starts carries a marker in its
environment, which is how the test proves that none is left behind.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from workload_devtools.synthetic import write_aclimdb_tarball

REPO = Path(__file__).resolve().parents[1]
DEMO_TIMEOUT_S = 240
MARKER_VARIABLE = "IMDB_SENTIMENT_E2E_MARKER"


def processes_with_marker(marker: str) -> list[int]:
    """Live processes whose environment carries `marker` (zombies have an empty environ and don't count)."""
    needle = f"{MARKER_VARIABLE}={marker}".encode()
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if needle in (proc / "environ").read_bytes().split(b"\0"):
                found.append(int(proc.name))
        except OSError:  # gone meanwhile, or not ours to read
            continue
    return found


def wait_until_gone(marker: str, timeout: float = 10.0) -> list[int]:
    deadline = time.monotonic() + timeout
    while (left := processes_with_marker(marker)) and time.monotonic() < deadline:
        time.sleep(0.2)
    return left


def kill_all(pids: list[int]) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


@pytest.fixture
def marker() -> Iterator[str]:
    value = uuid.uuid4().hex
    yield value
    kill_all(processes_with_marker(value))  # never leak processes into the rest of the suite


def start_demo(env: dict[str, str], stderr: int) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "scripts/demo.py"], cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=stderr, text=True
    )


def run_demo(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    process = start_demo(env, stderr=subprocess.PIPE)
    try:
        stdout, stderr = process.communicate(timeout=DEMO_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        process.send_signal(signal.SIGTERM)  # the demo cleans up its children on SIGTERM
        stdout, stderr = process.communicate(timeout=30)
        pytest.fail(f"demo did not finish within {DEMO_TIMEOUT_S}s\n{stdout}\n{stderr}")
    return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)


def demo_env(tmp_path: Path, marker: str, **settings: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("AWS_")}
    env.update({"DEMO_DIR": str(tmp_path / "demo"), MARKER_VARIABLE: marker, "DEMO_EXIT": "1", **settings})
    return env


@pytest.mark.integration
def test_demo_trains_publishes_serves_and_answers_positive(tmp_path: Path, marker: str) -> None:
    tarball = write_aclimdb_tarball(
        tmp_path / "aclImdb_sample.tar.gz", n_train=200, n_unsup=5, seed=7, splits=("train",)
    )

    result = run_demo(demo_env(tmp_path, marker, IMDB_SOURCE=str(tarball), DEMO_SAMPLE="150"))

    assert result.returncode == 0, f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    out = result.stdout
    steps = ("embedded S3", "bucket", "raw data", "ingest", "train", "evaluate", "weaker model", "quality gate",
             "registry", "serve", "smoke request")  # fmt: skip
    for step in steps:
        assert f"] {step}\n" in out
    # the monitoring loop: held-out reviews look like the baseline, the negative-only stream is flagged
    verdicts = [line.split("verdict: ")[1] for line in out.splitlines() if "verdict: " in line]
    assert [verdict.split(" (")[0] for verdict in verdicts] == ["no drift", "DRIFT"], out
    assert "positive_rate_change" in out and "/report.html (copy: " in out
    assert "the weaker model failed the gate:\n        - accuracy " in out
    registry = out[out.index("] registry\n") : out.index("] serve\n")]
    # the registry lists both bundles, the gated weak one with its recorded verdict
    assert re.search(r"^ +\d{8}T\d{6}Z-weak +.* failed$", registry, flags=re.MULTILINE), registry
    assert re.search(r"^ +\d{8}T\d{6}Z +.* validation +\d+ .* -$", registry, flags=re.MULTILINE), registry
    assert "--sample 150" in out
    assert "evaluated on the validation split (the source has no test split" in out
    assert "accuracy" in out
    answer = json.loads(next(line for line in out.splitlines() if line.strip().startswith("-> ")).strip()[3:])
    assert answer["label"] == "positive"
    assert 0.5 < answer["score"] <= 1.0
    assert "web page: http://127.0.0.1:" in out
    assert wait_until_gone(marker) == [], "the demo left processes behind"


@pytest.mark.integration
def test_demo_failure_names_the_step_and_cleans_up(tmp_path: Path, marker: str) -> None:
    not_a_tarball = tmp_path / "aclImdb_broken.tar.gz"
    not_a_tarball.write_bytes(b"this is not a gzip file")

    result = run_demo(demo_env(tmp_path, marker, IMDB_SOURCE=str(not_a_tarball)))

    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("demo failed at step 'ingest': ")
    log = Path(lines[0].rsplit("(log: ", 1)[1].rstrip(")"))
    assert log.is_file()
    assert "Traceback" not in result.stderr
    assert wait_until_gone(marker) == [], "the demo left processes behind"


@pytest.mark.integration
def test_demo_rejects_a_missing_source_in_one_line(tmp_path: Path, marker: str) -> None:
    result = run_demo(demo_env(tmp_path, marker, IMDB_SOURCE=str(tmp_path / "missing.tar.gz")))

    assert result.returncode == 1
    assert result.stderr.strip().startswith("demo failed at step 'raw data': IMDB_SOURCE ")
    assert "is not a file or an http(s) URL" in result.stderr
    assert wait_until_gone(marker) == []


@pytest.mark.integration
def test_demo_serves_the_web_page_until_ctrl_c_then_cleans_up(tmp_path: Path, marker: str) -> None:
    tarball = write_aclimdb_tarball(tmp_path / "aclImdb_sample.tar.gz", n_train=40, n_test=20, n_unsup=0, seed=3)
    env = demo_env(tmp_path, marker, IMDB_SOURCE=str(tarball))
    del env["DEMO_EXIT"]
    process = start_demo(env, stderr=subprocess.STDOUT)
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in process.stdout], daemon=True).start()
    seen: list[str] = []
    deadline = time.monotonic() + DEMO_TIMEOUT_S
    while not (seen and seen[-1].startswith("serving until Ctrl-C")):
        try:
            seen.append(lines.get(timeout=1))
        except queue.Empty:
            if process.poll() is not None or time.monotonic() > deadline:
                process.send_signal(signal.SIGTERM)
                pytest.fail("the demo never reached 'serving until Ctrl-C':\n" + "".join(seen))

    page_url = next(line.split()[-1] for line in seen if line.startswith("web page: "))
    assert "      evaluated on the test split\n" in seen  # this sample has a test split
    with urllib.request.urlopen(page_url, timeout=10) as response:
        assert response.status == 200
        assert "<form" in response.read().decode()

    process.send_signal(signal.SIGINT)
    assert process.wait(timeout=60) == 0
    assert wait_until_gone(marker) == [], "the demo left processes behind"


@pytest.mark.parametrize("setting", ["DEMO_SAMPLE", "DEMO_EPOCHS"])
def test_demo_rejects_a_bad_number_before_starting_anything(tmp_path: Path, marker: str, setting: str) -> None:
    result = run_demo(demo_env(tmp_path, marker, **{setting: "ten"}))

    assert result.returncode == 2
    assert result.stderr.strip() == f"demo: {setting} must be a positive whole number, not 'ten'"
    assert result.stdout == ""
