"""`python -m workload launch-training`: start one training run from the stack's launch template.

The launch template (components/training.py) carries everything: AMI, instance type, Spot, role, network,
and the user data that ingests, trains, evaluates and then terminates the instance. This command only asks
EC2 for one instance of it and prints the instance id; `--dry-run` prints the request instead.

Import-light on purpose: the CLI imports this module to build its parser; boto3 is imported in `run`.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from workload.errors import WorkloadError

TEMPLATE_OUTPUT = "training_launch_template_id"
REGION_OUTPUT = "region"


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--stack-outputs",
        required=True,
        type=Path,
        help="JSON file written by `pulumi stack output --json > FILE`",
    )
    parser.add_argument("--region", help="AWS region (default: the stack's `region` output)")
    parser.add_argument("--dry-run", action="store_true", help="print the RunInstances request and start nothing")


def read_stack_outputs(path: Path) -> dict[str, Any]:
    try:
        outputs = json.loads(path.read_text())
    except OSError as error:
        raise WorkloadError(f"cannot read stack outputs {path}: {error.strerror}") from error
    except json.JSONDecodeError as error:
        raise WorkloadError(f"{path} is not JSON ({error.msg}); write it with `pulumi stack output --json`") from error
    if not isinstance(outputs, dict):
        raise WorkloadError(f"{path} must hold a JSON object of stack outputs")
    return outputs


def build_request(outputs: dict[str, Any]) -> dict[str, Any]:
    """The RunInstances request for one run of the stack's training launch template (its default version)."""
    template_id = outputs.get(TEMPLATE_OUTPUT)
    if not isinstance(template_id, str) or not template_id.startswith("lt-"):
        raise WorkloadError(f"stack outputs lack a launch template id in {TEMPLATE_OUTPUT!r} (got {template_id!r})")
    return {
        "LaunchTemplate": {"LaunchTemplateId": template_id, "Version": "$Default"},
        "MinCount": 1,
        "MaxCount": 1,
    }


def run(args: argparse.Namespace) -> int:
    outputs = read_stack_outputs(args.stack_outputs)
    request = build_request(outputs)
    region = args.region or outputs.get(REGION_OUTPUT)
    if not region:
        raise WorkloadError(f"no region: pass --region or include the {REGION_OUTPUT!r} stack output")
    if args.dry_run:
        print(json.dumps({"region": region, "RunInstances": request}, indent=2))
        return 0

    import boto3
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        response = boto3.client("ec2", region_name=region).run_instances(**request)
    except ClientError as error:
        details = error.response.get("Error", {})
        raise WorkloadError(f"EC2 refused the training run: {details.get('Code')}: {details.get('Message')}") from error
    except BotoCoreError as error:
        raise WorkloadError(f"cannot reach EC2 in {region}: {error}") from error
    instance_id = response["Instances"][0]["InstanceId"]
    print(instance_id)
    return 0
