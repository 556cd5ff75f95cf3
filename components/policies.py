"""IAM policy documents as plain functions of ARNs, so the same code renders them for AWS and for the tests.

Least privilege throughout: every statement names its resources; the only `"*"` resource in an identity policy
is the one AWS requires (`ecr:GetAuthorizationToken` cannot be scoped to a repository). In a key policy `"*"`
means the key the policy is attached to.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

PolicyDocument = dict[str, Any]

# AWS only accepts `Resource: "*"` for this action; it returns a registry-wide token that the
# repository-scoped pull actions then gate.
ECR_AUTH_STATEMENT: dict[str, Any] = {
    "Sid": "RegistryLogin",
    "Effect": "Allow",
    "Action": "ecr:GetAuthorizationToken",
    "Resource": "*",
}
ECR_PULL_ACTIONS = ["ecr:BatchCheckLayerAvailability", "ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"]


def document(statements: Sequence[dict[str, Any]]) -> PolicyDocument:
    return {"Version": "2012-10-17", "Statement": list(statements)}


def to_json(doc: PolicyDocument) -> str:
    return json.dumps(doc, sort_keys=True)


def assume_role_policy(service: str, source_account: str | None = None) -> PolicyDocument:
    """Trust policy that lets one AWS service principal (e.g. `ec2.amazonaws.com`) assume the role; with
    `source_account`, only on behalf of that account (the confused-deputy guard for account-wide services)."""
    statement: dict[str, Any] = {"Effect": "Allow", "Principal": {"Service": service}, "Action": "sts:AssumeRole"}
    if source_account:
        statement["Condition"] = {"StringEquals": {"aws:SourceAccount": source_account}}
    return document([statement])


def _objects(bucket_arn: str, prefixes: Sequence[str]) -> list[str]:
    return [f"{bucket_arn}/{prefix}*" for prefix in prefixes]


def _list_prefixes(bucket_arn: str, prefixes: Sequence[str]) -> dict[str, Any]:
    # ListBucket is a bucket-level action; the s3:prefix condition keeps listing inside the granted prefixes.
    return {
        "Sid": "ListGrantedPrefixes",
        "Effect": "Allow",
        "Action": "s3:ListBucket",
        "Resource": bucket_arn,
        "Condition": {"StringLike": {"s3:prefix": [f"{prefix}*" for prefix in prefixes]}},
    }


def _kms(key_arn: str | None, actions: Sequence[str]) -> list[dict[str, Any]]:
    if not key_arn:
        return []
    return [{"Sid": "DataLakeKey", "Effect": "Allow", "Action": list(actions), "Resource": key_arn}]


def _image_pull_statement(repository_arn: str) -> dict[str, Any]:
    return {"Sid": "PullWorkloadImage", "Effect": "Allow", "Action": ECR_PULL_ACTIONS, "Resource": repository_arn}


def _log_stream_statement(log_group_arn: str) -> dict[str, Any]:
    return {
        "Sid": "WriteOwnLogGroup",
        "Effect": "Allow",
        "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
        "Resource": f"{log_group_arn}:log-stream:*",
    }


def training_policy(
    *,
    bucket_arn: str,
    read_prefixes: Sequence[str],
    write_prefixes: Sequence[str],
    repository_arn: str,
    log_group_arn: str,
    kms_key_arn: str | None = None,
) -> PolicyDocument:
    """What one training run needs: read its inputs, write its outputs, pull the image, ship its log."""
    statements = [
        _list_prefixes(bucket_arn, read_prefixes),
        {
            "Sid": "ReadInputs",
            "Effect": "Allow",
            "Action": "s3:GetObject",
            "Resource": _objects(bucket_arn, read_prefixes),
        },
        {
            "Sid": "WriteOutputs",
            "Effect": "Allow",
            "Action": ["s3:PutObject", "s3:AbortMultipartUpload"],
            "Resource": _objects(bucket_arn, write_prefixes),
        },
        ECR_AUTH_STATEMENT,
        _image_pull_statement(repository_arn),
        _log_stream_statement(log_group_arn),
        {
            # The CloudWatch agent checks its stream exists before writing.
            "Sid": "DescribeOwnLogStreams",
            "Effect": "Allow",
            "Action": "logs:DescribeLogStreams",
            "Resource": f"{log_group_arn}:*",
        },
        *_kms(kms_key_arn, ["kms:Decrypt", "kms:GenerateDataKey"]),
    ]
    return document(statements)


def task_policy(
    *, bucket_arn: str, models_prefix: str, capture_prefix: str, kms_key_arn: str | None = None
) -> PolicyDocument:
    """The API container may only read model bundles and add data-capture records."""
    return document(
        [
            _list_prefixes(bucket_arn, [models_prefix]),
            {
                "Sid": "ReadModelBundles",
                "Effect": "Allow",
                "Action": "s3:GetObject",
                "Resource": _objects(bucket_arn, [models_prefix]),
            },
            {
                "Sid": "WriteCapturedRequests",
                "Effect": "Allow",
                "Action": "s3:PutObject",
                "Resource": _objects(bucket_arn, [capture_prefix]),
            },
            *_kms(kms_key_arn, ["kms:Decrypt", "kms:GenerateDataKey"]),
        ]
    )


def monitoring_job_policy(
    *, bucket_arn: str, read_prefixes: Sequence[str], report_prefix: str, metric_namespace: str,
    kms_key_arn: str | None = None,
) -> PolicyDocument:  # fmt: skip
    """The scheduled `monitor` task: read captured records and bundles, write its report, publish its metrics."""
    return document(
        [
            _list_prefixes(bucket_arn, read_prefixes),
            {
                "Sid": "ReadCaptureAndModels",
                "Effect": "Allow",
                "Action": "s3:GetObject",
                "Resource": _objects(bucket_arn, read_prefixes),
            },
            {
                "Sid": "WriteReports",
                "Effect": "Allow",
                "Action": "s3:PutObject",
                "Resource": _objects(bucket_arn, [report_prefix]),
            },
            {
                # PutMetricData has no resource-level permissions; the namespace condition is its only scope.
                "Sid": "PublishDriftMetrics",
                "Effect": "Allow",
                "Action": "cloudwatch:PutMetricData",
                "Resource": "*",
                "Condition": {"StringEquals": {"cloudwatch:namespace": metric_namespace}},
            },
            *_kms(kms_key_arn, ["kms:Decrypt", "kms:GenerateDataKey"]),
        ]
    )


def monitoring_scheduler_policy(
    *, task_definition_arn: str, cluster_arn: str, role_arns: Sequence[str]
) -> PolicyDocument:
    """EventBridge Scheduler may start the monitoring task (any revision of its family, in its cluster only) and
    hand ECS that task's two roles."""
    family = task_definition_arn.rsplit(":", 1)[0]  # drop the revision
    return document(
        [
            {
                "Sid": "RunMonitoringTask",
                "Effect": "Allow",
                "Action": "ecs:RunTask",
                "Resource": f"{family}:*",
                "Condition": {"ArnEquals": {"ecs:cluster": cluster_arn}},
            },
            {
                "Sid": "PassMonitoringTaskRoles",
                "Effect": "Allow",
                "Action": "iam:PassRole",
                "Resource": list(role_arns),
                "Condition": {"StringEquals": {"iam:PassedToService": "ecs-tasks.amazonaws.com"}},
            },
        ]
    )


def execution_policy(*, repository_arn: str, log_group_arn: str) -> PolicyDocument:
    """What ECS itself needs to start the task: pull the image and create the container's log stream."""
    return document(
        [
            ECR_AUTH_STATEMENT,
            _image_pull_statement(repository_arn),
            _log_stream_statement(log_group_arn),
        ]
    )


def alarm_topic_key_policy(*, account_id: str, partition: str) -> PolicyDocument:
    """Key policy for the alarm topic's KMS key: the account administers the key through IAM (as AWS's default key
    policy does), and CloudWatch may encrypt and decrypt with it, for this account's alarms only.

    SNS calls KMS on behalf of the publisher, so CloudWatch itself needs these two actions; the AWS-managed
    `alias/aws/sns` key cannot grant them, which is why alarm topics need a customer-managed key.
    """
    return document(
        [
            {
                "Sid": "AccountAdministersKey",
                "Effect": "Allow",
                "Principal": {"AWS": f"arn:{partition}:iam::{account_id}:root"},
                "Action": "kms:*",
                "Resource": "*",
            },
            {
                "Sid": "CloudWatchAlarmsPublish",
                "Effect": "Allow",
                "Principal": {"Service": "cloudwatch.amazonaws.com"},
                "Action": ["kms:Decrypt", "kms:GenerateDataKey*"],
                "Resource": "*",
                # Confused-deputy guard: alarms in other accounts cannot use this key through CloudWatch.
                "Condition": {"StringEquals": {"aws:SourceAccount": account_id}},
            },
        ]
    )


def tls_only_bucket_policy(bucket_arn: str) -> PolicyDocument:
    """Deny every request to the bucket or its objects that does not arrive over TLS."""
    return document(
        [
            {
                "Sid": "DenyInsecureTransport",
                "Effect": "Deny",
                "Principal": "*",
                "Action": "s3:*",
                "Resource": [bucket_arn, f"{bucket_arn}/*"],
                "Condition": {"Bool": {"aws:SecureTransport": "false"}},
            }
        ]
    )


# What ec2:RunInstances checks when it launches from a template: the template, the new instance, volume and network
# interface, the template's subnet, security group and AMI, and for a Spot template the Spot request.
RUN_INSTANCES_RESOURCE_TYPES = (
    "instance", "volume", "network-interface", "subnet", "security-group", "spot-instances-request",
)  # fmt: skip


def launch_training_policy(*, launch_template_arn: str, training_role_arn: str) -> PolicyDocument:
    """What starts a training run: RunInstances from the one launch template, with nothing taken from the request.

    Every resource RunInstances checks must be launched through that template (`ec2:LaunchTemplate`) and come from
    it (`ec2:IsLaunchTemplateResource`, EC2's documented "no overrides" condition): a caller can neither use another
    template nor swap in another AMI, subnet or security group. The new instance's resources cannot be named in
    advance, hence their `*` ids under those conditions. The template tags the instance and volume, which needs
    CreateTags, but only as part of RunInstances. PassRole: the training role, to EC2 only.
    """
    partition, _, region, account = launch_template_arn.split(":")[1:5]
    ec2 = f"arn:{partition}:ec2:{region}"
    return document(
        [
            {
                "Sid": "RunOnlyTheTrainingTemplate",
                "Effect": "Allow",
                "Action": "ec2:RunInstances",
                "Resource": [
                    launch_template_arn,
                    *(f"{ec2}:{account}:{kind}/*" for kind in RUN_INSTANCES_RESOURCE_TYPES),
                    f"{ec2}::image/*",
                ],
                "Condition": {
                    "ArnEquals": {"ec2:LaunchTemplate": launch_template_arn},
                    "Bool": {"ec2:IsLaunchTemplateResource": "true"},
                },
            },
            {
                "Sid": "TagTheRunAtLaunch",
                "Effect": "Allow",
                "Action": "ec2:CreateTags",
                "Resource": [f"{ec2}:{account}:instance/*", f"{ec2}:{account}:volume/*"],
                "Condition": {"StringEquals": {"ec2:CreateAction": "RunInstances"}},
            },
            {
                "Sid": "PassTheTrainingRole",
                "Effect": "Allow",
                "Action": "iam:PassRole",
                "Resource": training_role_arn,
                "Condition": {"StringEquals": {"iam:PassedToService": "ec2.amazonaws.com"}},
            },
        ]
    )


def start_execution_policy(state_machine_arn: str) -> PolicyDocument:
    """What a trigger (the schedule, the drift rule) may do: start the one launcher state machine."""
    return document(
        [
            {
                "Sid": "StartTheLauncher",
                "Effect": "Allow",
                "Action": "states:StartExecution",
                "Resource": state_machine_arn,
            }
        ]
    )


def load_balancer_infrastructure_policy(*, target_group_arns: Sequence[str], listener_rule_arn: str) -> PolicyDocument:
    """What ECS needs to shift traffic in a canary deployment: AWS's AmazonECSInfrastructureRolePolicyForLoadBalancers,
    narrowed to this service's two target groups and its production listener rule. Describe calls cannot be scoped
    to a resource, so they keep `*`."""
    return document(
        [
            {
                "Sid": "ReadLoadBalancerState",
                "Effect": "Allow",
                "Action": [
                    "elasticloadbalancing:DescribeListeners", "elasticloadbalancing:DescribeRules",
                    "elasticloadbalancing:DescribeTargetGroups", "elasticloadbalancing:DescribeTargetHealth",
                ],
                "Resource": "*",
            },
            {
                "Sid": "RegisterTasksInTheServiceTargetGroups",
                "Effect": "Allow",
                "Action": ["elasticloadbalancing:RegisterTargets", "elasticloadbalancing:DeregisterTargets"],
                "Resource": list(target_group_arns),
            },
            {
                "Sid": "ShiftTrafficOnTheProductionRule",
                "Effect": "Allow",
                "Action": "elasticloadbalancing:ModifyRule",
                # `listener-rule/*/<lb>/<lb id>/...` matches only this rule, as the exact ARN would; written so because
                # IAM's ModifyRule lists both rule formats (app/ and net/) and parliament wants a resource for each.
                "Resource": listener_rule_arn.replace(":listener-rule/app/", ":listener-rule/*/", 1),
            },
        ]
    )  # fmt: skip
