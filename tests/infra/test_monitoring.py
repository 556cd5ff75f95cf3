import dataclasses
import json

from infra_mocks import ACCOUNT

from components.monitoring import Monitoring, MonitoringArgs

ARGS = MonitoringArgs(
    cluster_name="cluster",
    service_name="service",
    load_balancer_arn_suffix="app/alb/1",
    target_group_arn_suffix="targetgroup/tg/2",
    min_task_count=2,
    region="eu-west-1",
    alert_email="oncall@example.com",
    cpu_alarm_percent=80,
    error_5xx_per_minute=5,
    p99_latency_ms=750,
)


def build(args: MonitoringArgs = ARGS) -> dict:
    monitoring = Monitoring("monitoring", args)
    return {"topic": monitoring.topic_arn, "dashboard_url": monitoring.dashboard_url}


def test_every_alarm_notifies_the_topic(run_pulumi, pulumi_mocks):
    out = run_pulumi(build)
    alarms = {a.inputs["metricName"]: a.inputs for a in pulumi_mocks.of_type("aws:cloudwatch/metricAlarm:MetricAlarm")}
    assert set(alarms) == {
        "CPUUtilization",
        "HTTPCode_Target_5XX_Count",
        "HTTPCode_ELB_5XX_Count",
        "TargetResponseTime",
        "UnHealthyHostCount",
        "HealthyHostCount",
        "RunningTaskCount",
    }
    for alarm in alarms.values():
        assert alarm["alarmActions"] == [out["topic"]] and alarm["okActions"] == [out["topic"]]
    assert alarms["CPUUtilization"]["threshold"] == 80
    assert alarms["CPUUtilization"]["dimensions"] == {"ClusterName": "cluster", "ServiceName": "service"}
    assert (alarms["TargetResponseTime"]["extendedStatistic"], alarms["TargetResponseTime"]["threshold"]) == (
        "p99",
        0.75,
    )
    assert alarms["UnHealthyHostCount"]["threshold"] == 0
    # The floor comes from the autoscaling minimum; the load balancer's own 5xx are per load balancer only.
    assert alarms["RunningTaskCount"]["threshold"] == 2
    assert alarms["HTTPCode_ELB_5XX_Count"]["dimensions"] == {"LoadBalancer": "app/alb/1"}
    subscription = pulumi_mocks.one("aws:sns/topicSubscription:TopicSubscription").inputs
    assert (subscription["protocol"], subscription["endpoint"], subscription["topic"]) == (
        "email",
        "oncall@example.com",
        out["topic"],
    )


def test_no_subscription_without_an_email(run_pulumi, pulumi_mocks):
    run_pulumi(lambda: build(dataclasses.replace(ARGS, alert_email="")))
    assert not pulumi_mocks.of_type("aws:sns/topicSubscription:TopicSubscription")


def test_dashboard_shows_traffic_latency_errors_resources_and_tasks(run_pulumi, pulumi_mocks):
    out = run_pulumi(build)
    dashboard = pulumi_mocks.one("aws:cloudwatch/dashboard:Dashboard").inputs
    assert out["dashboard_url"].endswith(f"#dashboards/dashboard/{dashboard['dashboardName']}")
    widgets = json.loads(dashboard["dashboardBody"])["widgets"]
    metrics = [metric for w in widgets for metric in w["properties"]["metrics"]]
    names = {m[1] for m in metrics}
    assert {
        "RequestCount",
        "TargetResponseTime",
        "HTTPCode_Target_5XX_Count",
        "CPUUtilization",
        "MemoryUtilization",
        "RunningTaskCount",
    } <= names
    stats = {m[-1]["stat"] for m in metrics if m[1] == "TargetResponseTime"}
    assert stats == {"p50", "p99"}


def test_topic_is_encrypted_with_a_key_cloudwatch_may_use(run_pulumi, pulumi_mocks):
    """alias/aws/sns would encrypt the topic too, but its policy shuts CloudWatch out: no alarm would ever arrive."""
    run_pulumi(build)
    key = pulumi_mocks.one("aws:kms/key:Key")
    assert pulumi_mocks.one("aws:sns/topic:Topic").inputs["kmsMasterKeyId"] == key.state["arn"]
    assert key.inputs["enableKeyRotation"] is True
    alias = pulumi_mocks.one("aws:kms/alias:Alias").inputs
    assert alias["targetKeyId"] == key.state["keyId"] and alias["name"].startswith("alias/")
    statements = {s["Sid"]: s for s in json.loads(key.inputs["policy"])["Statement"]}
    assert statements["AccountAdministersKey"]["Principal"] == {"AWS": f"arn:aws:iam::{ACCOUNT}:root"}
    cloudwatch = statements["CloudWatchAlarmsPublish"]
    assert cloudwatch["Effect"] == "Allow"
    assert cloudwatch["Principal"] == {"Service": "cloudwatch.amazonaws.com"}
    assert set(cloudwatch["Action"]) == {"kms:Decrypt", "kms:GenerateDataKey*"}
    assert cloudwatch["Condition"] == {"StringEquals": {"aws:SourceAccount": ACCOUNT}}
