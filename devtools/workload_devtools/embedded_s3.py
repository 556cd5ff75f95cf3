"""An S3 endpoint on 127.0.0.1 (moto_server in a child process) for the local pipeline and the tests.

It runs in its own process so that gunicorn workers and CLI subprocesses can all reach it, and so that it
can be stopped cleanly on exit or Ctrl-C. Only loopback is ever bound.
"""

from __future__ import annotations

import http.client
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from types import TracebackType
from typing import Any

from workload.errors import WorkloadError

from workload_devtools.ports import free_loopback_port

# Dummy credentials: moto accepts anything, and real ones must never leak into a local run.
LOCAL_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}


class EmbeddedS3:
    """Context manager: `with EmbeddedS3() as s3: subprocess.run(..., env=s3.child_env())`."""

    def __init__(self, port: int | None = None, start_timeout: float = 30.0) -> None:
        self.port = port or free_loopback_port()
        self.endpoint_url = f"http://127.0.0.1:{self.port}"
        self._start_timeout = start_timeout
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> EmbeddedS3:
        self._process = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env={**os.environ, **LOCAL_CREDENTIALS},
        )
        try:
            self._wait_until_answering()
        except BaseException:
            self.stop()  # never leak the child: __exit__ does not run when __enter__ raises
            raise
        return self

    def _wait_until_answering(self) -> None:
        assert self._process is not None
        deadline = time.monotonic() + self._start_timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise WorkloadError(f"embedded S3 (moto_server) exited with code {self._process.returncode}")
            try:
                with urllib.request.urlopen(f"{self.endpoint_url}/moto-api/", timeout=1):
                    return
            except (urllib.error.URLError, http.client.HTTPException, ConnectionError, TimeoutError):
                time.sleep(0.1)
        raise WorkloadError(f"embedded S3 did not answer on {self.endpoint_url} within {self._start_timeout:.0f}s")

    def stop(self) -> None:
        if self._process is None:
            return
        if self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        self._process = None

    @property
    def pid(self) -> int:
        """The moto_server process (for its CPU time in benchmarks)."""
        if self._process is None:
            raise WorkloadError("embedded S3 is not running")
        return self._process.pid

    def child_env(self, base: dict[str, str] | None = None) -> dict[str, str]:
        """Environment for child processes only: the endpoint plus dummy credentials."""
        env = dict(os.environ if base is None else base)
        for key in ("AWS_PROFILE", "AWS_ENDPOINT_URL"):
            env.pop(key, None)
        env.update(LOCAL_CREDENTIALS)
        env["AWS_ENDPOINT_URL_S3"] = self.endpoint_url
        return env

    def client(self) -> Any:
        """A boto3 S3 client for this endpoint with the dummy credentials, for the calling process itself.

        Built on a session that ignores AWS_PROFILE: a profile that exists only on some other machine would
        otherwise make boto3 fail (ProfileNotFound) before it ever reaches the local endpoint."""
        import boto3
        import botocore.session

        session = botocore.session.Session(session_vars={"profile": (None, None, None, None)})
        return boto3.Session(botocore_session=session).client(
            "s3",
            endpoint_url=self.endpoint_url,
            aws_access_key_id=LOCAL_CREDENTIALS["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=LOCAL_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
            aws_session_token=LOCAL_CREDENTIALS["AWS_SESSION_TOKEN"],
            region_name=LOCAL_CREDENTIALS["AWS_DEFAULT_REGION"],
        )

    def __enter__(self) -> EmbeddedS3:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
