"""The whole Pulumi program under mocks, once per stack file, checked against the project's invariants."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
RUNNER = Path(__file__).resolve().parent / "run_program_under_mocks.py"
STACKS = ["dev", "prod"]
REQUIRED_OUTPUTS = [
    "endpoint",
    "bucket",
    "repository_url",
    "image",
    "model_uri",
    "training_launch_template_id",
    "dashboard_url",
]


class Program:
    """What one run of `__main__.py` registered, with lookups by type."""

    def __init__(self, result: dict[str, Any]) -> None:
        self.stack: str = result["stack"]
        # What the program was given: the stack file over the Pulumi.yaml defaults.
        self.config: dict[str, Any] = result["config"]
        self.resources: list[dict[str, Any]] = result["resources"]
        self.outputs: dict[str, Any] = result["outputs"]
        self.ignore_changes: dict[str, list[str]] = result["ignore_changes"]

    def of_type(self, typ: str) -> list[dict[str, Any]]:
        return [r for r in self.resources if r["type"] == typ]

    def one(self, typ: str) -> dict[str, Any]:
        found = self.of_type(typ)
        assert len(found) == 1, f"{self.stack}: expected one {typ}, got {[r['name'] for r in found]}"
        return found[0]

    def named(self, typ: str, name: str) -> dict[str, Any]:
        return next(r for r in self.of_type(typ) if r["name"] == name)

    def policy_documents(self) -> dict[str, dict[str, Any]]:
        documents = {}
        for typ, key in (
            ("aws:iam/rolePolicy:RolePolicy", "policy"),
            ("aws:iam/role:Role", "assumeRolePolicy"),
            ("aws:s3/bucketPolicy:BucketPolicy", "policy"),
        ):
            for resource in self.of_type(typ):
                documents[f"{resource['name']}.{key}"] = json.loads(resource["inputs"][key])
        return documents


@pytest.fixture(scope="module", params=STACKS)
def program(request, tmp_path_factory) -> Program:
    stack_file = REPO_ROOT / f"Pulumi.{request.param}.yaml"
    out = tmp_path_factory.mktemp(request.param) / "program.json"
    # A fresh interpreter per stack: the Pulumi runtime's global state must not leak between stacks.
    completed = subprocess.run(
        [sys.executable, "-W", "ignore::DeprecationWarning", str(RUNNER), str(stack_file), str(out)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    return Program(json.loads(out.read_text()))


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
    (container,) = json.loads(program.one("aws:ecs/taskDefinition:TaskDefinition")["inputs"]["containerDefinitions"])
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
    assert rules, "the tasks need the ALB rule"
    for rule in rules:
        assert rule["referencedSecurityGroupId"] == alb_sg
        assert not rule.get("cidrIpv4") and not rule.get("cidrIpv6") and not rule.get("prefixListId")
        assert rule["fromPort"] == rule["toPort"] == 8080
    _assert_no_inline_ingress(program, task_sg)


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


def test_service_deploys_safely_and_scales_on_cpu(program):
    service = program.one("aws:ecs/service:Service")["inputs"]
    assert service["desiredCount"] == _cfg(program, "serviceDesiredCount")
    if program.stack == "prod":
        assert service["desiredCount"] >= 2
    assert service["deploymentCircuitBreaker"] == {"enable": True, "rollback": True}
    assert service["deploymentMinimumHealthyPercent"] == 100
    assert service["deploymentMaximumPercent"] == 200
    assert service["healthCheckGracePeriodSeconds"] > 0
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
    assert {"CPUUtilization", "HTTPCode_Target_5XX_Count", "TargetResponseTime", "UnHealthyHostCount"} <= metrics
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
                assert set(actions) <= UNSCOPABLE_ACTIONS, f"{name}: '*' resource in {statement}"


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
    schedules = program.of_type("aws:scheduler/schedule:Schedule")
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
