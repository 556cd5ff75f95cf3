"""Continuous training: start one training run from the launch template on a schedule, and when drift alarms.

Both triggers start the same launcher, a one-step Step Functions state machine that calls EC2 RunInstances with
the training launch template (the SDK integration `arn:aws:states:::aws-sdk:ec2:runInstances`). One launcher for
both, because an EventBridge rule cannot call an AWS API itself (a Scheduler universal target can, a rule cannot),
and one launcher means one policy holding the EC2 rights, scoped to the one template and the one training role.
The triggers may only start that state machine.

A run trains, evaluates, and gates its bundle against the serving model (components/templates/training_user_data.sh);
its verdict lands next to the bundle in the registry. Promotion stays a reviewed pull request (promote.yml).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from components import policies, recipes

# What EventBridge Scheduler accepts: rate(...), cron(...) or at(...) for a one-off.
SCHEDULE_EXPRESSION = re.compile(r"(rate|cron|at)\(.+\)")
RUN_INSTANCES = "arn:aws:states:::aws-sdk:ec2:runInstances"


def drift_alarm_prefix(project: str, stack: str) -> str:
    """Every CloudWatch alarm whose name starts with this starts a training run when it enters ALARM."""
    return f"{project}-{stack}-drift"


@dataclass(frozen=True)
class ContinuousTrainingArgs:
    launch_template_id: pulumi.Input[str]
    launch_template_arn: pulumi.Input[str]
    training_role_arn: pulumi.Input[str]
    retrain_schedule: str
    """An EventBridge Scheduler expression, e.g. `rate(7 days)` or `cron(0 3 ? * MON *)` (UTC); empty: no schedule."""
    drift_alarm_prefix: str

    def __post_init__(self) -> None:
        if self.retrain_schedule and not SCHEDULE_EXPRESSION.fullmatch(self.retrain_schedule):
            raise ValueError(
                f"retrainSchedule must be empty or rate(...), cron(...) or at(...), got {self.retrain_schedule!r}"
            )
        if not self.drift_alarm_prefix:
            raise ValueError("drift_alarm_prefix must not be empty: it would match every alarm in the account")


class ContinuousTraining(pulumi.ComponentResource):
    launcher_arn: pulumi.Output[str]

    def __init__(self, name: str, args: ContinuousTrainingArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("imdb-sentiment:training:ContinuousTraining", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)

        launcher_role = recipes.role_with_inline_policy(
            self,
            f"{name}-launcher",
            "states.amazonaws.com",
            pulumi.Output.all(
                launch_template_arn=args.launch_template_arn, training_role_arn=args.training_role_arn
            ).apply(lambda a: policies.launch_training_policy(**a)),
        )
        launcher = aws.sfn.StateMachine(
            f"{name}-launcher",
            role_arn=launcher_role.arn,
            definition=pulumi.Output.from_input(args.launch_template_id).apply(
                lambda template_id: json.dumps(self.definition(template_id))
            ),
            opts=child,
        )
        start_launcher = launcher.arn.apply(policies.start_execution_policy)

        if args.retrain_schedule:
            aws.scheduler.Schedule(
                f"{name}-schedule",
                description="Start one training run",
                schedule_expression=args.retrain_schedule,
                schedule_expression_timezone="UTC",
                flexible_time_window=aws.scheduler.ScheduleFlexibleTimeWindowArgs(mode="OFF"),
                target=aws.scheduler.ScheduleTargetArgs(
                    arn=launcher.arn,
                    role_arn=recipes.role_with_inline_policy(
                        self, f"{name}-schedule", "scheduler.amazonaws.com", start_launcher
                    ).arn,
                ),
                opts=child,
            )

        on_drift = aws.cloudwatch.EventRule(
            f"{name}-on-drift",
            description=f"Start one training run when an alarm named {args.drift_alarm_prefix}* enters ALARM",
            event_pattern=json.dumps(self.drift_pattern(args.drift_alarm_prefix)),
            opts=child,
        )
        aws.cloudwatch.EventTarget(
            f"{name}-on-drift",
            rule=on_drift.name,
            arn=launcher.arn,
            role_arn=recipes.role_with_inline_policy(
                self, f"{name}-on-drift", "events.amazonaws.com", start_launcher
            ).arn,
            opts=child,
        )

        self.launcher_arn = launcher.arn
        self.register_outputs({"launcher_arn": self.launcher_arn})

    @staticmethod
    def definition(launch_template_id: str) -> dict:
        """One task: RunInstances with the template's default version, exactly what `launch-training` asks for."""
        request = {"LaunchTemplate": {"LaunchTemplateId": launch_template_id, "Version": "$Default"},
                   "MinCount": 1, "MaxCount": 1}  # fmt: skip
        return {
            "Comment": "Start one imdb-sentiment training run from the launch template",
            "StartAt": "RunTrainingInstance",
            "States": {"RunTrainingInstance": {"Type": "Task", "Resource": RUN_INSTANCES, "Parameters": request,
                                               "End": True}},
        }  # fmt: skip

    @staticmethod
    def drift_pattern(prefix: str) -> dict:
        return {
            "source": ["aws.cloudwatch"],
            "detail-type": ["CloudWatch Alarm State Change"],
            "detail": {"alarmName": [{"prefix": prefix}], "state": {"value": ["ALARM"]}},
        }
