"""Canary releases: what an ECS service needs for its native CANARY deployment strategy behind an ALB, and the
alarms that roll a canary back.

ECS starts the new revision in the alternate target group, moves `canary_percent` of the production listener rule's
traffic to it, waits `canary_bake_minutes`, then moves the rest and keeps the old revision `deployment_bake_minutes`
longer. If a rollback alarm fires at any point (or the circuit breaker trips), ECS moves all traffic back to the
old revision. The alarms watch the load balancer as a whole (5xx, p99) and both target groups (unhealthy hosts),
because the two target groups swap roles with every deployment.
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from components import policies, recipes

STRATEGIES = ("ROLLING", "CANARY")


@dataclass(frozen=True)
class CanarySettings:
    canary_percent: int
    canary_bake_minutes: int
    deployment_bake_minutes: int
    error_5xx_per_minute: int
    p99_latency_ms: int

    def __post_init__(self) -> None:
        if not 1 <= self.canary_percent <= 99:
            raise ValueError(f"canaryPercent must be 1-99, got {self.canary_percent}")
        if self.canary_bake_minutes < 1 or self.deployment_bake_minutes < 0:
            raise ValueError("canaryBakeMinutes must be at least 1 and deploymentBakeMinutes at least 0")


def canary_settings(strategy: str, **settings: int) -> CanarySettings | None:
    """The canary settings for `deploymentStrategy` CANARY; None for ROLLING (the settings are then unused)."""
    if strategy not in STRATEGIES:
        raise ValueError(f"deploymentStrategy must be one of {', '.join(STRATEGIES)}, got {strategy!r}")
    return CanarySettings(**settings) if strategy == "CANARY" else None


@dataclass(frozen=True)
class CanaryArgs:
    settings: CanarySettings
    listener_arn: pulumi.Input[str]
    """The listener that serves production traffic (HTTPS with a certificate, else HTTP)."""
    load_balancer_arn_suffix: pulumi.Input[str]
    target_groups: tuple[aws.lb.TargetGroup, aws.lb.TargetGroup]
    """(production at creation, alternate): ECS alternates between them."""


class CanaryRelease(pulumi.ComponentResource):
    advanced_configuration: aws.ecs.ServiceLoadBalancerAdvancedConfigurationArgs
    deployment_configuration: aws.ecs.ServiceDeploymentConfigurationArgs
    alarms: aws.ecs.ServiceAlarmsArgs

    def __init__(self, name: str, args: CanaryArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("imdb-sentiment:serving:CanaryRelease", name, None, opts)
        production, alternate = args.target_groups
        rule = aws.lb.ListenerRule(
            f"{name}-production",
            listener_arn=args.listener_arn,
            priority=1,
            conditions=[aws.lb.ListenerRuleConditionArgs(path_pattern=aws.lb.ListenerRuleConditionPathPatternArgs(
                values=["/*"]))],
            actions=[aws.lb.ListenerRuleActionArgs(type="forward", forward=aws.lb.ListenerRuleActionForwardArgs(
                target_groups=[
                    aws.lb.ListenerRuleActionForwardTargetGroupArgs(arn=production.arn, weight=100),
                    aws.lb.ListenerRuleActionForwardTargetGroupArgs(arn=alternate.arn, weight=0),
                ]))],
            # ECS owns the weights from the first deployment on; `pulumi up` must not shift traffic back.
            opts=pulumi.ResourceOptions(parent=self, ignore_changes=["actions"]),
        )  # fmt: skip
        role = recipes.role_with_inline_policy(
            self,
            f"{name}-infrastructure",
            "ecs.amazonaws.com",
            pulumi.Output.all(production.arn, alternate.arn, rule.arn).apply(
                lambda arns: policies.load_balancer_infrastructure_policy(
                    target_group_arns=arns[:2], listener_rule_arn=arns[2]
                )
            ),
        )
        alarm_names = [alarm.name for alarm in self._rollback_alarms(name, args)]

        self.advanced_configuration = aws.ecs.ServiceLoadBalancerAdvancedConfigurationArgs(
            alternate_target_group_arn=alternate.arn, production_listener_rule=rule.arn, role_arn=role.arn
        )
        self.deployment_configuration = aws.ecs.ServiceDeploymentConfigurationArgs(
            strategy="CANARY",
            bake_time_in_minutes=str(args.settings.deployment_bake_minutes),
            canary_configuration=aws.ecs.ServiceDeploymentConfigurationCanaryConfigurationArgs(
                canary_percent=float(args.settings.canary_percent),
                canary_bake_time_in_minutes=str(args.settings.canary_bake_minutes),
            ),
        )
        self.alarms = aws.ecs.ServiceAlarmsArgs(alarm_names=alarm_names, enable=True, rollback=True)
        self.register_outputs({"production_listener_rule": rule.arn, "alarm_names": alarm_names})

    def _rollback_alarms(self, name: str, args: CanaryArgs) -> list[aws.cloudwatch.MetricAlarm]:
        child = pulumi.ResourceOptions(parent=self)
        load_balancer = {"LoadBalancer": args.load_balancer_arn_suffix}
        common = {"period": 60, "evaluation_periods": 3, "datapoints_to_alarm": 2,
                  "comparison_operator": "GreaterThanThreshold", "treat_missing_data": "notBreaching"}  # fmt: skip
        alarms = [
            aws.cloudwatch.MetricAlarm(
                f"{name}-rollback-5xx",
                alarm_description="Roll back a deployment: the API answers 5xx",
                namespace="AWS/ApplicationELB", metric_name="HTTPCode_Target_5XX_Count", dimensions=load_balancer,
                statistic="Sum", threshold=args.settings.error_5xx_per_minute, opts=child, **common,
            ),
            aws.cloudwatch.MetricAlarm(
                f"{name}-rollback-p99-latency",
                alarm_description="Roll back a deployment: p99 latency too high",
                namespace="AWS/ApplicationELB", metric_name="TargetResponseTime", dimensions=load_balancer,
                extended_statistic="p99", threshold=args.settings.p99_latency_ms / 1000, opts=child, **common,
            ),
        ]  # fmt: skip
        unhealthy = [
            aws.cloudwatch.MetricAlarmMetricQueryArgs(
                id=f"group{index}",
                metric=aws.cloudwatch.MetricAlarmMetricQueryMetricArgs(
                    namespace="AWS/ApplicationELB", metric_name="UnHealthyHostCount", period=60, stat="Maximum",
                    dimensions={**load_balancer, "TargetGroup": group.arn_suffix},
                ),
            )
            for index, group in enumerate(args.target_groups)
        ]  # fmt: skip
        total = aws.cloudwatch.MetricAlarmMetricQueryArgs(
            id="unhealthy", expression="group0 + group1", label="Unhealthy tasks", return_data=True
        )
        alarms.append(
            aws.cloudwatch.MetricAlarm(
                f"{name}-rollback-unhealthy-hosts",
                alarm_description="Roll back a deployment: a task fails its /health check",
                metric_queries=[*unhealthy, total],
                threshold=0,
                opts=child,
                **common,
            )
        )
        return alarms
