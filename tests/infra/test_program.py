"""The whole Pulumi program under mocks, once per stack file, checked against the project's invariants."""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path
from typing import Any

import aws_rules
import pytest
import yaml
from infra_mocks import ACCOUNT
from run_program_under_mocks import STACKS, Program

REPO_ROOT = Path(__file__).resolve().parents[2]
REQUIRED_OUTPUTS = [
    "endpoint",
    "bucket",
    "repository_url",
    "image",
    "model_uri",
    "training_launch_template_id",
    "dashboard_url",
    "task_definition_arn",
]


# Actions IAM cannot scope to a resource: the only ones a policy may grant on "*".
UNSCOPABLE_ACTIONS = {
    "ecr:GetAuthorizationToken",
    "elasticloadbalancing:DescribeListeners",
    "elasticloadbalancing:DescribeRules",
    "elasticloadbalancing:DescribeTargetGroups",
    "elasticloadbalancing:DescribeTargetHealth",
}


def _cfg(program: Program, key: str) -> Any:
    return program.config[f"imdb-sentiment:{key}"]


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def test_stack_outputs_are_present(program):
    missing = [name for name in REQUIRED_OUTPUTS if not program.outputs.get(name)]
    assert not missing, f"{program.stack}: missing outputs {missing}"
    assert program.outputs["endpoint"].startswith("http")
    assert program.outputs["model_uri"] == (f"s3://{program.outputs['bucket']}/models/{_cfg(program, 'modelVersion')}")


def test_every_aws_resource_uses_the_tagging_provider(program):
    provider = program.one("pulumi:providers:aws")
    assert provider["inputs"]["region"] == program.config["aws:region"]
    # Provider inputs reach the engine JSON-encoded.
    tags = json.loads(provider["inputs"]["defaultTags"])["tags"]
    assert tags == {"project": "imdb-sentiment", "stack": program.stack, "owner": _cfg(program, "owner")}
    aws_resources = [r for r in program.resources if r["type"].startswith("aws:")]
    assert aws_resources
    stray = [r["name"] for r in aws_resources if f"pulumi:providers:aws::{provider['name']}::" not in r["provider"]]
    assert not stray, f"not on the tagging provider: {stray}"


def test_data_lake_is_private_encrypted_versioned_and_tls_only(program):
    bucket = program.one("aws:s3/bucket:Bucket")
    assert bucket["inputs"]["forceDestroy"] is _cfg(program, "forceDestroy")
    block = program.one("aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock")["inputs"]
    assert block["bucket"] == bucket["id"]
    assert all(
        block[flag] is True
        for flag in ("blockPublicAcls", "blockPublicPolicy", "ignorePublicAcls", "restrictPublicBuckets")
    )
    assert not program.of_type("aws:s3/bucketAcl:BucketAcl")
    versioning = program.one("aws:s3/bucketVersioning:BucketVersioning")["inputs"]
    assert versioning["versioningConfiguration"]["status"] == "Enabled"
    sse = program.one("aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration")
    algorithm = sse["inputs"]["rules"][0]["applyServerSideEncryptionByDefault"]["sseAlgorithm"]
    assert algorithm == ("aws:kms" if _cfg(program, "storageKms") else "AES256")
    policy = json.loads(program.one("aws:s3/bucketPolicy:BucketPolicy")["inputs"]["policy"])
    bucket_arn = bucket["state"]["arn"]
    deny_plain_http = [
        s
        for s in policy["Statement"]
        if s["Effect"] == "Deny"
        and s["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
        and set(_as_list(s["Resource"])) == {bucket_arn, f"{bucket_arn}/*"}
    ]
    assert deny_plain_http
    assert not [s for s in policy["Statement"] if s["Effect"] == "Allow"], "the bucket policy grants nothing"


def test_task_definition_runs_the_pushed_image_by_digest_and_the_pinned_model(program):
    digest = program.one("docker:index/image:Image")["state"]["repoDigest"]
    assert "@sha256:" in digest
    task = program.named("aws:ecs/taskDefinition:TaskDefinition", "api-task")
    (container,) = json.loads(task["inputs"]["containerDefinitions"])
    assert container["image"] == digest == program.outputs["image"]
    assert {"name": "MODEL_URI", "value": program.outputs["model_uri"]} in container["environment"]
    assert container["readonlyRootFilesystem"] is True
    assert container["user"] != "root" and not container["user"].startswith("0")
    assert container["logConfiguration"]["logDriver"] == "awslogs"
    assert "/health" in " ".join(container["healthCheck"]["command"])


def _ingress_rules(program: Program, group_id: str) -> list[dict[str, Any]]:
    return [
        r["inputs"]
        for r in program.of_type("aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule")
        if r["inputs"]["securityGroupId"] == group_id
    ]


def _assert_no_inline_ingress(program: Program, group_id: str) -> None:
    group = next(r for r in program.of_type("aws:ec2/securityGroup:SecurityGroup") if r["id"] == group_id)
    assert not group["inputs"].get("ingress"), f"{group['name']} has inline ingress"


def test_tasks_are_reachable_only_from_the_load_balancer(program):
    service = program.one("aws:ecs/service:Service")["inputs"]
    (alb_sg,) = program.one("aws:lb/loadBalancer:LoadBalancer")["inputs"]["securityGroups"]
    (task_sg,) = service["networkConfiguration"]["securityGroups"]
    rules = _ingress_rules(program, task_sg)
    for rule in rules:
        assert rule["referencedSecurityGroupId"] == alb_sg
        assert not rule.get("cidrIpv4") and not rule.get("cidrIpv6") and not rule.get("prefixListId")
        assert rule["fromPort"] == rule["toPort"]
    _assert_no_inline_ingress(program, task_sg)
    # Every port the load balancer uses (traffic and health checks) is open to it both ways, and in the container.
    # With a canary, prod has a second (alternate) target group: it must be used the same way.
    target_groups = [group["inputs"] for group in program.of_type("aws:lb/targetGroup:TargetGroup")]
    used = {port for group in target_groups for port in (group["port"], int(group["healthCheck"]["port"]))}
    target_group = target_groups[0]
    assert {rule["fromPort"] for rule in rules} == used
    egress = program.of_type("aws:vpc/securityGroupEgressRule:SecurityGroupEgressRule")
    assert {r["inputs"]["fromPort"] for r in egress if r["inputs"]["securityGroupId"] == alb_sg} == used
    (container,) = json.loads(
        program.named("aws:ecs/taskDefinition:TaskDefinition", "api-task")["inputs"]["containerDefinitions"]
    )
    assert used == {mapping["containerPort"] for mapping in container["portMappings"]}
    (forwarded,) = program.one("aws:ecs/service:Service")["inputs"]["loadBalancers"]
    assert forwarded["containerPort"] == target_group["port"] != int(target_group["healthCheck"]["port"])


def _environment(container: dict[str, Any]) -> dict[str, str]:
    return {variable["name"]: variable["value"] for variable in container["environment"]}


def test_deployments_and_scale_in_never_cut_a_request_short(program):
    """Fault 6: ECS deregisters a task, waits the target group's deregistration delay for in-flight requests, then
    sends SIGTERM and kills the container stopTimeout later. A request may run up to gunicorn's worker timeout."""
    (container,) = json.loads(
        program.named("aws:ecs/taskDefinition:TaskDefinition", "api-task")["inputs"]["containerDefinitions"]
    )
    environment = _environment(container)
    # Set explicitly, from the stack config: never a default inside the image that the delay could drift from.
    worker_timeout = int(environment["GUNICORN_TIMEOUT"])
    assert worker_timeout == _cfg(program, "workerTimeoutSeconds")
    for group in program.of_type("aws:lb/targetGroup:TargetGroup"):
        assert group["inputs"]["deregistrationDelay"] > worker_timeout, group["name"]
    assert container["stopTimeout"] > int(environment["GUNICORN_GRACEFUL_TIMEOUT"])


def _image_volumes(dockerfile: Path) -> set[str]:
    """The paths the final stage of `dockerfile` declares with VOLUME (JSON or plain form)."""
    final_stage = re.split(r"^FROM\s", dockerfile.read_text(), flags=re.MULTILINE)[-1]
    volumes: set[str] = set()
    for arguments in re.findall(r"^VOLUME\s+(.+)$", final_stage, flags=re.MULTILINE):
        arguments = arguments.strip()
        volumes.update(json.loads(arguments) if arguments.startswith("[") else arguments.split())
    return volumes


def test_every_writable_mount_is_a_volume_the_image_declares(program):
    """Fault 1: on Fargate an empty task volume is a root-owned 0755 directory, which the non-root, read-only-root
    container cannot write, unless the image declares VOLUME at that path (then it starts as a copy of the image's
    directory). /tmp must be writable for the model cache and gunicorn."""
    (container,) = json.loads(
        program.named("aws:ecs/taskDefinition:TaskDefinition", "api-task")["inputs"]["containerDefinitions"]
    )
    assert container["readonlyRootFilesystem"] is True
    writable = {mount["containerPath"] for mount in container["mountPoints"] if not mount.get("readOnly")}
    assert "/tmp" in writable
    assert writable <= _image_volumes(REPO_ROOT / "workload" / "Dockerfile")


def test_task_subnets_follow_the_network_mode(program):
    service = program.one("aws:ecs/service:Service")["inputs"]["networkConfiguration"]
    public_subnets = set(program.one("aws:lb/loadBalancer:LoadBalancer")["inputs"]["subnets"])
    assert len(public_subnets) == 2
    zones = {r["inputs"]["availabilityZone"] for r in program.of_type("aws:ec2/subnet:Subnet")}
    assert len(zones) == 2
    if _cfg(program, "networkMode") == "public":
        assert set(service["subnets"]) == public_subnets and service["assignPublicIp"] is True
    else:
        assert not set(service["subnets"]) & public_subnets and service["assignPublicIp"] is False
    if _cfg(program, "networkMode") == "private-endpoints":
        services = {
            r["inputs"]["serviceName"].rsplit(".", 2)[-2:][-1]
            for r in program.of_type("aws:ec2/vpcEndpoint:VpcEndpoint")
        }
        assert {"s3", "api", "dkr", "logs"} <= services
        assert not program.of_type("aws:ec2/natGateway:NatGateway")


def test_private_tasks_have_an_endpoint_for_every_aws_service_their_roles_call(program):
    """With no internet route a task reaches only the AWS services the VPC has an endpoint for: derive them from
    what each task definition's roles may call (the monitoring job's PutMetricData needs `monitoring`)."""
    if _cfg(program, "networkMode") != "private-endpoints":
        # the other modes reach AWS over the internet: through a public IP, or through a NAT gateway
        service = program.one("aws:ecs/service:Service")["inputs"]["networkConfiguration"]
        assert service["assignPublicIp"] or program.of_type("aws:ec2/natGateway:NatGateway")
        return
    region = program.config["aws:region"]
    endpoints = {
        r["inputs"]["serviceName"].removeprefix(f"com.amazonaws.{region}.")
        for r in program.of_type("aws:ec2/vpcEndpoint:VpcEndpoint")
    }
    role_names = {r["state"]["arn"]: r["state"]["name"] for r in program.of_type("aws:iam/role:Role")}
    policies = {
        r["inputs"]["role"]: json.loads(r["inputs"]["policy"]) for r in program.of_type("aws:iam/rolePolicy:RolePolicy")
    }
    tasks = program.of_type("aws:ecs/taskDefinition:TaskDefinition")
    assert {t["name"] for t in tasks} == {"api-task", "model-monitoring-task"}
    for task in tasks:
        roles = [role_names[task["inputs"][key]] for key in ("taskRoleArn", "executionRoleArn")]
        prefixes = {
            action.split(":")[0]
            for role in roles
            for statement in policies[role]["Statement"]
            for action in _as_list(statement["Action"])
        }
        assert prefixes <= set(aws_rules.VPC_ENDPOINTS_BY_IAM_PREFIX), (
            f"{task['name']}: which endpoint serves {prefixes}?"
        )
        needed = set().union(*(aws_rules.VPC_ENDPOINTS_BY_IAM_PREFIX[prefix] for prefix in prefixes))
        assert needed <= endpoints, f"{task['name']} calls services without a VPC endpoint: {needed - endpoints}"


def test_service_deploys_safely_and_scales_on_cpu(program):
    service = program.one("aws:ecs/service:Service")["inputs"]
    assert service["desiredCount"] == _cfg(program, "serviceDesiredCount")
    if program.stack == "prod":
        assert service["desiredCount"] >= 2
    assert service["deploymentCircuitBreaker"] == {"enable": True, "rollback": True}
    assert service["deploymentMinimumHealthyPercent"] == 100
    assert service["deploymentMaximumPercent"] == 200
    assert service["healthCheckGracePeriodSeconds"] > 0
    # Fault 2: `pulumi up` waits for the rollout, and exports the revision the post-deploy check expects to run.
    assert service["waitForSteadyState"] is True
    task_definition = program.named("aws:ecs/taskDefinition:TaskDefinition", "api-task")
    assert service["taskDefinition"] == task_definition["state"]["arn"] == program.outputs["task_definition_arn"]
    # Autoscaling owns the count after creation; `pulumi up` must not reset it. ECS owns a canary rule's weights.
    canary = {"api-canary-production": ["actions"]} if _cfg(program, "deploymentStrategy") == "CANARY" else {}
    assert program.ignore_changes == {"api-service": ["desiredCount"], **canary}
    cpu = [
        p["inputs"]["targetTrackingScalingPolicyConfiguration"]
        for p in program.of_type("aws:appautoscaling/policy:Policy")
        if p["inputs"]["targetTrackingScalingPolicyConfiguration"]["predefinedMetricSpecification"][
            "predefinedMetricType"
        ]
        == "ECSServiceAverageCPUUtilization"
    ]
    assert [c["targetValue"] for c in cpu] == [_cfg(program, "cpuTargetPercent")]
    target = program.one("aws:appautoscaling/target:Target")["inputs"]
    assert target["minCapacity"] == _cfg(program, "serviceMinCount")
    assert target["maxCapacity"] == _cfg(program, "serviceMaxCount")


def test_prod_releases_canaries_that_roll_back_on_alarms(program):
    service = program.one("aws:ecs/service:Service")["inputs"]
    if program.stack == "prod":
        assert _cfg(program, "deploymentStrategy") == "CANARY"
    if _cfg(program, "deploymentStrategy") != "CANARY":
        assert not service.get("deploymentConfiguration") and not service.get("alarms")
        assert len(program.of_type("aws:lb/targetGroup:TargetGroup")) == 1
        return
    deployment = service["deploymentConfiguration"]
    assert deployment["strategy"] == "CANARY"
    assert deployment["canaryConfiguration"] == {
        "canaryPercent": _cfg(program, "canaryPercent"),
        "canaryBakeTimeInMinutes": str(_cfg(program, "canaryBakeMinutes")),
    }
    assert deployment["bakeTimeInMinutes"] == str(_cfg(program, "deploymentBakeMinutes"))
    assert service["sigintRollback"] is True and service["waitForSteadyState"] is True

    # The alarms that roll back exist, and watch 5xx, p99 latency and unhealthy tasks in both target groups.
    assert service["alarms"]["enable"] is True and service["alarms"]["rollback"] is True
    alarms = {a["state"]["name"]: a["inputs"] for a in program.of_type("aws:cloudwatch/metricAlarm:MetricAlarm")}
    watched = [alarms[name] for name in service["alarms"]["alarmNames"]]
    metrics = {a.get("metricName") or "+".join(q["metric"]["metricName"] for q in a["metricQueries"] if "metric" in q)
               for a in watched}  # fmt: skip
    assert metrics == {"HTTPCode_Target_5XX_Count", "TargetResponseTime", "UnHealthyHostCount+UnHealthyHostCount"}

    # The alternate target group and the production listener rule that ECS shifts between the two.
    groups = {g["state"]["arn"]: g for g in program.of_type("aws:lb/targetGroup:TargetGroup")}
    [balancer] = service["loadBalancers"]
    advanced = balancer["advancedConfiguration"]
    assert set(groups) == {balancer["targetGroupArn"], advanced["alternateTargetGroupArn"]} and len(groups) == 2
    rule = program.one("aws:lb/listenerRule:ListenerRule")
    assert advanced["productionListenerRule"] == rule["state"]["arn"]
    forward = rule["inputs"]["actions"][0]["forward"]["targetGroups"]
    assert {(g["arn"], g["weight"]) for g in forward} == {
        (balancer["targetGroupArn"], 100), (advanced["alternateTargetGroupArn"], 0)
    }  # fmt: skip
    [unhealthy] = [a for a in watched if "metricQueries" in a]
    queried = {q["metric"]["dimensions"]["TargetGroup"] for q in unhealthy["metricQueries"] if "metric" in q}
    assert queried == {g["state"]["arnSuffix"] for g in groups.values()}  # the canary's group too, whichever it is
    role = program.named("aws:iam/role:Role", "api-canary-infrastructure")
    assert advanced["roleArn"] == role["state"]["arn"]
    statements = program.policy_documents()["api-canary-infrastructure.policy"]["Statement"]
    scoped = {r for s in statements if s["Resource"] != "*" for r in _as_list(s["Resource"])}
    assert set(groups) <= scoped and len(scoped) == 3


def test_alarms_notify_the_alert_topic(program):
    topic_arn = program.one("aws:sns/topic:Topic")["state"]["arn"]
    # The canary's rollback alarms (api-canary-rollback-*) act through ECS, not the topic.
    alarms = [
        a for a in program.of_type("aws:cloudwatch/metricAlarm:MetricAlarm") if a["name"].startswith("monitoring-")
    ]
    metrics = {a["inputs"]["metricName"] for a in alarms}
    assert {"CPUUtilization", "HTTPCode_Target_5XX_Count", "TargetResponseTime", "HealthyHostCount"} <= metrics
    for alarm in alarms:
        assert alarm["inputs"]["alarmActions"] == [topic_arn], alarm["name"]
    subscriptions = program.of_type("aws:sns/topicSubscription:TopicSubscription")
    assert [s["inputs"]["endpoint"] for s in subscriptions] == (
        [_cfg(program, "alertEmail")] if _cfg(program, "alertEmail") else []
    )
    assert (
        program.one("aws:cloudwatch/dashboard:Dashboard")["inputs"]["dashboardName"] in program.outputs["dashboard_url"]
    )


def test_iam_policies_name_their_actions_and_resources(program):
    documents = program.policy_documents()
    assert len(documents) >= 7  # 3 roles' trust + 3 inline policies + the bucket policy
    for name, document in documents.items():
        for statement in document["Statement"]:
            if statement["Effect"] != "Allow":
                continue
            actions = _as_list(statement["Action"])
            assert not [a for a in actions if "*" in a], f"{name}: wildcard action in {statement}"
            if "*" in _as_list(statement.get("Resource", [])):
                # metrics only by namespace condition; the rest are actions IAM cannot scope to a resource
                scoped_by_namespace = actions == ["cloudwatch:PutMetricData"] and statement["Condition"] == {
                    "StringEquals": {"cloudwatch:namespace": "IMDBSentiment/Monitoring"}
                }
                assert set(actions) <= UNSCOPABLE_ACTIONS or scoped_by_namespace, f"{name}: '*' resource in {statement}"


def test_iam_policies_pass_parliament(program, parliament_findings):
    # Parliament lints identity policies (and the bucket policy, which has a Resource); trust policies have no
    # Resource by design, so parliament calls them malformed: they get the structural check below instead.
    documents = {n: d for n, d in program.policy_documents().items() if not n.endswith(".assumeRolePolicy")}
    assert len(documents) >= 4
    findings = {name: parliament_findings(doc) for name, doc in documents.items()}
    assert not {name: f for name, f in findings.items() if f}


def test_roles_trust_exactly_one_aws_service(program):
    expected = {
        "training-role": "ec2.amazonaws.com",
        "api-execution": "ecs-tasks.amazonaws.com",
        "api-task": "ecs-tasks.amazonaws.com",
        "model-monitoring-execution": "ecs-tasks.amazonaws.com",
        "model-monitoring-task": "ecs-tasks.amazonaws.com",
        "model-monitoring-scheduler": "scheduler.amazonaws.com",
        "continuous-training-launcher": "states.amazonaws.com",
        "continuous-training-on-drift": "events.amazonaws.com",
    }
    if _cfg(program, "retrainSchedule"):
        expected["continuous-training-schedule"] = "scheduler.amazonaws.com"
    if _cfg(program, "deploymentStrategy") == "CANARY":
        expected["api-canary-infrastructure"] = "ecs.amazonaws.com"
    trusts = {r["name"]: json.loads(r["inputs"]["assumeRolePolicy"]) for r in program.of_type("aws:iam/role:Role")}
    assert set(trusts) == set(expected)
    for name, document in trusts.items():
        (statement,) = document["Statement"]
        # the scheduler acts for the whole service: it may assume its role only on this account's behalf
        condition = statement.pop("Condition", None)
        assert condition == ({"StringEquals": {"aws:SourceAccount": ACCOUNT}} if "scheduler" in name else None)
        assert statement == {"Effect": "Allow", "Principal": {"Service": expected[name]}, "Action": "sts:AssumeRole"}


def test_training_instance_has_no_inbound_access_and_requires_imdsv2(program):
    template = program.one("aws:ec2/launchTemplate:LaunchTemplate")["inputs"]
    assert template["metadataOptions"]["httpTokens"] == "required"
    assert template["instanceInitiatedShutdownBehavior"] == "terminate"
    assert template["instanceType"] == _cfg(program, "trainingInstanceType")
    assert bool(template.get("instanceMarketOptions")) is _cfg(program, "trainingSpot")
    assert all(m["ebs"]["encrypted"] == "true" for m in template["blockDeviceMappings"])
    (interface,) = template["networkInterfaces"]
    (group_id,) = interface["securityGroups"]
    assert _ingress_rules(program, group_id) == []
    _assert_no_inline_ingress(program, group_id)
    assert program.outputs["training_launch_template_id"] == program.one("aws:ec2/launchTemplate:LaunchTemplate")["id"]


def test_training_launcher_runs_only_the_training_template_and_passes_only_its_role(program):
    template = program.one("aws:ec2/launchTemplate:LaunchTemplate")
    template_arn = f"arn:aws:ec2:eu-west-1:123456789012:launch-template/{template['id']}"
    training_role_arn = program.outputs["training_role_arn"]
    launcher = program.one("aws:sfn/stateMachine:StateMachine")
    [(_, task)] = json.loads(launcher["inputs"]["definition"])["States"].items()
    assert task["Resource"] == "arn:aws:states:::aws-sdk:ec2:runInstances"
    assert task["Parameters"]["LaunchTemplate"]["LaunchTemplateId"] == template["id"]

    documents = program.policy_documents()
    statements = documents["continuous-training-launcher.policy"]["Statement"]
    actions = {action for statement in statements for action in _as_list(statement["Action"])}
    assert actions == {"ec2:RunInstances", "ec2:CreateTags", "iam:PassRole"}
    for statement in statements:
        resources = _as_list(statement["Resource"])
        if statement["Action"] == "ec2:RunInstances":
            assert template_arn in resources and not [
                r for r in resources if "launch-template/" in r and r != template_arn
            ]
            assert statement["Condition"]["ArnEquals"] == {"ec2:LaunchTemplate": template_arn}
            assert statement["Condition"]["Bool"] == {"ec2:IsLaunchTemplateResource": "true"}
        elif statement["Action"] == "iam:PassRole":
            assert resources == [training_role_arn]
        else:
            assert statement["Condition"] == {"StringEquals": {"ec2:CreateAction": "RunInstances"}}
    triggers = [name for name in documents if name.startswith("continuous-training-") and name.endswith(".policy")]
    assert len(triggers) == (3 if _cfg(program, "retrainSchedule") else 2)
    for name in triggers:
        if name != "continuous-training-launcher.policy":
            [statement] = documents[name]["Statement"]
            assert (statement["Action"], statement["Resource"]) == ("states:StartExecution", launcher["state"]["arn"])


def test_training_starts_on_the_configured_schedule_and_on_drift_alarms(program):
    schedules = [
        s for s in program.of_type("aws:scheduler/schedule:Schedule") if s["name"].startswith("continuous-training")
    ]
    launcher_arn = program.one("aws:sfn/stateMachine:StateMachine")["state"]["arn"]
    if _cfg(program, "retrainSchedule"):
        [schedule] = schedules
        assert schedule["inputs"]["scheduleExpression"] == _cfg(program, "retrainSchedule")
        assert schedule["inputs"]["target"]["arn"] == launcher_arn
    else:
        assert schedules == []
    pattern = json.loads(program.one("aws:cloudwatch/eventRule:EventRule")["inputs"]["eventPattern"])
    assert pattern["detail"]["alarmName"] == [{"prefix": f"imdb-sentiment-{program.stack}-drift"}]
    assert pattern["detail"]["state"] == {"value": ["ALARM"]}
    assert program.one("aws:cloudwatch/eventTarget:EventTarget")["inputs"]["arn"] == launcher_arn


def test_training_user_data_targets_this_stack_and_passes_shell_checks(program, shell_check):
    template = program.one("aws:ec2/launchTemplate:LaunchTemplate")["inputs"]
    script = base64.b64decode(template["userData"]).decode()
    assert f"readonly BUCKET={program.outputs['bucket']}" in script
    assert f"readonly IMAGE={program.outputs['image']}" in script
    assert f"readonly SERVING_MODEL_VERSION={_cfg(program, 'modelVersion')}" in script
    assert 'models gate --candidate "$MODEL_URI" "${baseline[@]}" --data "$DATA_URI" --record' in script
    assert "shutdown -h now" in script and "trap finish EXIT" in script
    shell_check(script)


@pytest.mark.parametrize("stack", STACKS)
def test_stack_files_set_only_declared_keys_of_the_declared_type(stack):
    """A typo in a stack file would otherwise be ignored silently and the default used instead."""
    schema = yaml.safe_load((REPO_ROOT / "Pulumi.yaml").read_text())["config"]
    python_types = {"string": str, "integer": int, "boolean": bool}
    config = yaml.safe_load((REPO_ROOT / f"Pulumi.{stack}.yaml").read_text())["config"]
    for key, value in config.items():
        namespace, _, name = key.partition(":")
        if namespace == "aws":
            assert name == "region", f"{key}: provider settings belong in __main__.py's explicit provider"
            continue
        assert namespace == "imdb-sentiment" and name in schema, f"{key} is not declared in Pulumi.yaml"
        assert type(value) is python_types[schema[name]["type"]], f"{key}: {value!r} is not a {schema[name]['type']}"


def test_every_schema_key_is_typed_described_and_defaults_to_its_type():
    schema = yaml.safe_load((REPO_ROOT / "Pulumi.yaml").read_text())["config"]
    python_types = {"string": str, "integer": int, "boolean": bool}
    for key, spec in schema.items():
        assert spec.get("description"), f"{key} has no description"
        if "default" in spec:
            assert type(spec["default"]) is python_types[spec["type"]], f"{key}: default is not a {spec['type']}"


# Ten minutes of what each metric publishes (one value a minute, None: no data point at all); a metric a
# scenario leaves out (the drift metrics: no monitoring run in those ten minutes) publishes nothing.
NO_DATA: list[float | None] = [None] * 10
TOTAL_OUTAGE = {  # the release never turns healthy: no task registers, the load balancer answers 503
    "HealthyHostCount": [None] * 10,
    "UnHealthyHostCount": [0.0] * 10,
    "HTTPCode_ELB_5XX_Count": [40.0] * 10,
    "HTTPCode_Target_5XX_Count": [None] * 10,
    "TargetResponseTime": [None] * 10,
    "CPUUtilization": [None] * 10,
    "RunningTaskCount": [0.0] * 10,
}


def _quiet_night(min_tasks: int) -> dict[str, list[float | None]]:
    """Healthy tasks and no traffic: the request metrics publish nothing."""
    return {
        "HealthyHostCount": [float(min_tasks)] * 10,
        "UnHealthyHostCount": [0.0] * 10,
        "HTTPCode_ELB_5XX_Count": [None] * 10,
        "HTTPCode_Target_5XX_Count": [None] * 10,
        "TargetResponseTime": [None] * 10,
        "CPUUtilization": [2.0] * 10,
        "RunningTaskCount": [float(min_tasks)] * 10,
    }


def test_a_total_outage_fires_the_health_5xx_and_task_count_alarms(program):
    alarms = [a["inputs"] for a in program.of_type("aws:cloudwatch/metricAlarm:MetricAlarm")]
    firing = {
        alarm.get("metricName")
        for alarm in alarms
        if aws_rules.alarm_fires(alarm, TOTAL_OUTAGE.get(alarm.get("metricName"), NO_DATA))
    }
    assert {"HealthyHostCount", "HTTPCode_ELB_5XX_Count", "RunningTaskCount"} <= firing


def test_a_quiet_healthy_service_raises_no_alarm(program):
    quiet = _quiet_night(_cfg(program, "serviceMinCount"))
    alarms = program.of_type("aws:cloudwatch/metricAlarm:MetricAlarm")
    firing = [
        a["name"]
        for a in alarms
        if aws_rules.alarm_fires(a["inputs"], quiet.get(a["inputs"].get("metricName"), NO_DATA))
    ]
    assert firing == []


def test_the_alarm_evaluation_follows_missing_data_rules():
    alarm = {"comparisonOperator": "LessThanThreshold", "threshold": 1, "evaluationPeriods": 5, "datapointsToAlarm": 3}
    assert aws_rules.alarm_fires({**alarm, "treatMissingData": "breaching"}, [None] * 5)
    assert not aws_rules.alarm_fires({**alarm, "treatMissingData": "notBreaching"}, [None] * 5)
    assert not aws_rules.alarm_fires({**alarm, "treatMissingData": "breaching"}, [0, 0, 1, 1, 1])
    assert aws_rules.alarm_fires({**alarm, "treatMissingData": "missing"}, [0, 0, 0, None, None])


def test_model_monitoring_follows_the_stack_config(program):
    schedules = [
        s for s in program.of_type("aws:scheduler/schedule:Schedule") if s["name"].startswith("model-monitoring")
    ]
    expression = _cfg(program, "monitoringSchedule")
    assert [s["inputs"]["scheduleExpression"] for s in schedules] == ([expression] if expression else [])
    task = program.named("aws:ecs/taskDefinition:TaskDefinition", "model-monitoring-task")
    (job,) = json.loads(task["inputs"]["containerDefinitions"])
    assert job["image"] == program.outputs["image"]
    assert job["command"][job["command"].index("--model") + 1] == program.outputs["model_uri"]
    assert job["command"][job["command"].index("--hours") + 1] == str(_cfg(program, "monitoringWindowHours"))
    api = program.named("aws:ecs/taskDefinition:TaskDefinition", "api-task")
    (container,) = json.loads(api["inputs"]["containerDefinitions"])
    environment = {e["name"]: e["value"] for e in container["environment"]}
    assert environment["CAPTURE_PERCENT"] == str(_cfg(program, "capturePercent"))
    assert environment["CAPTURE_URI"] == f"s3://{program.outputs['bucket']}/capture/"
    assert environment["CAPTURE_TEXT"] == str(_cfg(program, "captureText")).lower()
    rules = program.one("aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration")["inputs"]["rules"]
    (expiry,) = [r for r in rules if r.get("expiration")]
    assert (expiry["filter"]["prefix"], expiry["expiration"]["days"]) == (
        "capture/",
        _cfg(program, "captureExpiryDays"),
    )
    drift_alarms = [
        a for a in program.of_type("aws:cloudwatch/metricAlarm:MetricAlarm") if a["name"].startswith("model-")
    ]
    assert len(drift_alarms) == 4
    assert {a["inputs"]["dimensions"]["Stack"] for a in drift_alarms} == {program.stack}
