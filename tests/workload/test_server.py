"""The `serve` command and the gunicorn configuration, without starting a server."""

from __future__ import annotations

import argparse
import json
import logging
import logging.config
import subprocess
import sys

import pytest
from workload.cli import SDK_LOGGERS
from workload.errors import WorkloadError
from workload.serving import server
from workload.serving.logs import JsonFormatter, logconfig_dict
from workload_devtools.ports import free_loopback_port


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    server.configure_parser(parser)
    return parser.parse_args(argv)


def test_serve_arguments_and_environment():
    args = parse(["--model", "s3://bucket/models/v1", "--port", "9000"])
    env = server.server_environment(args, base={"PATH": "/bin"})
    assert env == {
        "PATH": "/bin",
        "MODEL_URI": "s3://bucket/models/v1",
        "GUNICORN_BIND": "127.0.0.1:9000",
        "OPS_PORT": "8081",
    }
    assert server.server_environment(parse(["--model", "m", "--host", "::1"]), base={})["GUNICORN_BIND"] == "[::1]:8080"


def test_model_defaults_to_the_model_uri_environment_variable(monkeypatch):
    monkeypatch.setenv("MODEL_URI", "s3://bucket/models/from-env")
    assert parse([]).model == "s3://bucket/models/from-env"
    monkeypatch.delenv("MODEL_URI")
    with pytest.raises(SystemExit):
        parse([])


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--model", "m", "--port", "0"], "--port"),
        (["--model", "m", "--ops-port", "70000"], "--ops-port"),
        (["--model", "m", "--port", "9000", "--ops-port", "9000"], "must differ"),
        (["--model", ""], "--model"),
    ],
)
def test_bad_arguments_are_a_clear_error(argv, message):
    with pytest.raises(WorkloadError, match=message):
        server.server_environment(parse(argv), base={})


def test_bad_limits_fail_before_gunicorn_starts(monkeypatch):
    monkeypatch.setenv("MAX_BATCH", "-1")
    with pytest.raises(WorkloadError, match="MAX_BATCH"):
        server.run(parse(["--model", "m"]))


def test_the_master_side_imports_neither_torch_nor_prometheus(tmp_path):
    """The CLI module and gunicorn.conf.py run in the gunicorn master: no torch (fork safety), and no
    prometheus_client before PROMETHEUS_MULTIPROC_DIR is set; starting the ops port (`when_ready`) and
    loading the worker class import neither torch nor Flask. Serving the ops port imports nothing: a worker
    forked while the ops thread held a module's import lock would deadlock importing that module."""
    probe = f"""
import json, logging, os, runpy, socket, sys, types
from gunicorn.util import load_class
import workload.serving.server
config = runpy.run_path({str(server.GUNICORN_CONF)!r})
heavy = ("torch", "prometheus_client", "flask", "workload.serving.app")
at_import = sorted(m for m in heavy if m in sys.modules)
master = types.SimpleNamespace(cfg=types.SimpleNamespace(address=[("127.0.0.1", 1234)]), log=logging.getLogger())
config["when_ready"](master)
load_class(config["worker_class"])  # the master loads the worker class too
port = master.ops_server.server_address[1]

def ask(request):
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(request)
        return b"".join(iter(lambda: sock.recv(65536), b"")).decode()

before = set(sys.modules)
paths = ("/health", "/health/live", "/metrics", "/openapi.json", "/nope")
answers = [ask(f"GET {{path}} HTTP/1.0\\r\\n\\r\\n".encode()) for path in paths] + [ask(b"BAD\\r\\n\\r\\n")]
imported_while_serving = sorted(set(sys.modules) - before)
live = answers[1].split("\\r\\n\\r\\n", 1)[1]
print(json.dumps({{
    "heavy": at_import,
    "heavy_with_ops_port": sorted(m for m in ("torch", "flask", "workload.serving.app") if m in sys.modules),
    "live": live,
    "imported_while_serving": imported_while_serving,
    "metrics_dir": os.path.isdir(os.environ["PROMETHEUS_MULTIPROC_DIR"]),
    "omp": os.environ["OMP_NUM_THREADS"],
    "workers": config["workers"],
    "preload": config["preload_app"],
    "worker_class": config["worker_class"],
    "bind": config["bind"],
}}))
config["on_exit"](None)
"""
    env = {"PATH": "/usr/bin:/bin", "WEB_CONCURRENCY": "3", "GUNICORN_BIND": "127.0.0.1:1234", "HOME": str(tmp_path)}
    env["OPS_PORT"] = str(free_loopback_port())
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env, timeout=60)
    assert result.returncode == 0, result.stderr
    facts = json.loads(result.stdout)
    assert facts == {
        "heavy": [],
        "heavy_with_ops_port": [],
        "live": '{"status": "alive"}',
        "imported_while_serving": [],
        "metrics_dir": True,
        "omp": "1",
        "workers": 3,
        "preload": False,
        "worker_class": "workload.serving.worker.SecureSyncWorker",
        "bind": ["127.0.0.1:1234"],
    }


def test_gunicorn_log_config_keeps_the_aws_sdk_quiet():
    """The SDK logs each credential/endpoint lookup at INFO; the server's own INFO lines must still pass."""
    root = logging.getLogger()
    saved_handlers, saved_levels = (
        root.handlers[:],
        {name: logging.getLogger(name).level for name in ("", *SDK_LOGGERS)},
    )
    try:
        logging.config.dictConfig(logconfig_dict("INFO"))
        assert not logging.getLogger("botocore.credentials").isEnabledFor(logging.INFO)
        assert logging.getLogger("botocore.credentials").isEnabledFor(logging.WARNING)
        assert logging.getLogger("workload.serving.app").isEnabledFor(logging.INFO)
    finally:
        root.handlers[:] = saved_handlers
        for name, level in saved_levels.items():
            logging.getLogger(name).setLevel(level)


@pytest.mark.parametrize("argument", ["café", "\ud800"])  # a lone surrogate: orjson refuses it, the line must not
def test_log_lines_are_one_json_object_even_for_odd_text(argument):
    record = logging.LogRecord("workload.api", logging.INFO, __file__, 1, "text %s", (argument,), None)
    record.fields = {"status": 400}
    line = JsonFormatter().format(record)
    assert "\n" not in line
    entry = json.loads(line)
    assert entry["message"] == f"text {argument}" and entry["status"] == 400 and entry["level"] == "INFO"
