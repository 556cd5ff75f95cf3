"""Run `python -m workload serve` as a child process on a free loopback port (benchmarks, tests, demos)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import TracebackType

from workload.errors import WorkloadError

from workload_devtools.ports import free_loopback_port


def get(url: str, timeout: float = 5.0) -> tuple[int, bytes]:
    """Status and body of a GET, without raising on 4xx/5xx."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


class ServerProcess:
    """`with ServerProcess(model_uri) as server: server.wait_ready(); get(server.url + "/")`.

    `url` is the app port (`/predict`, the page), `ops_url` the ops port (`/health`, `/metrics`, ...)."""

    def __init__(
        self,
        model_uri: str,
        *,
        env: dict[str, str] | None = None,
        python: str = sys.executable,
        log_path: Path | None = None,
        ops_port: bool = True,
    ) -> None:
        """`ops_port=False` runs a workload from before the ops port (a benchmark's baseline), whose `/health`
        is on the app port."""
        self.model_uri = model_uri
        self.port = free_loopback_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.ops_port = free_loopback_port() if ops_port else self.port
        self.ops_url = f"http://127.0.0.1:{self.ops_port}"
        self._env = dict(os.environ if env is None else env)
        self._python = python
        self._log_path = log_path
        self._log_file = None
        self.process: subprocess.Popen[bytes] | None = None
        self.started_at = 0.0

    def start(self) -> ServerProcess:
        command = [self._python, "-m", "workload", "serve", "--model", self.model_uri]
        command += ["--port", str(self.port)]
        if self.ops_port != self.port:
            command += ["--ops-port", str(self.ops_port)]
        self._log_file = self._log_path.open("wb") if self._log_path else None
        self.started_at = time.monotonic()
        self.process = subprocess.Popen(
            command,
            env=self._env,
            stdout=self._log_file or subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # Ctrl-C in the parent must not hit gunicorn twice
        )
        return self

    def wait_for(self, path: str, timeout: float = 60.0) -> float:
        """Poll `path` on the ops port until it answers 200; returns seconds since start."""
        deadline = time.monotonic() + timeout
        last = "no answer"
        while time.monotonic() < deadline:
            if self.process is None or self.process.poll() is not None:
                raise WorkloadError(f"server exited early (code {self.process and self.process.returncode})")
            try:
                code, body = get(self.ops_url + path, timeout=2)
                if code == 200:
                    return time.monotonic() - self.started_at
                last = f"{code} {body[:200]!r}"
            except (urllib.error.URLError, ConnectionError, TimeoutError) as error:
                last = str(error)
            time.sleep(0.02)
        raise WorkloadError(f"{self.ops_url}{path} did not answer 200 within {timeout:.0f}s (last: {last})")

    def wait_ready(self, timeout: float = 60.0, workers: int = 1) -> float:
        """Wait until `/health` says at least `workers` workers have their model; returns seconds since start."""
        deadline = time.monotonic() + timeout
        while True:
            elapsed = self.wait_for("/health", max(0.0, deadline - time.monotonic()))
            if self.health().get("ready_workers", 0) >= workers:
                return elapsed
            if time.monotonic() > deadline:
                raise WorkloadError(f"fewer than {workers} workers became ready within {timeout:.0f}s")
            time.sleep(0.05)

    def worker_pids(self) -> set[int]:
        """The gunicorn workers: the master's child processes (Linux /proc)."""
        assert self.process is not None
        pids = set()
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                parent = int(stat.read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue  # the process ended while we looked
            if parent == self.process.pid:
                pids.add(int(stat.parent.name))
        return pids

    def health(self) -> dict:
        return json.loads(get(self.ops_url + "/health")[1])

    def stop(self, timeout: float = 30.0) -> int | None:
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        if self._log_file:
            self._log_file.close()
        return self.process.returncode

    def __enter__(self) -> ServerProcess:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
