"""`python -m workload serve`: run the API under gunicorn. (Filled in by the inference-API work.)

Import-light on purpose: the CLI imports this module to build its parser, and torch must never be imported
in the gunicorn master.
"""

from __future__ import annotations

import argparse


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, help="model bundle URI: a local path or s3://bucket/prefix")
    parser.add_argument("--port", type=int, default=8080, help="TCP port (default 8080)")


def run(args: argparse.Namespace) -> int:
    raise NotImplementedError("serve is not implemented yet")
