"""Model monitoring: the scheduled `python -m workload monitor` job, its alarms and the API's data-capture settings.

The API records a share of its requests under `capture/` (see `capture_environment`); an EventBridge Scheduler
schedule starts the monitor as a one-off Fargate task of the same image in the API's cluster, which compares the
served model's captured traffic with the bundle's baseline, writes its report under `logs/monitoring/` and
publishes each check to CloudWatch, where one alarm per check notifies the alert topic.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_aws as aws

from components import policies, recipes
from components.serving import APP_USER
from components.storage import CAPTURE_PREFIX, LOGS_PREFIX, MODELS_PREFIX

METRIC_NAMESPACE = "IMDBSentiment/Monitoring"
REPORT_PREFIX = f"{LOGS_PREFIX}monitoring/"
# Each check the job publishes and the value at which it alarms: the job's own default drift thresholds
# (workload.monitoring.settings; tests/infra/test_model_monitoring.py keeps both in step).
DRIFT_THRESHOLDS = {"ScorePSI": 0.2, "LengthPSI": 0.2, "PositiveRateChange": 0.2, "UnknownRateChange": 0.05}
# The job publishes about once per schedule period; a day-long alarm period (CloudWatch's longest for one
# evaluation) keeps a drift alarm raised between runs instead of flapping back to OK on the missing data.
ALARM_PERIOD_SECONDS = 86_400
JOB_CPU, JOB_MEMORY = 512, 1024  # reads numpy arrays of a day's records; no model is loaded
_SCHEDULE = re.compile(r"(rate|cron|at)\(.+\)")


def capture_environment(bucket_name: pulumi.Input[str], percent: int, include_text: bool) -> pulumi.Output[dict]:
    """The API container's data-capture settings (workload.serving.settings)."""
    return pulumi.Output.from_input(bucket_name).apply(
        lambda bucket: {
            "CAPTURE_PERCENT": str(percent),
            "CAPTURE_URI": f"s3://{bucket}/{CAPTURE_PREFIX}",
            "CAPTURE_TEXT": "true" if include_text else "false",
        }
    )


@dataclass(frozen=True)
class ModelMonitoringArgs:
    cluster_arn: pulumi.Input[str]
    """The ECS cluster the job's one-off tasks run in (the API's: one cluster, Container Insights on)."""
    vpc_id: pulumi.Input[str]
    subnet_ids: Sequence[pulumi.Input[str]]
    assign_public_ip: bool
    image_ref: pulumi.Input[str]
    repository_arn: pulumi.Input[str]
    bucket_name: pulumi.Input[str]
    bucket_arn: pulumi.Input[str]
    kms_key_arn: pulumi.Input[str] | None
    model_uri: pulumi.Input[str]
    alarm_topic_arn: pulumi.Input[str]
    region: str
    schedule: str
    """An EventBridge Scheduler expression (`rate(1 day)`, `cron(0 * * * ? *)`); empty turns the job off."""
    window_hours: int
    log_retention_days: int

    def __post_init__(self) -> None:
        if self.schedule and not _SCHEDULE.fullmatch(self.schedule):
            raise ValueError(
                f"monitoringSchedule must be empty, rate(...), cron(...) or at(...), got {self.schedule!r}"
            )
        if self.window_hours < 1:
            raise ValueError(f"monitoringWindowHours must be at least 1, got {self.window_hours}")


class ModelMonitoring(pulumi.ComponentResource):
    task_definition_arn: pulumi.Output[str]
    cluster_arn: pulumi.Output[str]
    report_uri: pulumi.Output[str]

    def __init__(self, name: str, args: ModelMonitoringArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("imdb-sentiment:monitoring:ModelMonitoring", name, None, opts)
        account_id = aws.get_caller_identity_output(opts=pulumi.InvokeOutputOptions(parent=self)).account_id

        log_group = recipes.log_group(self, name, args.log_retention_days)
        execution_role = recipes.role_with_inline_policy(
            self,
            f"{name}-execution",
            "ecs-tasks.amazonaws.com",
            pulumi.Output.all(repository_arn=args.repository_arn, log_group_arn=log_group.arn).apply(
                lambda a: policies.execution_policy(**a)
            ),
        )
        task_role = recipes.role_with_inline_policy(
            self,
            f"{name}-task",
            "ecs-tasks.amazonaws.com",
            pulumi.Output.all(bucket_arn=args.bucket_arn, kms_key_arn=args.kms_key_arn).apply(
                lambda a: policies.monitoring_job_policy(
                    read_prefixes=[CAPTURE_PREFIX, MODELS_PREFIX],
                    report_prefix=REPORT_PREFIX,
                    metric_namespace=METRIC_NAMESPACE,
                    **a,
                )
            ),
        )
        self.report_uri = pulumi.Output.concat("s3://", args.bucket_name, f"/{REPORT_PREFIX}latest")
        task_definition = recipes.fargate_task_definition(
            self,
            name,
            cpu=JOB_CPU,
            memory=JOB_MEMORY,
            execution_role=execution_role,
            task_role=task_role,
            container_definitions=pulumi.Output.all(
                image=args.image_ref,
                bucket=args.bucket_name,
                model_uri=args.model_uri,
                report_uri=self.report_uri,
                log_group=log_group.name,
            ).apply(lambda a: json.dumps([self._container(args, **a)])),
        )
        scheduler_role = recipes.role_with_inline_policy(
            self,
            f"{name}-scheduler",
            "scheduler.amazonaws.com",
            pulumi.Output.all(
                task_definition_arn=task_definition.arn,
                cluster_arn=args.cluster_arn,
                role_arns=pulumi.Output.all(execution_role.arn, task_role.arn),
            ).apply(lambda a: policies.monitoring_scheduler_policy(**a)),
            source_account=account_id,
        )
        if args.schedule:
            self._schedule(name, args, task_definition, scheduler_role)
        self._alarms(name, args)

        self.task_definition_arn = task_definition.arn
        self.cluster_arn = pulumi.Output.from_input(args.cluster_arn)
        self.register_outputs(
            {
                "task_definition_arn": self.task_definition_arn,
                "cluster_arn": self.cluster_arn,
                "report_uri": self.report_uri,
            }
        )

    @staticmethod
    def _container(
        args: ModelMonitoringArgs, *, image: str, bucket: str, model_uri: str, report_uri: str, log_group: str
    ) -> dict[str, Any]:
        command = [
            "monitor", "--model", model_uri, "--capture", f"s3://{bucket}/{CAPTURE_PREFIX}",
            "--hours", str(args.window_hours), "--output", report_uri, "--publish-metrics",
        ]  # fmt: skip
        return {
            "name": "monitor",
            "image": image,
            "essential": True,
            "user": APP_USER,
            "readonlyRootFilesystem": True,
            "entryPoint": ["python", "-m", "workload"],  # the image's own entry point is `serve`
            "command": command,
            "environment": [
                {"name": "STACK_NAME", "value": pulumi.get_stack()},  # the metrics' Stack dimension
                {"name": "XDG_CACHE_HOME", "value": "/tmp/cache"},  # the bundle cache, on the writable volume
            ],
            "mountPoints": [{"sourceVolume": "scratch", "containerPath": "/tmp", "readOnly": False}],
            "logConfiguration": {
                "logDriver": "awslogs",
                "options": {
                    "awslogs-group": log_group,
                    "awslogs-region": args.region,
                    "awslogs-stream-prefix": "monitor",
                },
            },
        }

    def _schedule(
        self, name: str, args: ModelMonitoringArgs, task_definition: aws.ecs.TaskDefinition,
        role: aws.iam.Role,
    ) -> None:  # fmt: skip
        security_group = aws.ec2.SecurityGroup(
            f"{name}-job", vpc_id=args.vpc_id, description="Monitoring job: no inbound, HTTPS out", opts=child_of(self)
        )
        aws.vpc.SecurityGroupEgressRule(
            f"{name}-job-https-out",
            security_group_id=security_group.id,
            ip_protocol="tcp",
            from_port=443,
            to_port=443,
            cidr_ipv4="0.0.0.0/0",  # S3, CloudWatch, ECR and logs endpoints (or their VPC endpoints)
            opts=child_of(self),
        )
        aws.scheduler.Schedule(
            f"{name}-schedule",
            description=f"{pulumi.get_project()}/{pulumi.get_stack()}: compare captured traffic with the baseline",
            schedule_expression=args.schedule,
            flexible_time_window=aws.scheduler.ScheduleFlexibleTimeWindowArgs(mode="OFF"),
            target=aws.scheduler.ScheduleTargetArgs(
                arn=args.cluster_arn,
                role_arn=role.arn,
                ecs_parameters=aws.scheduler.ScheduleTargetEcsParametersArgs(
                    task_definition_arn=task_definition.arn,
                    launch_type="FARGATE",
                    task_count=1,
                    network_configuration=aws.scheduler.ScheduleTargetEcsParametersNetworkConfigurationArgs(
                        subnets=list(args.subnet_ids),
                        security_groups=[security_group.id],
                        assign_public_ip=args.assign_public_ip,
                    ),
                ),
                # A missed run is covered by the next one's window; retrying for long only piles runs up.
                retry_policy=aws.scheduler.ScheduleTargetRetryPolicyArgs(
                    maximum_retry_attempts=2, maximum_event_age_in_seconds=3600
                ),
            ),
            opts=child_of(self),
        )

    def _alarms(self, name: str, args: ModelMonitoringArgs) -> None:
        for metric, threshold in DRIFT_THRESHOLDS.items():
            aws.cloudwatch.MetricAlarm(
                f"{name}-{re.sub(r'(?<!^)(?=[A-Z][a-z])', '-', metric).lower()}",
                alarm_description=f"Model drift: {metric} of the served model's traffic reached {threshold:g}",
                namespace=METRIC_NAMESPACE,
                metric_name=metric,
                dimensions={"Stack": pulumi.get_stack()},  # not the model version: the alarm survives a promotion
                statistic="Maximum",
                period=ALARM_PERIOD_SECONDS,
                evaluation_periods=1,
                comparison_operator="GreaterThanOrEqualToThreshold",
                threshold=threshold,
                treat_missing_data="notBreaching",  # no run, or too little traffic, is not drift
                alarm_actions=[args.alarm_topic_arn],
                ok_actions=[args.alarm_topic_arn],
                opts=child_of(self),
            )


def child_of(parent: pulumi.Resource) -> pulumi.ResourceOptions:
    return pulumi.ResourceOptions(parent=parent)


def drift_widgets(region: str) -> list[dict[str, Any]]:
    """Dashboard widgets for the drift checks (with their thresholds) and the records each run compared."""

    def widget(title: str, metrics: list[str], annotations: list[dict[str, Any]]) -> dict[str, Any]:
        return {
            "type": "metric",
            "width": 12,
            "height": 6,
            "properties": {
                "title": title,
                "region": region,
                "stat": "Maximum",
                "period": 3600,
                "metrics": [[METRIC_NAMESPACE, metric, "Stack", pulumi.get_stack()] for metric in metrics],
                "annotations": {"horizontal": annotations},
            },
        }

    rate_metrics = ["PositiveRateChange", "UnknownRateChange"]
    psi_lines = [{"label": "warning", "value": 0.1}, {"label": "drift", "value": DRIFT_THRESHOLDS["ScorePSI"]}]
    return [
        widget("Model drift: PSI of scores and input lengths", ["ScorePSI", "LengthPSI"], psi_lines),
        widget(
            "Model drift: positive-rate and unknown-token-rate changes",
            rate_metrics,
            [{"label": f"{metric} drift", "value": DRIFT_THRESHOLDS[metric]} for metric in rate_metrics],
        ),
        widget("Captured records per monitoring run", ["CapturedRecords"], []),
    ]
