"""`python -m workload launch-training`: start one training run from the stack's launch template.
(Filled in by the infrastructure work.)

Import-light on purpose: the CLI imports this module to build its parser.
"""

from __future__ import annotations

import argparse


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--stack-outputs", required=True, help="JSON file of `pulumi stack output --json`")


def run(args: argparse.Namespace) -> int:
    raise NotImplementedError("launch-training is not implemented yet")
