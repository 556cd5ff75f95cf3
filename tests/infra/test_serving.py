import dataclasses
import json

import pytest

from components.serving import APP_PORT, LIVENESS_PATH, OPS_PORT, READINESS_PATH, Serving, ServingArgs

DIGEST = "123456789012.dkr.ecr.eu-west-1.amazonaws.com/workload@sha256:" + "cd" * 32
ARGS = ServingArgs(
    vpc_id="vpc-1",
    public_subnet_ids=["subnet-pub-a", "subnet-pub-b"],
    task_subnet_ids=["subnet-priv-a", "subnet-priv-b"],
    tasks_get_public_ip=False,
    image_ref=DIGEST,
    repository_arn="arn:aws:ecr:eu-west-1:123456789012:repository/workload",
    bucket_arn="arn:aws:s3:::lake",
    kms_key_arn="arn:aws:kms:eu-west-1:123456789012:key/1234",
    model_uri="s3://lake/models/v7",
    capture_environment={"CAPTURE_PERCENT": "25", "CAPTURE_URI": "s3://lake/capture/", "CAPTURE_TEXT": "false"},
    region="eu-west-1",
    cpu=1024,
    memory=2048,
    desired_count=2,
    min_count=2,
    max_count=5,
    cpu_target_percent=70,
    requests_per_target=300,
    health_check_grace_seconds=120,
    worker_timeout_seconds=30,
    log_retention_days=30,
    certificate_arn="",
    deletion_protection=True,
    canary=None,
)


def build(args: ServingArgs = ARGS) -> dict:
    serving = Serving("api", args)
    return {"endpoint": serving.endpoint, "cluster": serving.cluster_name, "service": serving.service_name}


def groups(mocks) -> dict:
    return {g.name: g.id for g in mocks.of_type("aws:ec2/securityGroup:SecurityGroup")}


def test_task_definition_pins_image_digest_and_model(run_pulumi, pulumi_mocks):
    run_pulumi(build)
    task = pulumi_mocks.one("aws:ecs/taskDefinition:TaskDefinition").inputs
    assert (task["cpu"], task["memory"], task["networkMode"]) == ("1024", "2048", "awsvpc")
    assert task["requiresCompatibilities"] == ["FARGATE"]
    (container,) = json.loads(task["containerDefinitions"])
    assert container["image"] == DIGEST
    environment = {e["name"]: e["value"] for e in container["environment"]}
    assert environment["MODEL_URI"] == "s3://lake/models/v7"
    assert (environment["CAPTURE_PERCENT"], environment["CAPTURE_URI"], environment["CAPTURE_TEXT"]) == (
        "25",
        "s3://lake/capture/",
        "false",
    )
    assert {m["containerPort"] for m in container["portMappings"]} == {APP_PORT, OPS_PORT}
    assert container["readonlyRootFilesystem"] is True and container["user"] == "10001:10001"
    log_group = pulumi_mocks.one("aws:cloudwatch/logGroup:LogGroup")
    assert container["logConfiguration"]["options"]["awslogs-group"] == log_group.state["name"]
    assert log_group.inputs["retentionInDays"] == 30


def test_roles_split_image_pull_from_model_reads(run_pulumi, pulumi_mocks):
    run_pulumi(build)
    policies = {p.name: json.loads(p.inputs["policy"]) for p in pulumi_mocks.of_type("aws:iam/rolePolicy:RolePolicy")}
    task = {s["Sid"]: s for s in policies["api-task"]["Statement"]}
    assert task["ReadModelBundles"]["Resource"] == ["arn:aws:s3:::lake/models/*"]
    assert task["ListGrantedPrefixes"]["Condition"] == {"StringLike": {"s3:prefix": ["models/*"]}}
    # capture: add objects under capture/ and nothing else (no read, list or delete of what was captured)
    assert (task["WriteCapturedRequests"]["Action"], task["WriteCapturedRequests"]["Resource"]) == (
        "s3:PutObject", ["arn:aws:s3:::lake/capture/*"]
    )  # fmt: skip
    assert task["DataLakeKey"]["Action"] == ["kms:Decrypt", "kms:GenerateDataKey"]  # SSE-KMS writes need a data key
    execution_actions = {
        action
        for s in policies["api-execution"]["Statement"]
        for action in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"])
    }
    assert {a.split(":")[0] for a in execution_actions} == {"ecr", "logs"}


def test_only_the_load_balancer_reaches_the_tasks(run_pulumi, pulumi_mocks):
    run_pulumi(build)
    sg = groups(pulumi_mocks)
    ingress = [r.inputs for r in pulumi_mocks.of_type("aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule")]
    to_tasks = [r for r in ingress if r["securityGroupId"] == sg["api-tasks"]]
    assert sorted(to_tasks, key=lambda r: r["fromPort"]) == [
        {
            "securityGroupId": sg["api-tasks"],
            "referencedSecurityGroupId": sg["api-alb"],
            "ipProtocol": "tcp",
            "fromPort": port,
            "toPort": port,
        }
        for port in (APP_PORT, OPS_PORT)
    ]
    to_alb = sorted(r["fromPort"] for r in ingress if r["securityGroupId"] == sg["api-alb"])
    assert to_alb == [80, 443]


def test_service_rolls_back_failed_deployments_and_leaves_the_count_to_autoscaling(
    run_pulumi, pulumi_mocks, resource_options
):
    out = run_pulumi(build)
    assert resource_options["api-service"].ignore_changes == ["desiredCount"]
    service = pulumi_mocks.one("aws:ecs/service:Service").inputs
    assert service["desiredCount"] == 2
    assert service["deploymentCircuitBreaker"] == {"enable": True, "rollback": True}
    assert (service["deploymentMinimumHealthyPercent"], service["deploymentMaximumPercent"]) == (100, 200)
    assert service["networkConfiguration"]["subnets"] == ["subnet-priv-a", "subnet-priv-b"]
    assert service["networkConfiguration"]["assignPublicIp"] is False
    target_group = pulumi_mocks.one("aws:lb/targetGroup:TargetGroup")
    assert service["loadBalancers"] == [
        {"targetGroupArn": target_group.state["arn"], "containerName": "api", "containerPort": APP_PORT}
    ]
    assert service["waitForSteadyState"] is True
    assert out["endpoint"] == "http://" + pulumi_mocks.one("aws:lb/loadBalancer:LoadBalancer").state["dnsName"]


def test_autoscaling_tracks_cpu_at_70_percent_and_requests_per_target(run_pulumi, pulumi_mocks):
    out = run_pulumi(build)
    target = pulumi_mocks.one("aws:appautoscaling/target:Target").inputs
    assert target["resourceId"] == f"service/{out['cluster']}/{out['service']}"
    assert (target["minCapacity"], target["maxCapacity"]) == (2, 5)
    tracking = {
        p.inputs["targetTrackingScalingPolicyConfiguration"]["predefinedMetricSpecification"]["predefinedMetricType"]: p
        for p in pulumi_mocks.of_type("aws:appautoscaling/policy:Policy")
    }
    cpu = tracking["ECSServiceAverageCPUUtilization"].inputs["targetTrackingScalingPolicyConfiguration"]
    assert cpu["targetValue"] == 70
    requests = tracking["ALBRequestCountPerTarget"].inputs["targetTrackingScalingPolicyConfiguration"]
    alb = pulumi_mocks.one("aws:lb/loadBalancer:LoadBalancer").state["arnSuffix"]
    tg = pulumi_mocks.one("aws:lb/targetGroup:TargetGroup").state["arnSuffix"]
    assert requests["predefinedMetricSpecification"]["resourceLabel"] == f"{alb}/{tg}"


def test_plain_http_without_a_certificate(run_pulumi, pulumi_mocks):
    run_pulumi(build)
    (listener,) = pulumi_mocks.of_type("aws:lb/listener:Listener")
    assert (listener.inputs["port"], listener.inputs["defaultActions"][0]["type"]) == (80, "forward")


def test_a_certificate_adds_https_and_redirects_http(run_pulumi, pulumi_mocks):
    cert = "arn:aws:acm:eu-west-1:123456789012:certificate/abc"
    out = run_pulumi(lambda: build(dataclasses.replace(ARGS, certificate_arn=cert)))
    listeners = {lst.inputs["port"]: lst.inputs for lst in pulumi_mocks.of_type("aws:lb/listener:Listener")}
    assert listeners[80]["defaultActions"][0]["redirect"]["protocol"] == "HTTPS"
    assert listeners[443]["certificateArn"] == cert and listeners[443]["protocol"] == "HTTPS"
    assert out["endpoint"].startswith("https://")


def test_counts_must_be_ordered():
    with pytest.raises(ValueError, match="serviceMinCount"):
        dataclasses.replace(ARGS, min_count=3, desired_count=2)


def test_workload_health_is_checked_on_the_ops_port_liveness_by_ecs_readiness_by_the_load_balancer(
    run_pulumi, pulumi_mocks
):
    """Both checks go to the ops port, which the gunicorn master answers, so saturated inference workers cannot
    fail them; only the app port takes traffic, so /metrics and /openapi.json (ops port) are never public."""
    run_pulumi(build)
    tg = pulumi_mocks.one("aws:lb/targetGroup:TargetGroup").inputs
    assert tg["port"] == APP_PORT
    assert (tg["healthCheck"]["port"], tg["healthCheck"]["path"]) == (str(OPS_PORT), READINESS_PATH)
    (container,) = json.loads(pulumi_mocks.one("aws:ecs/taskDefinition:TaskDefinition").inputs["containerDefinitions"])
    assert f"http://127.0.0.1:{OPS_PORT}{LIVENESS_PATH}" in " ".join(container["healthCheck"]["command"])
    assert {"name": "OPS_PORT", "value": str(OPS_PORT)} in container["environment"]


@pytest.mark.parametrize("timeout", [0, 116])
def test_worker_timeout_must_leave_fargate_room_to_stop(timeout):
    with pytest.raises(ValueError, match=r"workerTimeoutSeconds must be 1\.\.115"):
        dataclasses.replace(ARGS, worker_timeout_seconds=timeout)
