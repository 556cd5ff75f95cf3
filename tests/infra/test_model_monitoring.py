"""The model-monitoring component: the schedule, the job's and the scheduler's roles, the drift alarms, and that
what it renders is what the workload's `monitor` command accepts and publishes."""

import dataclasses
import json

import pytest
from infra_mocks import ACCOUNT
from workload.cli import build_parser
from workload.monitoring.job import DRIFT_METRIC, METRIC_NAMES, RECORDS_METRIC
from workload.monitoring.settings import NAMESPACE, Settings

from components.model_monitoring import (
    DRIFT_THRESHOLDS,
    METRIC_NAMESPACE,
    ModelMonitoring,
    ModelMonitoringArgs,
    drift_widgets,
)

TOPIC = "arn:aws:sns:eu-west-1:123456789012:alerts"
ARGS = ModelMonitoringArgs(
    cluster_arn="arn:aws:ecs:eu-west-1:123456789012:cluster/api",
    vpc_id="vpc-1",
    subnet_ids=["subnet-a", "subnet-b"],
    assign_public_ip=False,
    image_ref="123456789012.dkr.ecr.eu-west-1.amazonaws.com/workload@sha256:" + "ab" * 32,
    repository_arn="arn:aws:ecr:eu-west-1:123456789012:repository/workload",
    bucket_name="lake",
    bucket_arn="arn:aws:s3:::lake",
    kms_key_arn=None,
    model_uri="s3://lake/models/v7",
    alarm_topic_arn=TOPIC,
    region="eu-west-1",
    schedule="rate(6 hours)",
    window_hours=24,
    log_retention_days=14,
)


def build(args: ModelMonitoringArgs = ARGS) -> dict:
    monitoring = ModelMonitoring("model-monitoring", args)
    return {"task": monitoring.task_definition_arn, "cluster": monitoring.cluster_arn, "report": monitoring.report_uri}


def roles(mocks) -> dict:
    return {role.name: role for role in mocks.of_type("aws:iam/role:Role")}


def role_policies(mocks) -> dict[str, dict]:
    return {p.name: json.loads(p.inputs["policy"]) for p in mocks.of_type("aws:iam/rolePolicy:RolePolicy")}


def test_the_schedule_runs_the_job_task_on_fargate_in_the_given_subnets(run_pulumi, pulumi_mocks):
    out = run_pulumi(build)
    schedule = pulumi_mocks.one("aws:scheduler/schedule:Schedule").inputs
    assert schedule["scheduleExpression"] == "rate(6 hours)"
    assert schedule["flexibleTimeWindow"] == {"mode": "OFF"}
    target = schedule["target"]
    assert target["arn"] == out["cluster"]
    assert target["roleArn"] == roles(pulumi_mocks)["model-monitoring-scheduler"].state["arn"]
    ecs = target["ecsParameters"]
    assert (ecs["taskDefinitionArn"], ecs["launchType"], ecs["taskCount"]) == (out["task"], "FARGATE", 1)
    network = ecs["networkConfiguration"]
    assert network["subnets"] == ["subnet-a", "subnet-b"] and network["assignPublicIp"] is False
    (group,) = network["securityGroups"]
    assert not pulumi_mocks.of_type("aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule")  # no way in
    (egress,) = pulumi_mocks.of_type("aws:vpc/securityGroupEgressRule:SecurityGroupEgressRule")
    assert egress.inputs["securityGroupId"] == group and egress.inputs["fromPort"] == egress.inputs["toPort"] == 443


def test_an_empty_schedule_turns_the_job_off(run_pulumi, pulumi_mocks):
    run_pulumi(lambda: build(dataclasses.replace(ARGS, schedule="")))
    assert not pulumi_mocks.of_type("aws:scheduler/schedule:Schedule")


@pytest.mark.parametrize(("field", "value"), [("schedule", "every hour"), ("window_hours", 0)])
def test_bad_schedule_settings_are_refused(field, value):
    with pytest.raises(ValueError, match=r"monitoringSchedule|monitoringWindowHours"):
        dataclasses.replace(ARGS, **{field: value})


def test_the_job_command_is_one_the_workload_cli_accepts(run_pulumi, pulumi_mocks):
    out = run_pulumi(build)
    task = pulumi_mocks.one("aws:ecs/taskDefinition:TaskDefinition").inputs
    (container,) = json.loads(task["containerDefinitions"])
    assert container["entryPoint"] == ["python", "-m", "workload"]
    args = build_parser().parse_args(container["command"])  # argparse exits (SystemExit) on a command it refuses
    assert (args.command, args.model, args.capture) == ("monitor", "s3://lake/models/v7", "s3://lake/capture/")
    assert (args.hours, args.output, args.publish_metrics) == (24, out["report"], True)
    assert out["report"].startswith("s3://lake/logs/monitoring/")
    assert {"name": "STACK_NAME", "value": "test"} in container["environment"]
    assert container["readonlyRootFilesystem"] is True and container["user"] == "10001:10001"


def test_the_job_role_reads_capture_and_models_writes_reports_and_publishes_in_its_namespace(run_pulumi, pulumi_mocks):
    run_pulumi(build)
    job = {s["Sid"]: s for s in role_policies(pulumi_mocks)["model-monitoring-task"]["Statement"]}
    assert job["ReadCaptureAndModels"]["Resource"] == ["arn:aws:s3:::lake/capture/*", "arn:aws:s3:::lake/models/*"]
    assert job["ReadCaptureAndModels"]["Action"] == "s3:GetObject"
    assert job["WriteReports"]["Resource"] == ["arn:aws:s3:::lake/logs/monitoring/*"]
    assert job["PublishDriftMetrics"]["Condition"] == {"StringEquals": {"cloudwatch:namespace": NAMESPACE}}
    assert set(job) == {"ListGrantedPrefixes", "ReadCaptureAndModels", "WriteReports", "PublishDriftMetrics"}


def test_the_scheduler_may_only_run_this_task_family_and_pass_its_two_roles(run_pulumi, pulumi_mocks):
    out = run_pulumi(build)
    scheduler = {s["Sid"]: s for s in role_policies(pulumi_mocks)["model-monitoring-scheduler"]["Statement"]}
    run_task = scheduler["RunMonitoringTask"]
    assert run_task["Resource"] == out["task"].rsplit(":", 1)[0] + ":*"
    assert run_task["Condition"] == {"ArnEquals": {"ecs:cluster": out["cluster"]}}
    by_name = roles(pulumi_mocks)
    assert scheduler["PassMonitoringTaskRoles"]["Resource"] == [
        by_name["model-monitoring-execution"].state["arn"],
        by_name["model-monitoring-task"].state["arn"],
    ]
    trust = json.loads(by_name["model-monitoring-scheduler"].inputs["assumeRolePolicy"])["Statement"][0]
    assert trust["Principal"] == {"Service": "scheduler.amazonaws.com"}
    assert trust["Condition"] == {"StringEquals": {"aws:SourceAccount": ACCOUNT}}


def test_one_alarm_per_check_at_the_jobs_own_drift_threshold_notifies_the_topic(run_pulumi, pulumi_mocks):
    run_pulumi(build)
    alarms = {a.inputs["metricName"]: a.inputs for a in pulumi_mocks.of_type("aws:cloudwatch/metricAlarm:MetricAlarm")}
    assert set(alarms) == set(METRIC_NAMES.values())  # exactly what `monitor --publish-metrics` puts
    defaults = Settings()
    job_thresholds = {
        "ScorePSI": defaults.psi.drift,
        "LengthPSI": defaults.psi.drift,
        "PositiveRateChange": defaults.positive_rate.drift,
        "UnknownRateChange": defaults.unknown_rate.drift,
    }
    for metric, alarm in alarms.items():
        assert alarm["namespace"] == METRIC_NAMESPACE == NAMESPACE
        assert alarm["dimensions"] == {"Stack": "test"}  # the job publishes this dimension set too
        assert alarm["threshold"] == job_thresholds[metric] == DRIFT_THRESHOLDS[metric]
        assert alarm["comparisonOperator"] == "GreaterThanOrEqualToThreshold"
        assert alarm["alarmActions"] == alarm["okActions"] == [TOPIC]
        assert alarm["period"] * alarm["evaluationPeriods"] <= 86_400  # CloudWatch's limit


def test_dashboard_widgets_plot_every_published_metric():
    plotted = {line[1] for widget in drift_widgets("eu-west-1") for line in widget["properties"]["metrics"]}
    assert plotted == set(METRIC_NAMES.values()) | {RECORDS_METRIC}
    assert DRIFT_METRIC not in plotted  # a 0/1 verdict plots badly; the alarms carry it
