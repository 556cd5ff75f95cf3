"""`python -m workload serve`: run the API under gunicorn with `gunicorn.conf.py`.

Import-light on purpose: the CLI imports this module to build its parser, and torch must never be imported
in the gunicorn master. `run` validates the arguments and `ServeSettings` (a bad value is one `error:` line; a
bad WEB_CONCURRENCY or other gunicorn.conf.py variable is reported by gunicorn as it loads that file) and then
replaces this process with the gunicorn master, so signals such as SIGTERM from ECS or `docker stop` reach it
directly.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

GUNICORN_CONF = Path(__file__).with_name("gunicorn.conf.py")


def configure_parser(parser: argparse.ArgumentParser) -> None:
    model_from_env = os.environ.get("MODEL_URI") or None
    parser.add_argument(
        "--model",
        required=model_from_env is None,
        default=model_from_env,
        help="model bundle URI: a local path or s3://bucket/prefix (default: $MODEL_URI)",
    )
    parser.add_argument("--port", type=int, default=8080, help="TCP port of the API and the page (default 8080)")
    parser.add_argument(
        "--ops-port",
        type=int,
        default=os.environ.get("OPS_PORT") or "8081",  # argparse converts (and checks) a string default
        help="TCP port of /health, /health/live, /metrics, /openapi.json (default: $OPS_PORT or 8081)",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1; 0.0.0.0 in the image)")


def server_environment(args: argparse.Namespace, base: dict[str, str] | None = None) -> dict[str, str]:
    """The environment gunicorn runs with: the model, bind address and ops port from the command line."""
    from workload.errors import WorkloadError

    for option, port in (("--port", args.port), ("--ops-port", args.ops_port)):
        if not 0 < port < 65536:
            raise WorkloadError(f"{option} must be between 1 and 65535, got {port}")
    if args.port == args.ops_port:
        raise WorkloadError(f"--port and --ops-port must differ, both are {args.port}")
    if not args.model:
        raise WorkloadError("--model must not be empty")
    env = dict(os.environ if base is None else base)
    env["MODEL_URI"] = args.model
    env["OPS_PORT"] = str(args.ops_port)
    env["GUNICORN_BIND"] = f"[{args.host}]:{args.port}" if ":" in args.host else f"{args.host}:{args.port}"
    return env


def run(args: argparse.Namespace) -> int:
    from workload.serving.settings import ServeSettings

    env = server_environment(args)
    ServeSettings.from_mapping(env)  # fail fast on bad limits in the environment
    command = [sys.executable, "-m", "gunicorn", "--config", str(GUNICORN_CONF)]
    sys.stdout.flush()
    os.execve(sys.executable, command, env)
    return 0  # not reached: execve replaces the process
