"""After `pulumi up`: does the ECS service run the task definition that update deployed?

    python scripts/check_deployment.py --stack-outputs outputs.json   # from `pulumi stack output --json`

A deployment whose tasks never turn healthy is rolled back by the circuit breaker: ECS then runs the previous
revision while the stack state names the new one, and the next `pulumi up` shows no diff. This check fails in
that case (and while a rollout is unfinished), with one line that says what ECS runs instead. Exit status: 0 when
the service runs the deployed revision everywhere, 1 otherwise. See docs/deploy.md.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import boto3
import botocore.exceptions


def deployment_problem(service: dict[str, Any], expected_task_definition: str) -> str | None:
    """Why `service` (one entry of DescribeServices) does not run `expected_task_definition` alone, or None."""
    deployments = service.get("deployments", [])
    primary = next((d for d in deployments if d.get("status") == "PRIMARY"), None)
    if primary is None:
        return f"service {service.get('serviceName')} has no PRIMARY deployment"
    running = primary["taskDefinition"]
    if running != expected_task_definition:
        return (
            f"ECS runs {running}, not the deployed {expected_task_definition}: the release was rolled back; "
            "see the service events, fix the cause and run `pulumi up --refresh`"
        )
    if primary.get("rolloutState", "COMPLETED") != "COMPLETED" or len(deployments) > 1:
        return f"the rollout of {running} is {primary.get('rolloutState')}, with {len(deployments)} deployments active"
    if primary.get("runningCount", 0) < primary.get("desiredCount", 0):
        return f"{primary.get('runningCount')} of {primary.get('desiredCount')} tasks of {running} are running"
    return None


def check(ecs: Any, cluster: str, service_name: str, task_definition: str) -> str | None:
    """The problem with the live service, or None; AWS errors come back as a problem too."""
    try:
        response = ecs.describe_services(cluster=cluster, services=[service_name])
    except botocore.exceptions.BotoCoreError as error:
        return f"cannot describe service {service_name} in {cluster}: {error}"
    except botocore.exceptions.ClientError as error:
        return f"cannot describe service {service_name} in {cluster}: {error.response['Error']['Message']}"
    if not response["services"]:
        reasons = ", ".join(failure.get("reason", "?") for failure in response.get("failures", []))
        return f"service {service_name} not found in {cluster} ({reasons})"
    return deployment_problem(response["services"][0], task_definition)


def _stack_outputs(path: Path) -> dict[str, str]:
    try:
        outputs = json.loads(path.read_text())
        return {key: outputs[key] for key in ("region", "cluster_name", "service_name", "task_definition_arn")}
    except (OSError, ValueError) as error:
        raise SystemExit(f"error: cannot read stack outputs from {path}: {error}") from None
    except KeyError as error:
        raise SystemExit(f"error: {path} has no {error} output: is it `pulumi stack output --json`?") from None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stack-outputs", type=Path, required=True, help="`pulumi stack output --json` saved")
    outputs = _stack_outputs(parser.parse_args(argv).stack_outputs)
    ecs = boto3.client("ecs", region_name=outputs["region"])
    problem = check(ecs, outputs["cluster_name"], outputs["service_name"], outputs["task_definition_arn"])
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 1
    print(f"ok: {outputs['service_name']} runs {outputs['task_definition_arn']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
