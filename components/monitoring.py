"""Monitoring for the API: CloudWatch alarms that notify an SNS topic, and one dashboard."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_aws as aws

from components import policies
from components.model_monitoring import drift_widgets


@dataclass(frozen=True)
class MonitoringArgs:
    cluster_name: pulumi.Input[str]
    service_name: pulumi.Input[str]
    load_balancer_arn_suffix: pulumi.Input[str]
    target_group_arn_suffix: pulumi.Input[str]
    min_task_count: int
    """The autoscaling floor: fewer running tasks than this is an incident."""
    region: str
    alert_email: str
    """Subscribed to the alarm topic when set (AWS emails a confirmation link first)."""
    cpu_alarm_percent: int
    error_5xx_per_minute: int
    p99_latency_ms: int


@dataclass(frozen=True)
class _Alarm:
    description: str
    namespace: str
    metric: str
    dimensions: dict[str, str]
    threshold: float
    statistic: str | None = None
    extended_statistic: str | None = None
    comparison: str = "GreaterThanThreshold"
    treat_missing_data: str = "notBreaching"
    """Most metrics go missing when there is no traffic, which is not an outage; the health and task counts are
    published all the time, so their absence means nothing is running."""


class Monitoring(pulumi.ComponentResource):
    topic_arn: pulumi.Output[str]
    dashboard_url: pulumi.Output[str]

    def __init__(self, name: str, args: MonitoringArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("imdb-sentiment:monitoring:Monitoring", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        # A customer-managed key (about $1/month): the AWS-managed alias/aws/sns key's policy does not let CloudWatch
        # use it, so alarms publishing to a topic encrypted with it would never deliver a notification.
        key = self._topic_key(name)
        topic = aws.sns.Topic(f"{name}-alerts", kms_master_key_id=key.arn, opts=child)
        if args.alert_email:
            aws.sns.TopicSubscription(
                f"{name}-alerts-email", topic=topic.arn, protocol="email", endpoint=args.alert_email, opts=child
            )

        for alarm_name, alarm in self._alarms(args).items():
            aws.cloudwatch.MetricAlarm(
                f"{name}-{alarm_name}",
                alarm_description=alarm.description,
                namespace=alarm.namespace,
                metric_name=alarm.metric,
                dimensions=alarm.dimensions,
                statistic=alarm.statistic,
                extended_statistic=alarm.extended_statistic,
                period=60,
                evaluation_periods=5,
                datapoints_to_alarm=3,
                comparison_operator=alarm.comparison,
                threshold=alarm.threshold,
                treat_missing_data=alarm.treat_missing_data,
                alarm_actions=[topic.arn],
                ok_actions=[topic.arn],
                opts=child,
            )

        dashboard = aws.cloudwatch.Dashboard(
            f"{name}-dashboard",
            dashboard_name=f"{name}-{pulumi.get_stack()}",
            dashboard_body=pulumi.Output.all(
                cluster=args.cluster_name,
                service=args.service_name,
                load_balancer=args.load_balancer_arn_suffix,
                target_group=args.target_group_arn_suffix,
            ).apply(lambda a: json.dumps(self._dashboard(region=args.region, **a))),
            opts=child,
        )
        self.topic_arn = topic.arn
        self.dashboard_url = dashboard.dashboard_name.apply(
            lambda dashboard_name: (
                f"https://{args.region}.console.aws.amazon.com/cloudwatch/home"
                f"?region={args.region}#dashboards/dashboard/{dashboard_name}"
            )
        )
        self.register_outputs({"topic_arn": self.topic_arn, "dashboard_url": self.dashboard_url})

    def _topic_key(self, name: str) -> aws.kms.Key:
        invoke = pulumi.InvokeOutputOptions(parent=self)
        identity = aws.get_caller_identity_output(opts=invoke)
        partition = aws.get_partition_output(opts=invoke)
        key = aws.kms.Key(
            f"{name}-alerts-key",
            description=f"{name} alarm topic encryption ({pulumi.get_project()}/{pulumi.get_stack()})",
            enable_key_rotation=True,
            # Messages rest in SNS only until delivered, so the shortest deletion window loses nothing.
            deletion_window_in_days=7,
            policy=pulumi.Output.all(account_id=identity.account_id, partition=partition.partition).apply(
                lambda a: policies.to_json(policies.alarm_topic_key_policy(**a))
            ),
            opts=pulumi.ResourceOptions(parent=self),
        )
        aws.kms.Alias(
            f"{name}-alerts-key",
            name=f"alias/{pulumi.get_project()}-{pulumi.get_stack()}-{name}-alerts",
            target_key_id=key.key_id,
            opts=pulumi.ResourceOptions(parent=self),
        )
        return key

    @staticmethod
    def _alarms(args: MonitoringArgs) -> dict[str, _Alarm]:
        service = {"ClusterName": args.cluster_name, "ServiceName": args.service_name}
        target = {"LoadBalancer": args.load_balancer_arn_suffix, "TargetGroup": args.target_group_arn_suffix}
        return {
            "cpu-high": _Alarm(
                f"API CPU above {args.cpu_alarm_percent} %: autoscaling is not keeping up",
                "AWS/ECS",
                "CPUUtilization",
                service,
                args.cpu_alarm_percent,
                statistic="Average",
            ),
            "5xx": _Alarm(
                f"API answered more than {args.error_5xx_per_minute} 5xx responses a minute",
                "AWS/ApplicationELB",
                "HTTPCode_Target_5XX_Count",
                target,
                args.error_5xx_per_minute,
                statistic="Sum",
            ),
            "p99-latency": _Alarm(
                f"API p99 latency above {args.p99_latency_ms} ms",
                "AWS/ApplicationELB",
                "TargetResponseTime",
                target,
                args.p99_latency_ms / 1000,
                extended_statistic="p99",
            ),
            "unhealthy-hosts": _Alarm(
                "At least one API task fails its /health check",
                "AWS/ApplicationELB",
                "UnHealthyHostCount",
                target,
                0,
                statistic="Maximum",
            ),
            # A total outage: UnHealthyHostCount stays 0 (or missing) when no task ever registers.
            "no-healthy-hosts": _Alarm(
                "No API task is healthy behind the load balancer: the API is down",
                "AWS/ApplicationELB",
                "HealthyHostCount",
                target,
                1,
                statistic="Minimum",
                comparison="LessThanThreshold",
                treat_missing_data="breaching",
            ),
            # The load balancer's own 5xx (503 with no healthy target, 502/504 from dead ones): targets never see them.
            "elb-5xx": _Alarm(
                f"The load balancer answered more than {args.error_5xx_per_minute} 5xx responses a minute itself",
                "AWS/ApplicationELB",
                "HTTPCode_ELB_5XX_Count",
                {"LoadBalancer": args.load_balancer_arn_suffix},
                args.error_5xx_per_minute,
                statistic="Sum",
            ),
            # Container Insights (turned on for the cluster in Serving) publishes the running count every minute.
            "tasks-below-minimum": _Alarm(
                f"Fewer than {args.min_task_count} API tasks running (the autoscaling floor)",
                "ECS/ContainerInsights",
                "RunningTaskCount",
                service,
                args.min_task_count,
                statistic="Minimum",
                comparison="LessThanThreshold",
                treat_missing_data="breaching",
            ),
        }

    @staticmethod
    def _dashboard(*, region: str, cluster: str, service: str, load_balancer: str, target_group: str) -> dict[str, Any]:
        alb = ["AWS/ApplicationELB"]
        target = ["LoadBalancer", load_balancer, "TargetGroup", target_group]

        def widget(title: str, metrics: list[list[Any]], stat: str = "Sum") -> dict[str, Any]:
            return {
                "type": "metric",
                "width": 12,
                "height": 6,
                "properties": {"title": title, "region": region, "stat": stat, "period": 60, "metrics": metrics},
            }

        return {
            "widgets": [
                widget("Requests", [[*alb, "RequestCount", *target]]),
                widget(
                    "Latency p50 / p99 (s)",
                    [
                        [*alb, "TargetResponseTime", *target, {"stat": "p50"}],
                        [*alb, "TargetResponseTime", *target, {"stat": "p99"}],
                    ],
                ),
                widget(
                    "5xx responses",
                    [
                        [*alb, "HTTPCode_Target_5XX_Count", *target],
                        [*alb, "HTTPCode_ELB_5XX_Count", "LoadBalancer", load_balancer],
                    ],
                ),
                widget(
                    "CPU and memory (%)",
                    [
                        ["AWS/ECS", "CPUUtilization", "ClusterName", cluster, "ServiceName", service],
                        ["AWS/ECS", "MemoryUtilization", "ClusterName", cluster, "ServiceName", service],
                    ],
                    stat="Average",
                ),
                widget(
                    "Running tasks",
                    [["ECS/ContainerInsights", "RunningTaskCount", "ClusterName", cluster, "ServiceName", service]],
                    stat="Average",
                ),
                *drift_widgets(region),
            ]
        }
