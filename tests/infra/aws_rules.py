"""AWS's own rules, applied to the resource inputs the Pulumi program renders under mocks.

The mocks echo inputs back, so a test that only reads a rendered value back proves nothing about AWS. This module
instead turns each rendered resource into the API request AWS would receive (Pulumi's input names differ from the
API's member names, so every mapping below is explicit) and checks it against:

- botocore's service models (the JSON models the AWS SDKs are generated from): required members, unknown members,
  types, enum values, lengths, numeric ranges and patterns;
- documented rules the models do not carry, each with the page it comes from: the Fargate CPU/memory table, S3's
  minimum days between lifecycle transitions, the metrics and dimensions each CloudWatch namespace publishes, and
  a few ranges (ECS container health checks, the target group deregistration delay).

`violations(resources)` returns one readable line per broken rule; an empty list means AWS would accept the lot.
"""

from __future__ import annotations

import functools
import itertools
import json
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import botocore.model
import botocore.session
from workload.monitoring.job import DRIFT_METRIC, METRIC_NAMES, RECORDS_METRIC
from workload.monitoring.settings import NAMESPACE

Resource = Mapping[str, Any]
"""One rendered resource: {"type", "name", "inputs", "state"} as the recording mocks keep it."""

# --- documented rules that the service models do not carry --------------------------------------------------

# https://docs.aws.amazon.com/AmazonECS/latest/developerguide/fargate-tasks-services.html#fargate-tasks-size
# (Linux, platform version 1.4.0): task CPU units -> the memory values (MiB) Fargate accepts with it.
FARGATE_MEMORY_BY_CPU: dict[int, range | tuple[int, ...]] = {
    256: (512, 1024, 2048),
    512: range(1024, 4096 + 1, 1024),
    1024: range(2048, 8192 + 1, 1024),
    2048: range(4096, 16384 + 1, 1024),
    4096: range(8192, 30720 + 1, 1024),
    8192: range(16384, 61440 + 1, 4096),
    16384: range(32768, 122880 + 1, 8192),
}

# https://docs.aws.amazon.com/AmazonECS/latest/APIReference/API_HealthCheck.html
CONTAINER_HEALTH_CHECK_RANGES = {"interval": (5, 300), "timeout": (2, 60), "retries": (1, 10), "startPeriod": (0, 300)}
# https://docs.aws.amazon.com/AmazonECS/latest/developerguide/task_definition_parameters.html#container_definition_timeout
FARGATE_MAX_STOP_TIMEOUT = 120
# https://docs.aws.amazon.com/elasticloadbalancing/latest/application/edit-target-group-attributes.html
DEREGISTRATION_DELAY_RANGE = (0, 3600)
# https://docs.aws.amazon.com/AmazonCloudWatch/latest/APIReference/API_PutMetricAlarm.html (TreatMissingData,
# Period, ExtendedStatistic): the model types these as free strings and integers.
TREAT_MISSING_DATA = {"breaching", "notBreaching", "ignore", "missing"}
HIGH_RESOLUTION_PERIODS = {10, 20, 30}
PERCENTILE = re.compile(r"p(100(\.0+)?|\d{1,2}(\.\d+)?)")
# https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/deploy-container-insights-ECS-cluster.html
CONTAINER_INSIGHTS_ON = {"enabled", "enhanced"}

# https://docs.aws.amazon.com/AmazonS3/latest/userguide/lifecycle-transition-general-considerations.html
# Storage classes in the order objects may move through them; the IA classes need 30 days in S3 Standard first,
# and 30 days in the IA class before any later transition or expiration.
TRANSITION_ORDER = ("STANDARD_IA", "INTELLIGENT_TIERING", "ONEZONE_IA", "GLACIER_IR", "GLACIER", "DEEP_ARCHIVE")
INFREQUENT_ACCESS_CLASSES = {"STANDARD_IA", "ONEZONE_IA"}
INFREQUENT_ACCESS_MIN_DAYS = 30

# https://docs.aws.amazon.com/vpc/latest/privatelink/aws-services-privatelink-support.html,
# https://docs.aws.amazon.com/AmazonECR/latest/userguide/vpc-endpoints.html: the VPC endpoint services
# (com.amazonaws.<region>.<name>) a caller with no internet route needs for the actions of each IAM prefix.
# ECR serves image layers from S3; CloudWatch's endpoint is `monitoring`. KMS needs none when it is granted for
# SSE-KMS objects: S3 calls KMS on the caller's behalf.
VPC_ENDPOINTS_BY_IAM_PREFIX: dict[str, set[str]] = {
    "s3": {"s3"},
    "ecr": {"ecr.api", "ecr.dkr", "s3"},
    "logs": {"logs"},
    "cloudwatch": {"monitoring"},
    "kms": set(),
}

_ALB = ("LoadBalancer",)
_ALB_TARGETS = ("LoadBalancer", "TargetGroup")
_AZ = "AvailabilityZone"
_ECS_SERVICE = ("ClusterName", "ServiceName")


def _with_zone(*dimension_sets: tuple[str, ...]) -> frozenset[frozenset[str]]:
    return frozenset(frozenset(dims) for base in dimension_sets for dims in (base, (*base, _AZ)))


# The metrics each namespace publishes and the dimension sets it publishes them under. An alarm or dashboard on
# any other combination is accepted by the API but never receives a data point.
METRIC_DIMENSIONS: dict[str, dict[str, frozenset[frozenset[str]]]] = {
    # https://docs.aws.amazon.com/elasticloadbalancing/latest/application/load-balancer-cloudwatch-metrics.html
    "AWS/ApplicationELB": {
        **dict.fromkeys(
            ("HTTPCode_ELB_5XX_Count", "HTTPCode_ELB_4XX_Count", "ActiveConnectionCount", "RejectedConnectionCount"),
            _with_zone(_ALB),
        ),
        **dict.fromkeys(
            ("RequestCount", "TargetResponseTime", "HTTPCode_Target_5XX_Count", "HTTPCode_Target_4XX_Count"),
            _with_zone(_ALB, _ALB_TARGETS),
        ),
        **dict.fromkeys(("HealthyHostCount", "UnHealthyHostCount"), _with_zone(_ALB_TARGETS)),
        "RequestCountPerTarget": frozenset({frozenset({"TargetGroup"}), *_with_zone(_ALB_TARGETS)}),
    },
    # https://docs.aws.amazon.com/AmazonECS/latest/developerguide/available-metrics.html
    "AWS/ECS": dict.fromkeys(
        ("CPUUtilization", "MemoryUtilization"), frozenset({frozenset({"ClusterName"}), frozenset(_ECS_SERVICE)})
    ),
    # https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/Container-Insights-metrics-ECS.html
    "ECS/ContainerInsights": {
        **dict.fromkeys(
            ("RunningTaskCount", "PendingTaskCount", "DesiredTaskCount"), frozenset({frozenset(_ECS_SERVICE)})
        ),
        **dict.fromkeys(
            ("CpuUtilized", "MemoryUtilized"),
            frozenset(
                {
                    frozenset({"ClusterName"}),
                    frozenset(_ECS_SERVICE),
                    frozenset({"ClusterName", "TaskDefinitionFamily"}),
                }
            ),
        ),
    },
    # https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/viewing_metrics_with_cloudwatch.html
    "AWS/EC2": dict.fromkeys(
        ("CPUUtilization", "NetworkIn", "NetworkOut", "StatusCheckFailed"),
        frozenset(
            {
                frozenset(),
                frozenset({"InstanceId"}),
                frozenset({"AutoScalingGroupName"}),
                frozenset({"ImageId"}),
                frozenset({"InstanceType"}),
            }
        ),
    ),
    # The project's own namespace: exactly what `python -m workload monitor --publish-metrics` puts there.
    NAMESPACE: dict.fromkeys(
        (*METRIC_NAMES.values(), DRIFT_METRIC, RECORDS_METRIC),
        frozenset({frozenset({"Stack"}), frozenset({"Stack", "ModelVersion"})}),
    ),
}


# --- botocore's service models ------------------------------------------------------------------------------


@functools.cache
def _input_shape(service: str, operation: str) -> botocore.model.StructureShape:
    model = botocore.session.get_session().get_service_model(service)
    return model.operation_model(operation).input_shape


def _pattern_mismatch(pattern: str, value: str) -> bool:
    try:
        return re.fullmatch(pattern, value, flags=re.DOTALL) is None
    except re.error:  # a Java-only construct such as \p{...}: the model's other rules still apply
        return False


def shape_violations(shape: botocore.model.Shape, value: Any, path: str) -> list[str]:
    """Every way `value` breaks `shape` (required and unknown members, type, enum, length, range, pattern)."""
    meta = shape.metadata
    kind = shape.type_name
    if kind == "structure":
        if not isinstance(value, Mapping):
            return [f"{path}: expected a structure, got {value!r}"]
        found = [
            f"{path}.{member}: required by AWS, missing" for member in shape.required_members if member not in value
        ]
        for member, item in value.items():
            if member not in shape.members:
                found.append(f"{path}.{member}: not a member of {shape.name}")
            else:
                found += shape_violations(shape.members[member], item, f"{path}.{member}")
        return found
    if kind == "list":
        if not isinstance(value, list):
            return [f"{path}: expected a list, got {value!r}"]
        found = _bounds(path, len(value), meta, "items")
        for index, item in enumerate(value):
            found += shape_violations(shape.member, item, f"{path}[{index}]")
        return found
    if kind == "map":
        if not isinstance(value, Mapping):
            return [f"{path}: expected a map, got {value!r}"]
        return [error for key, item in value.items() for error in shape_violations(shape.value, item, f"{path}.{key}")]
    if kind == "string":
        if not isinstance(value, str):
            return [f"{path}: expected a string, got {value!r}"]
        if shape.enum and value not in shape.enum:
            return [f"{path}: {value!r} is not one of {shape.name}'s values {shape.enum}"]
        found = _bounds(path, len(value), meta, "characters")
        if "pattern" in meta and _pattern_mismatch(meta["pattern"], value):
            found.append(f"{path}: {value!r} does not match {shape.name}'s pattern {meta['pattern']!r}")
        return found
    if kind in ("integer", "long"):
        # Pulumi carries every number as a double (protobuf Value); the provider sends whole ones as integers.
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            return [f"{path}: expected an integer, got {value!r}"]
        return _bounds(path, value, meta, "")
    if kind in ("double", "float"):
        if isinstance(value, bool) or not isinstance(value, int | float):
            return [f"{path}: expected a number, got {value!r}"]
        return _bounds(path, value, meta, "")
    if kind == "boolean" and not isinstance(value, bool):
        return [f"{path}: expected a boolean, got {value!r}"]
    return []


def _bounds(path: str, size: float, meta: Mapping[str, Any], unit: str) -> list[str]:
    """`size` (a value, or a length in `unit`) against the shape's min and max."""
    low, high = meta.get("min"), meta.get("max")
    amount = f"{size} {unit}" if unit else f"{size}"
    if low is not None and size < low:
        return [f"{path}: {amount} is below AWS's minimum {low}"]
    if high is not None and size > high:
        return [f"{path}: {amount} is above AWS's maximum {high}"]
    return []


def request_violations(service: str, operation: str, request: Mapping[str, Any], where: str) -> list[str]:
    return shape_violations(_input_shape(service, operation), request, f"{where} {operation}")


# --- Pulumi inputs -> API requests, one explicit mapping per resource type -----------------------------------


def _drop_none(mapping: Mapping[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in mapping.items() if value is not None and value != {} and value != []}


def _given_name(resource: Resource) -> str:
    """The physical name: the input, else the auto-name the provider chose (the mocks keep it in the state)."""
    return resource["inputs"].get("name") or resource["state"].get("name") or resource["name"]


def _bool_string(value: Any, path: str, found: list[str]) -> bool | None:
    """pulumi-aws takes some EC2 booleans as the strings "true"/"false"; anything else AWS cannot parse."""
    if value is None:
        return None
    if value not in ("true", "false"):
        found.append(f"{path}: {value!r} is not 'true' or 'false'")
        return None
    return value == "true"


def _check_task_definition(resource: Resource) -> list[str]:
    inputs, where = resource["inputs"], resource["name"]
    containers = json.loads(inputs["containerDefinitions"])
    request = _drop_none(
        {
            "family": inputs.get("family"),
            "taskRoleArn": inputs.get("taskRoleArn"),
            "executionRoleArn": inputs.get("executionRoleArn"),
            "networkMode": inputs.get("networkMode"),
            "containerDefinitions": containers,
            "volumes": [
                _drop_none({"name": v["name"], "host": _drop_none({"sourcePath": v.get("hostPath")})})
                for v in inputs.get("volumes", [])
            ],
            "requiresCompatibilities": inputs.get("requiresCompatibilities"),
            "cpu": inputs.get("cpu"),
            "memory": inputs.get("memory"),
            "runtimePlatform": inputs.get("runtimePlatform"),
        }
    )
    found = request_violations("ecs", "RegisterTaskDefinition", request, where)
    if "FARGATE" in inputs.get("requiresCompatibilities", []):
        found += _fargate_violations(inputs, containers, where)
    volumes = {volume["name"] for volume in request.get("volumes", [])}
    for container in containers:
        for mount in container.get("mountPoints", []):
            if mount.get("sourceVolume") not in volumes:
                found.append(
                    f"{where}: container {container.get('name')} mounts undeclared volume {mount.get('sourceVolume')!r}"
                )
    return found


def _fargate_violations(inputs: Mapping[str, Any], containers: list[dict[str, Any]], where: str) -> list[str]:
    found = []
    cpu, memory = int(inputs.get("cpu", 0)), int(inputs.get("memory", 0))
    if memory not in FARGATE_MEMORY_BY_CPU.get(cpu, ()):
        found.append(f"{where}: Fargate has no task size cpu={cpu} memory={memory} MiB")
    if inputs.get("networkMode") != "awsvpc":
        found.append(f"{where}: Fargate tasks need networkMode awsvpc, not {inputs.get('networkMode')!r}")
    for container in containers:
        name = container.get("name")
        for key, (low, high) in CONTAINER_HEALTH_CHECK_RANGES.items():
            value = container.get("healthCheck", {}).get(key)
            if value is not None and not low <= value <= high:
                found.append(f"{where}: container {name} healthCheck.{key}={value} is outside {low}..{high}")
        check = container.get("healthCheck", {})
        if check and check.get("command", [""])[0] not in ("CMD", "CMD-SHELL"):
            found.append(f"{where}: container {name} healthCheck.command must start with CMD or CMD-SHELL")
        if container.get("stopTimeout", 0) > FARGATE_MAX_STOP_TIMEOUT:
            found.append(f"{where}: container {name} stopTimeout above Fargate's {FARGATE_MAX_STOP_TIMEOUT} s")
        for mapping in container.get("portMappings", []):
            if mapping.get("hostPort", mapping.get("containerPort")) != mapping.get("containerPort"):
                found.append(f"{where}: awsvpc needs hostPort == containerPort in {mapping}")
    return found


def _check_service(resource: Resource) -> list[str]:
    inputs = resource["inputs"]
    network = inputs.get("networkConfiguration") or {}
    public_ip = network.get("assignPublicIp")
    request = _drop_none(
        {
            "cluster": inputs.get("cluster"),
            "serviceName": _given_name(resource),
            "taskDefinition": inputs.get("taskDefinition"),
            "availabilityZoneRebalancing": inputs.get("availabilityZoneRebalancing"),
            "loadBalancers": inputs.get("loadBalancers"),
            "desiredCount": inputs.get("desiredCount"),
            "launchType": inputs.get("launchType"),
            "deploymentConfiguration": _drop_none(
                {
                    "deploymentCircuitBreaker": inputs.get("deploymentCircuitBreaker"),
                    "maximumPercent": inputs.get("deploymentMaximumPercent"),
                    "minimumHealthyPercent": inputs.get("deploymentMinimumHealthyPercent"),
                }
            ),
            "networkConfiguration": _drop_none(
                {
                    "awsvpcConfiguration": _drop_none(
                        {
                            "subnets": network.get("subnets"),
                            "securityGroups": network.get("securityGroups"),
                            "assignPublicIp": None if public_ip is None else ("ENABLED" if public_ip else "DISABLED"),
                        }
                    )
                }
            ),
            "healthCheckGracePeriodSeconds": inputs.get("healthCheckGracePeriodSeconds"),
            "propagateTags": inputs.get("propagateTags"),
        }
    )
    return request_violations("ecs", "CreateService", request, resource["name"])


def _check_cluster(resource: Resource) -> list[str]:
    settings = resource["inputs"].get("settings", [])
    request = _drop_none({"clusterName": _given_name(resource), "settings": settings})
    found = request_violations("ecs", "CreateCluster", request, resource["name"])
    for setting in settings:
        if setting.get("name") == "containerInsights" and setting.get("value") not in {
            *CONTAINER_INSIGHTS_ON,
            "disabled",
        }:
            found.append(
                f"{resource['name']}: containerInsights {setting.get('value')!r} is not enabled, enhanced or disabled"
            )
    return found


def _metric_violations(namespace: str, metric: str, dimensions: Iterable[str], where: str) -> list[str]:
    published = METRIC_DIMENSIONS.get(namespace)
    if published is None:
        return [f"{where}: namespace {namespace!r} is not one AWS publishes (known: {sorted(METRIC_DIMENSIONS)})"]
    if metric not in published:
        return [f"{where}: {namespace} publishes no metric {metric!r}"]
    if frozenset(dimensions) not in published[metric]:
        allowed = sorted(sorted(dims) for dims in published[metric])
        return [f"{where}: {namespace} {metric} is not published with dimensions {sorted(dimensions)} (only {allowed})"]
    return []


def _metric_query(query: Mapping[str, Any]) -> dict[str, Any]:
    """A `metricQueries` entry as PutMetricAlarm's `Metrics` member."""
    metric = query.get("metric")
    stat = metric and {
        "Metric": {
            "Namespace": metric.get("namespace"),
            "MetricName": metric.get("metricName"),
            "Dimensions": [{"Name": k, "Value": v} for k, v in (metric.get("dimensions") or {}).items()],
        },
        "Period": metric.get("period"),
        "Stat": metric.get("stat"),
    }
    return _drop_none(
        {
            "Id": query.get("id"),
            "Expression": query.get("expression"),
            "Label": query.get("label"),
            "ReturnData": query.get("returnData"),
            "MetricStat": stat,
        }
    )


def _check_metric_queries(queries: list[Mapping[str, Any]], where: str) -> list[str]:
    """Metric-math alarms: one query returns the alarm's data; each metric exists with those dimensions."""
    found = []
    if sum(bool(query.get("returnData")) for query in queries) != 1:
        found.append(f"{where}: exactly one metric query must return data")
    for query in queries:
        metric = query.get("metric")
        if metric is None:
            continue
        if not metric.get("stat"):
            found.append(f"{where}: metric query {query.get('id')!r} needs a stat")
        found += _metric_violations(
            metric.get("namespace", ""), metric.get("metricName", ""), metric.get("dimensions") or {}, where
        )
    return found


def _check_alarm(resource: Resource) -> list[str]:
    inputs, where = resource["inputs"], resource["name"]
    dimensions = inputs.get("dimensions") or {}
    queries = inputs.get("metricQueries") or []
    request = _drop_none(
        {
            "AlarmName": _given_name(resource),
            "AlarmDescription": inputs.get("alarmDescription"),
            "OKActions": inputs.get("okActions"),
            "AlarmActions": inputs.get("alarmActions"),
            "MetricName": inputs.get("metricName"),
            "Namespace": inputs.get("namespace"),
            "Statistic": inputs.get("statistic"),
            "ExtendedStatistic": inputs.get("extendedStatistic"),
            "Dimensions": [{"Name": name, "Value": value} for name, value in dimensions.items()],
            "Period": inputs.get("period"),
            "EvaluationPeriods": inputs.get("evaluationPeriods"),
            "DatapointsToAlarm": inputs.get("datapointsToAlarm"),
            "Threshold": inputs.get("threshold"),
            "ComparisonOperator": inputs.get("comparisonOperator"),
            "TreatMissingData": inputs.get("treatMissingData"),
            "Metrics": [_metric_query(query) for query in queries] or None,
        }
    )
    found = request_violations("cloudwatch", "PutMetricAlarm", request, where)
    if queries:
        if {"MetricName", "Namespace", "Statistic", "ExtendedStatistic"} & set(request):
            found.append(f"{where}: a metric-query alarm sets no metric, namespace or statistic of its own")
        found += _check_metric_queries(queries, where)
    elif ("Statistic" in request) == ("ExtendedStatistic" in request):
        found.append(f"{where}: set exactly one of statistic and extendedStatistic")
    if "ExtendedStatistic" in request and not PERCENTILE.fullmatch(request["ExtendedStatistic"]):
        found.append(f"{where}: extendedStatistic {request['ExtendedStatistic']!r} is not a percentile p0..p100")
    if request.get("TreatMissingData", "missing") not in TREAT_MISSING_DATA:
        found.append(
            f"{where}: treatMissingData {request['TreatMissingData']!r} is not one of {sorted(TREAT_MISSING_DATA)}"
        )
    period = request.get("Period", 60)
    if period not in HIGH_RESOLUTION_PERIODS and period % 60:
        found.append(f"{where}: period {period} is neither 10, 20, 30 nor a multiple of 60")
    for required in ("EvaluationPeriods", "ComparisonOperator", "Threshold"):
        if required not in request:
            found.append(f"{where}: a static-threshold alarm needs {required}")
    if request.get("DatapointsToAlarm", 0) > request.get("EvaluationPeriods", 0):
        found.append(f"{where}: datapointsToAlarm exceeds evaluationPeriods")
    if not queries:
        found += _metric_violations(request.get("Namespace", ""), request.get("MetricName", ""), dimensions, where)
    return found


def _dashboard_metrics(body: Mapping[str, Any]) -> Iterable[tuple[str, str, list[str]]]:
    """(namespace, metric, dimension names) of every metric line: [namespace, metric, dim, value, ..., {options}]."""
    for widget in body.get("widgets", []):
        for line in widget.get("properties", {}).get("metrics", []):
            fields = [field for field in line if not isinstance(field, dict)]
            yield fields[0], fields[1], fields[2::2]


def _check_dashboard(resource: Resource) -> list[str]:
    body = json.loads(resource["inputs"]["dashboardBody"])
    return [
        error
        for namespace, metric, dimensions in _dashboard_metrics(body)
        for error in _metric_violations(namespace, metric, dimensions, f"{resource['name']} widget")
    ]


def _check_target_group(resource: Resource) -> list[str]:
    inputs, where = resource["inputs"], resource["name"]
    check = inputs.get("healthCheck") or {}
    port = check.get("port")
    request = _drop_none(
        {
            "Name": _given_name(resource),
            "Protocol": inputs.get("protocol"),
            "Port": inputs.get("port"),
            "VpcId": inputs.get("vpcId"),
            "HealthCheckProtocol": check.get("protocol"),
            "HealthCheckPort": port,
            "HealthCheckEnabled": check.get("enabled"),
            "HealthCheckPath": check.get("path"),
            "HealthCheckIntervalSeconds": check.get("interval"),
            "HealthCheckTimeoutSeconds": check.get("timeout"),
            "HealthyThresholdCount": check.get("healthyThreshold"),
            "UnhealthyThresholdCount": check.get("unhealthyThreshold"),
            "Matcher": _drop_none({"HttpCode": check.get("matcher")}),
            "TargetType": inputs.get("targetType"),
        }
    )
    found = request_violations("elbv2", "CreateTargetGroup", request, where)
    if port is not None and port != "traffic-port" and not (port.isdigit() and 1 <= int(port) <= 65535):
        found.append(f"{where}: health check port {port!r} is neither traffic-port nor 1..65535")
    if check.get("timeout", 0) >= check.get("interval", 30):
        found.append(f"{where}: the health check timeout must be shorter than its interval")
    delay = inputs.get("deregistrationDelay")
    low, high = DEREGISTRATION_DELAY_RANGE
    if delay is not None and not low <= int(delay) <= high:
        found.append(f"{where}: deregistration delay {delay} is outside {low}..{high} s")
    return found


def _listener_action(action: Mapping[str, Any]) -> dict[str, Any]:
    redirect = action.get("redirect")
    return _drop_none(
        {
            "Type": action.get("type"),
            "TargetGroupArn": action.get("targetGroupArn"),
            "RedirectConfig": redirect
            and _drop_none(
                {
                    "Protocol": redirect.get("protocol"),
                    "Port": redirect.get("port"),
                    "StatusCode": redirect.get("statusCode"),
                }
            ),
        }
    )


def _check_listener(resource: Resource) -> list[str]:
    inputs, where = resource["inputs"], resource["name"]
    request = _drop_none(
        {
            "LoadBalancerArn": inputs.get("loadBalancerArn"),
            "Protocol": inputs.get("protocol"),
            "Port": inputs.get("port"),
            "SslPolicy": inputs.get("sslPolicy"),
            "Certificates": [{"CertificateArn": inputs["certificateArn"]}] if inputs.get("certificateArn") else None,
            "DefaultActions": [_listener_action(action) for action in inputs.get("defaultActions", [])],
        }
    )
    found = request_violations("elbv2", "CreateListener", request, where)
    if request.get("Protocol") == "HTTPS" and not (request.get("Certificates") and request.get("SslPolicy")):
        found.append(f"{where}: an HTTPS listener needs a certificate and an SSL policy")
    return found


def _check_load_balancer(resource: Resource) -> list[str]:
    inputs = resource["inputs"]
    request = _drop_none(
        {
            "Name": _given_name(resource),
            "Subnets": inputs.get("subnets"),
            "SecurityGroups": inputs.get("securityGroups"),
            "Scheme": "internal" if inputs.get("internal") else None,
            "Type": inputs.get("loadBalancerType"),
        }
    )
    return request_violations("elbv2", "CreateLoadBalancer", request, resource["name"])


def _check_scalable_target(resource: Resource) -> list[str]:
    inputs = resource["inputs"]
    request = {
        "ServiceNamespace": inputs.get("serviceNamespace"),
        "ResourceId": inputs.get("resourceId"),
        "ScalableDimension": inputs.get("scalableDimension"),
        "MinCapacity": inputs.get("minCapacity"),
        "MaxCapacity": inputs.get("maxCapacity"),
    }
    found = request_violations(
        "application-autoscaling", "RegisterScalableTarget", _drop_none(request), resource["name"]
    )
    if (request["MinCapacity"] or 0) > (request["MaxCapacity"] or 0):
        found.append(f"{resource['name']}: minCapacity above maxCapacity")
    return found


# https://docs.aws.amazon.com/autoscaling/application/APIReference/API_PredefinedMetricSpecification.html
ALB_RESOURCE_LABEL = re.compile(r"app/[^/]+/[0-9a-f]+/targetgroup/[^/]+/[0-9a-f]+")


def _check_scaling_policy(resource: Resource) -> list[str]:
    inputs, where = resource["inputs"], resource["name"]
    tracking = inputs.get("targetTrackingScalingPolicyConfiguration") or {}
    predefined = tracking.get("predefinedMetricSpecification") or {}
    request = _drop_none(
        {
            "PolicyName": _given_name(resource),
            "ServiceNamespace": inputs.get("serviceNamespace"),
            "ResourceId": inputs.get("resourceId"),
            "ScalableDimension": inputs.get("scalableDimension"),
            "PolicyType": inputs.get("policyType"),
            "TargetTrackingScalingPolicyConfiguration": _drop_none(
                {
                    "TargetValue": tracking.get("targetValue"),
                    "PredefinedMetricSpecification": _drop_none(
                        {
                            "PredefinedMetricType": predefined.get("predefinedMetricType"),
                            "ResourceLabel": predefined.get("resourceLabel"),
                        }
                    ),
                    "ScaleOutCooldown": tracking.get("scaleOutCooldown"),
                    "ScaleInCooldown": tracking.get("scaleInCooldown"),
                    "DisableScaleIn": tracking.get("disableScaleIn"),
                }
            ),
        }
    )
    found = request_violations("application-autoscaling", "PutScalingPolicy", request, where)
    metric = predefined.get("predefinedMetricType", "")
    if metric == "ALBRequestCountPerTarget" and not ALB_RESOURCE_LABEL.fullmatch(predefined.get("resourceLabel") or ""):
        found.append(f"{where}: ALBRequestCountPerTarget needs resourceLabel app/<lb>/<id>/targetgroup/<tg>/<id>")
    if metric.startswith("ECSService") and inputs.get("serviceNamespace") != "ecs":
        found.append(f"{where}: {metric} only scales ECS services")
    return found


def _check_launch_template(resource: Resource) -> list[str]:
    inputs, where = resource["inputs"], resource["name"]
    found: list[str] = []
    market = inputs.get("instanceMarketOptions") or {}
    spot = market.get("spotOptions") or {}
    metadata = inputs.get("metadataOptions") or {}
    data = {
        "ImageId": inputs.get("imageId"),
        "InstanceType": inputs.get("instanceType"),
        "InstanceInitiatedShutdownBehavior": inputs.get("instanceInitiatedShutdownBehavior"),
        "UserData": inputs.get("userData"),
        "IamInstanceProfile": _drop_none({"Arn": (inputs.get("iamInstanceProfile") or {}).get("arn")}),
        "InstanceMarketOptions": market
        and _drop_none(
            {
                "MarketType": market.get("marketType"),
                "SpotOptions": _drop_none(
                    {
                        "SpotInstanceType": spot.get("spotInstanceType"),
                        "InstanceInterruptionBehavior": spot.get("instanceInterruptionBehavior"),
                    }
                ),
            }
        ),
        "MetadataOptions": _drop_none(
            {
                "HttpTokens": metadata.get("httpTokens"),
                "HttpEndpoint": metadata.get("httpEndpoint"),
                "HttpPutResponseHopLimit": metadata.get("httpPutResponseHopLimit"),
            }
        ),
        "BlockDeviceMappings": [
            _drop_none(
                {
                    "DeviceName": mapping.get("deviceName"),
                    "Ebs": _drop_none(
                        {
                            "VolumeSize": mapping.get("ebs", {}).get("volumeSize"),
                            "VolumeType": mapping.get("ebs", {}).get("volumeType"),
                            "Encrypted": _bool_string(
                                mapping.get("ebs", {}).get("encrypted"), f"{where} encrypted", found
                            ),
                            "DeleteOnTermination": _bool_string(
                                mapping.get("ebs", {}).get("deleteOnTermination"), f"{where} deleteOnTermination", found
                            ),
                        }
                    ),
                }
            )
            for mapping in inputs.get("blockDeviceMappings", [])
        ],
        "NetworkInterfaces": [
            _drop_none(
                {
                    "SubnetId": interface.get("subnetId"),
                    "Groups": interface.get("securityGroups"),
                    "DeviceIndex": interface.get("deviceIndex"),
                    "AssociatePublicIpAddress": _bool_string(
                        interface.get("associatePublicIpAddress"), f"{where} associatePublicIpAddress", found
                    ),
                    "DeleteOnTermination": _bool_string(
                        interface.get("deleteOnTermination"), f"{where} deleteOnTermination", found
                    ),
                }
            )
            for interface in inputs.get("networkInterfaces", [])
        ],
        "TagSpecifications": [
            {
                "ResourceType": spec.get("resourceType"),
                "Tags": [{"Key": key, "Value": value} for key, value in (spec.get("tags") or {}).items()],
            }
            for spec in inputs.get("tagSpecifications", [])
        ],
    }
    request = _drop_none(
        {
            "LaunchTemplateName": _given_name(resource),
            "VersionDescription": inputs.get("description"),
            "LaunchTemplateData": _drop_none(data),
        }
    )
    found += request_violations("ec2", "CreateLaunchTemplate", request, where)
    # https://docs.aws.amazon.com/AWSEC2/latest/APIReference/API_LaunchTemplateInstanceMetadataOptionsRequest.html
    hops = metadata.get("httpPutResponseHopLimit")
    if hops is not None and not 1 <= hops <= 64:
        found.append(f"{where}: httpPutResponseHopLimit {hops} is outside 1..64")
    return found


def _lifecycle_rule(rule: Mapping[str, Any]) -> dict[str, Any]:
    expiration = rule.get("expiration") or {}
    noncurrent = rule.get("noncurrentVersionExpiration") or {}
    multipart = rule.get("abortIncompleteMultipartUpload") or {}
    rule_filter = rule.get("filter")
    return _drop_none(
        {
            "ID": rule.get("id"),
            "Status": rule.get("status"),
            # An empty filter is meaningful (the whole bucket), so it is kept as {}.
            "Filter": None if rule_filter is None else _drop_none({"Prefix": rule_filter.get("prefix")}),
            "Expiration": _drop_none({"Days": expiration.get("days")}),
            "Transitions": [
                _drop_none({"Days": t.get("days"), "StorageClass": t.get("storageClass")})
                for t in rule.get("transitions", [])
            ],
            "NoncurrentVersionExpiration": _drop_none({"NoncurrentDays": noncurrent.get("noncurrentDays")}),
            "AbortIncompleteMultipartUpload": _drop_none({"DaysAfterInitiation": multipart.get("daysAfterInitiation")}),
        }
    ) | ({"Filter": {}} if rule_filter == {} else {})


def _transition_violations(rule: Mapping[str, Any], where: str) -> list[str]:
    found = []
    transitions = sorted(rule.get("Transitions", []), key=lambda t: t.get("Days", 0))
    steps = [(t.get("StorageClass", ""), t.get("Days", 0)) for t in transitions]
    expiration = rule.get("Expiration", {}).get("Days")
    if expiration is not None:
        steps.append(("expiration", expiration))
    for (storage_class, days), (next_class, next_days) in itertools.pairwise(steps):
        if {storage_class, next_class} - {*TRANSITION_ORDER, "expiration"}:
            continue  # an unknown class: the service model's enum check reports it
        if next_class != "expiration" and TRANSITION_ORDER.index(next_class) <= TRANSITION_ORDER.index(storage_class):
            found.append(f"{where}: {next_class} cannot follow {storage_class}")
        if storage_class in INFREQUENT_ACCESS_CLASSES and next_days - days < INFREQUENT_ACCESS_MIN_DAYS:
            found.append(
                f"{where}: {next_class} at day {next_days} is less than {INFREQUENT_ACCESS_MIN_DAYS} days after "
                f"{storage_class} at day {days}"
            )
    for storage_class, days in steps:
        if storage_class in INFREQUENT_ACCESS_CLASSES and days < INFREQUENT_ACCESS_MIN_DAYS:
            found.append(f"{where}: {storage_class} at day {days}; S3 needs at least {INFREQUENT_ACCESS_MIN_DAYS} days")
    return found


def _check_lifecycle(resource: Resource) -> list[str]:
    where = resource["name"]
    rules = [_lifecycle_rule(rule) for rule in resource["inputs"].get("rules", [])]
    request = {"Bucket": resource["inputs"].get("bucket"), "LifecycleConfiguration": {"Rules": rules}}
    found = request_violations("s3", "PutBucketLifecycleConfiguration", request, where)
    for rule in rules:
        found += _transition_violations(rule, f"{where} rule {rule.get('ID')}")
    return found


CHECKS: dict[str, Callable[[Resource], list[str]]] = {
    "aws:ecs/taskDefinition:TaskDefinition": _check_task_definition,
    "aws:ecs/service:Service": _check_service,
    "aws:ecs/cluster:Cluster": _check_cluster,
    "aws:cloudwatch/metricAlarm:MetricAlarm": _check_alarm,
    "aws:cloudwatch/dashboard:Dashboard": _check_dashboard,
    "aws:lb/targetGroup:TargetGroup": _check_target_group,
    "aws:lb/listener:Listener": _check_listener,
    "aws:lb/loadBalancer:LoadBalancer": _check_load_balancer,
    "aws:appautoscaling/target:Target": _check_scalable_target,
    "aws:appautoscaling/policy:Policy": _check_scaling_policy,
    "aws:ec2/launchTemplate:LaunchTemplate": _check_launch_template,
    "aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration": _check_lifecycle,
}


def _container_insights_violations(resources: list[Resource]) -> list[str]:
    """Container Insights metrics exist only for clusters that turn it on."""
    uses_insights = any(
        resource["inputs"].get("namespace") == "ECS/ContainerInsights"
        or "ECS/ContainerInsights" in resource["inputs"].get("dashboardBody", "")
        for resource in resources
    )
    clusters = [r for r in resources if r["type"] == "aws:ecs/cluster:Cluster"]
    enabled = all(
        any(
            s.get("name") == "containerInsights" and s.get("value") in CONTAINER_INSIGHTS_ON
            for s in c["inputs"].get("settings", [])
        )
        for c in clusters
    )
    if uses_insights and not enabled:
        return ["ECS/ContainerInsights metrics are used but the cluster does not turn Container Insights on"]
    return []


def violations(resources: Iterable[Resource]) -> list[str]:
    """Every AWS rule the rendered `resources` break (types without an entry in CHECKS are not checked)."""
    resources = list(resources)
    found = [error for resource in resources for error in CHECKS.get(resource["type"], lambda _: [])(resource)]
    return found + _container_insights_violations(resources)


# --- how CloudWatch evaluates an alarm ----------------------------------------------------------------------

# https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/alarm-evaluation.html
COMPARISONS: dict[str, Callable[[float, float], bool]] = {
    "GreaterThanThreshold": lambda value, threshold: value > threshold,
    "GreaterThanOrEqualToThreshold": lambda value, threshold: value >= threshold,
    "LessThanThreshold": lambda value, threshold: value < threshold,
    "LessThanOrEqualToThreshold": lambda value, threshold: value <= threshold,
}


def alarm_fires(alarm: Mapping[str, Any], datapoints: list[float | None]) -> bool:
    """Whether a static-threshold alarm goes to ALARM after `datapoints` (one per period, None where the metric
    published nothing): M of the last N periods breach, with missing periods breaching, not breaching, or
    skipped as `treatMissingData` says (skipped periods are replaced by older ones, as CloudWatch does)."""
    missing = alarm.get("treatMissingData", "missing")
    breaches = COMPARISONS[alarm["comparisonOperator"]]
    window: list[bool] = []
    for value in reversed(datapoints):
        if len(window) == alarm["evaluationPeriods"]:
            break
        if value is not None:
            window.append(breaches(value, alarm["threshold"]))
        elif missing in ("breaching", "notBreaching"):
            window.append(missing == "breaching")
    return sum(window) >= alarm.get("datapointsToAlarm", alarm["evaluationPeriods"])
