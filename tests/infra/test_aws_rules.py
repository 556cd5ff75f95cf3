"""Every resource each stack renders, checked against AWS's published rules (see aws_rules.py), and proof that the
checks can fail: each deliberately wrong value below, written into a stack's rendered resources, is rejected."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from typing import Any

import aws_rules
import pytest
from run_program_under_mocks import Program


def test_aws_would_accept_every_rendered_resource(program: Program) -> None:
    assert aws_rules.violations(program.resources) == []


def test_every_checked_resource_type_is_rendered(program: Program) -> None:
    """A check on a type the program never renders would pass by checking nothing."""
    rendered = {resource["type"] for resource in program.resources}
    assert set(aws_rules.CHECKS) <= rendered


Resources = list[dict[str, Any]]


def _inputs(resources: Resources, typ: str, name_part: str = "") -> dict[str, Any]:
    return next(r["inputs"] for r in resources if r["type"] == typ and name_part in r["name"])


def _alarm(resources: Resources, metric: str) -> dict[str, Any]:
    return next(
        r["inputs"]
        for r in resources
        if r["type"] == "aws:cloudwatch/metricAlarm:MetricAlarm" and r["inputs"].get("metricName") == metric
    )


def _edit_json(inputs: dict[str, Any], key: str, edit: Callable[[Any], None]) -> None:
    document = json.loads(inputs[key])
    edit(document)
    inputs[key] = json.dumps(document)


def _container(resources: Resources, edit: Callable[[dict[str, Any]], None]) -> None:
    # the API's task by name: the monitoring job's (no port, no health check) may be registered first
    task = _inputs(resources, "aws:ecs/taskDefinition:TaskDefinition", "api-task")
    _edit_json(task, "containerDefinitions", lambda containers: edit(containers[0]))


def _cold_storage_transitions(resources: Resources) -> list[dict[str, Any]]:
    lifecycle = _inputs(resources, "aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration")
    return next(rule["transitions"] for rule in lifecycle["rules"] if rule.get("transitions"))


TASK = "aws:ecs/taskDefinition:TaskDefinition"
TARGET_GROUP = "aws:lb/targetGroup:TargetGroup"
LAUNCH_TEMPLATE = "aws:ec2/launchTemplate:LaunchTemplate"
SCALING_POLICY = "aws:appautoscaling/policy:Policy"

# (what is wrong, how to write it into the rendered resources, words of the error it must raise)
WRONG_VALUES: list[tuple[str, Callable[[Resources], None], str]] = [
    (
        "Fargate cpu=256 with memory=4096",
        lambda rs: _inputs(rs, TASK).update(cpu="256", memory="4096"),
        "Fargate has no task size cpu=256 memory=4096",
    ),
    (
        "alarm comparison 'GreaterThan'",
        lambda rs: _alarm(rs, "CPUUtilization").update(comparisonOperator="GreaterThan"),
        "'GreaterThan' is not one of ComparisonOperator's values",
    ),
    (
        "misspelled namespace AWS/ApplicationElb",
        lambda rs: _alarm(rs, "TargetResponseTime").update(namespace="AWS/ApplicationElb"),
        "namespace 'AWS/ApplicationElb' is not one AWS publishes",
    ),
    (
        "HealthyHostCount without the TargetGroup dimension",
        lambda rs: _alarm(rs, "HealthyHostCount")["dimensions"].pop("TargetGroup"),
        "HealthyHostCount is not published with dimensions ['LoadBalancer']",
    ),
    (
        "ELB 5xx per target group, a dimension it is not published with",
        lambda rs: _alarm(rs, "HTTPCode_ELB_5XX_Count")["dimensions"].update(TargetGroup="targetgroup/x/1"),
        "HTTPCode_ELB_5XX_Count is not published with dimensions",
    ),
    (
        "a metric name AWS/ECS does not publish",
        lambda rs: _alarm(rs, "CPUUtilization").update(metricName="CpuUtilisation"),
        "AWS/ECS publishes no metric 'CpuUtilisation'",
    ),
    (
        "treatMissingData 'breach'",
        lambda rs: _alarm(rs, "HealthyHostCount").update(treatMissingData="breach"),
        "treatMissingData 'breach' is not one of",
    ),
    (
        "alarm period of 45 s",
        lambda rs: _alarm(rs, "CPUUtilization").update(period=45),
        "period 45 is neither 10, 20, 30 nor a multiple of 60",
    ),
    (
        "extended statistic 'P99'",
        lambda rs: _alarm(rs, "TargetResponseTime").update(extendedStatistic="P99"),
        "extendedStatistic 'P99' is not a percentile",
    ),
    (
        "STANDARD_IA after 10 days",
        lambda rs: _cold_storage_transitions(rs)[0].update(days=10),
        "STANDARD_IA at day 10; S3 needs at least 30 days",
    ),
    (
        "a Glacier transition 15 days after STANDARD_IA",
        lambda rs: _cold_storage_transitions(rs)[1].update(days=45),
        "at day 45 is less than 30 days after STANDARD_IA at day 30",
    ),
    (
        "lifecycle storage class 'GLACIER_INSTANT'",
        lambda rs: _cold_storage_transitions(rs)[1].update(storageClass="GLACIER_INSTANT"),
        "'GLACIER_INSTANT' is not one of TransitionStorageClass's values",
    ),
    (
        "container health check every 1 s",
        lambda rs: _container(rs, lambda c: c["healthCheck"].update(interval=1)),
        "healthCheck.interval=1 is outside 5..300",
    ),
    (
        "port mapping protocol 'TCP' (the API wants lower case)",
        lambda rs: _container(rs, lambda c: c["portMappings"][0].update(protocol="TCP")),
        "'TCP' is not one of TransportProtocol's values",
    ),
    (
        "an unknown container definition member",
        lambda rs: _container(rs, lambda c: c.update(readOnlyRootFilesystem=True)),
        "readOnlyRootFilesystem: not a member of ContainerDefinition",
    ),
    (
        "stopTimeout above Fargate's 120 s",
        lambda rs: _container(rs, lambda c: c.update(stopTimeout=300)),
        "stopTimeout above Fargate's 120 s",
    ),
    (
        "target group healthy threshold 1",
        lambda rs: _inputs(rs, TARGET_GROUP)["healthCheck"].update(healthyThreshold=1),
        "HealthyThresholdCount: 1 is below AWS's minimum 2",
    ),
    (
        "health check timeout as long as its interval",
        lambda rs: _inputs(rs, TARGET_GROUP)["healthCheck"].update(timeout=15, interval=15),
        "timeout must be shorter than its interval",
    ),
    (
        "deregistration delay of 4000 s",
        lambda rs: _inputs(rs, TARGET_GROUP).update(deregistrationDelay=4000),
        "deregistration delay 4000 is outside 0..3600",
    ),
    (
        "listener protocol 'http'",
        lambda rs: _inputs(rs, "aws:lb/listener:Listener").update(protocol="http"),
        "'http' is not one of ProtocolEnum's values",
    ),
    (
        "service launch type 'fargate'",
        lambda rs: _inputs(rs, "aws:ecs/service:Service").update(launchType="fargate"),
        "'fargate' is not one of LaunchType's values",
    ),
    (
        "instance type 'c7i.2xlarg'",
        lambda rs: _inputs(rs, LAUNCH_TEMPLATE).update(instanceType="c7i.2xlarg"),
        "'c7i.2xlarg' is not one of InstanceType's values",
    ),
    (
        "IMDS tokens 'require'",
        lambda rs: _inputs(rs, LAUNCH_TEMPLATE)["metadataOptions"].update(httpTokens="require"),
        "'require' is not one of LaunchTemplateHttpTokensState's values",
    ),
    (
        "EBS encrypted 'yes'",
        lambda rs: _inputs(rs, LAUNCH_TEMPLATE)["blockDeviceMappings"][0]["ebs"].update(encrypted="yes"),
        "'yes' is not 'true' or 'false'",
    ),
    (
        "predefined metric 'ALBRequestCount'",
        lambda rs: _inputs(rs, SCALING_POLICY, "requests")["targetTrackingScalingPolicyConfiguration"][
            "predefinedMetricSpecification"
        ].update(predefinedMetricType="ALBRequestCount"),
        "'ALBRequestCount' is not one of MetricType's values",
    ),
    (
        "request-count scaling without the target group in its resource label",
        lambda rs: _inputs(rs, SCALING_POLICY, "requests")["targetTrackingScalingPolicyConfiguration"][
            "predefinedMetricSpecification"
        ].update(resourceLabel="app/api-alb/0123456789ab"),
        "ALBRequestCountPerTarget needs resourceLabel",
    ),
    (
        "scalable dimension 'ecs:service:Desired'",
        lambda rs: _inputs(rs, "aws:appautoscaling/target:Target").update(scalableDimension="ecs:service:Desired"),
        "'ecs:service:Desired' is not one of ScalableDimension's values",
    ),
    (
        "Container Insights off while an alarm reads RunningTaskCount",
        lambda rs: _inputs(rs, "aws:ecs/cluster:Cluster").update(
            settings=[{"name": "containerInsights", "value": "disabled"}]
        ),
        "the cluster does not turn Container Insights on",
    ),
    (
        "a dashboard line on a misspelled metric",
        lambda rs: _edit_json(
            _inputs(rs, "aws:cloudwatch/dashboard:Dashboard"),
            "dashboardBody",
            lambda body: body["widgets"][0]["properties"]["metrics"][0].__setitem__(1, "RequestsCount"),
        ),
        "AWS/ApplicationELB publishes no metric 'RequestsCount'",
    ),
]


@pytest.mark.parametrize(("wrong", "mutate", "error"), WRONG_VALUES, ids=[w[0] for w in WRONG_VALUES])
def test_aws_rules_reject_a_wrong_value(program: Program, wrong: str, mutate: Callable, error: str) -> None:
    resources = copy.deepcopy(program.resources)
    mutate(resources)
    found = aws_rules.violations(resources)
    assert any(error in line for line in found), f"{wrong}: not rejected; the checker said {found}"
