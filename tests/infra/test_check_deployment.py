"""scripts/check_deployment.py against DescribeServices answers shaped as ECS gives them: botocore's Stubber
rejects any canned response that does not fit the ECS service model, and checks the request the script sends."""

from __future__ import annotations

import importlib.util
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "check_deployment.py"
_spec = importlib.util.spec_from_file_location("check_deployment", SCRIPT)
check_deployment = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(check_deployment)

FAMILY = "arn:aws:ecs:eu-west-1:123456789012:task-definition/imdb-sentiment-dev-api"
OLD, NEW = f"{FAMILY}:6", f"{FAMILY}:7"
NOW = datetime(2026, 12, 1, tzinfo=UTC)


def _deployment(task_definition: str, status: str, rollout: str, running: int = 2) -> dict[str, Any]:
    return {
        "id": f"ecs-svc/{abs(hash((task_definition, status))) % 10**18}",
        "status": status,
        "taskDefinition": task_definition,
        "desiredCount": 2,
        "pendingCount": 0,
        "runningCount": running,
        "failedTasks": 0 if rollout != "FAILED" else 4,
        "createdAt": NOW,
        "updatedAt": NOW,
        "launchType": "FARGATE",
        "rolloutState": rollout,
    }


def _service(*deployments: dict[str, Any]) -> dict[str, Any]:
    return {
        "serviceName": "api-service",
        "clusterArn": "arn:aws:ecs:eu-west-1:123456789012:cluster/api-cluster",
        "status": "ACTIVE",
        "taskDefinition": deployments[0]["taskDefinition"],
        "desiredCount": 2,
        "runningCount": 2,
        "deployments": list(deployments),
    }


def _problem(response: dict[str, Any]) -> str | None:
    ecs = boto3.client("ecs", region_name="eu-west-1", aws_access_key_id="x", aws_secret_access_key="x")
    with Stubber(ecs) as stubber:
        stubber.add_response("describe_services", response, {"cluster": "api-cluster", "services": ["api-service"]})
        return check_deployment.check(ecs, "api-cluster", "api-service", NEW)


def test_a_completed_rollout_of_the_deployed_revision_passes():
    assert _problem({"services": [_service(_deployment(NEW, "PRIMARY", "COMPLETED"))]}) is None


def test_a_circuit_breaker_rollback_fails_and_names_what_ecs_runs():
    rolled_back = _service(_deployment(OLD, "PRIMARY", "COMPLETED"), _deployment(NEW, "ACTIVE", "FAILED", running=0))
    problem = _problem({"services": [rolled_back]})
    assert problem and f"ECS runs {OLD}, not the deployed {NEW}: the release was rolled back" in problem


def test_an_unfinished_rollout_fails():
    rolling = _service(_deployment(NEW, "PRIMARY", "IN_PROGRESS", running=1), _deployment(OLD, "ACTIVE", "COMPLETED"))
    assert "IN_PROGRESS" in _problem({"services": [rolling]})


def test_a_missing_service_fails_with_the_reason():
    missing = {
        "services": [],
        "failures": [{"arn": "arn:aws:ecs:eu-west-1:123456789012:service/x", "reason": "MISSING"}],
    }
    assert _problem(missing) == "service api-service not found in api-cluster (MISSING)"


def test_the_stubber_rejects_a_response_ecs_would_never_send():
    """The canned answers above are only evidence if a wrongly shaped one is refused."""
    wrong = {"services": [{**_service(_deployment(NEW, "PRIMARY", "COMPLETED")), "desiredCount": "two"}]}
    with pytest.raises(Exception, match="desiredCount"):
        _problem(wrong)


def test_the_command_reads_stack_outputs_and_fails_clearly_without_them(tmp_path):
    outputs = tmp_path / "outputs.json"
    outputs.write_text(json.dumps({"region": "eu-west-1", "cluster_name": "c"}))
    with pytest.raises(SystemExit, match="has no 'service_name' output"):
        check_deployment.main(["--stack-outputs", str(outputs)])
