"""The IAM documents, rendered from realistic ARNs, pass parliament; a deliberately bad one does not."""

import pytest

from components import policies
from components.training import READ_PREFIXES, WRITE_PREFIXES

BUCKET = "arn:aws:s3:::lake"
REPOSITORY = "arn:aws:ecr:eu-west-1:123456789012:repository/workload"
LOG_GROUP = "arn:aws:logs:eu-west-1:123456789012:log-group:/imdb-sentiment/dev/training"
KEY = "arn:aws:kms:eu-west-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"

DOCUMENTS = {
    "training": policies.training_policy(
        bucket_arn=BUCKET,
        read_prefixes=READ_PREFIXES,
        write_prefixes=WRITE_PREFIXES,
        repository_arn=REPOSITORY,
        log_group_arn=LOG_GROUP,
        kms_key_arn=KEY,
    ),
    "task": policies.task_policy(
        bucket_arn=BUCKET, models_prefix="models/", capture_prefix="capture/", kms_key_arn=KEY
    ),
    "monitoring-job": policies.monitoring_job_policy(
        bucket_arn=BUCKET,
        read_prefixes=["capture/", "models/"],
        report_prefix="logs/monitoring/",
        metric_namespace="IMDBSentiment/Monitoring",
        kms_key_arn=KEY,
    ),
    "monitoring-scheduler": policies.monitoring_scheduler_policy(
        task_definition_arn="arn:aws:ecs:eu-west-1:123456789012:task-definition/imdb-sentiment-dev-model-monitoring:3",
        cluster_arn="arn:aws:ecs:eu-west-1:123456789012:cluster/model-monitoring-cluster",
        role_arns=["arn:aws:iam::123456789012:role/job-task", "arn:aws:iam::123456789012:role/job-execution"],
    ),
    "execution": policies.execution_policy(repository_arn=REPOSITORY, log_group_arn=LOG_GROUP),
    "bucket": policies.tls_only_bucket_policy(BUCKET),
    "launch-training": policies.launch_training_policy(
        launch_template_arn="arn:aws:ec2:eu-west-1:123456789012:launch-template/lt-0123456789abcdef0",
        training_role_arn="arn:aws:iam::123456789012:role/training-role",
    ),
    "start-launcher": policies.start_execution_policy(
        "arn:aws:states:eu-west-1:123456789012:stateMachine:continuous-training-launcher"
    ),
}


@pytest.mark.parametrize("name", DOCUMENTS)
def test_policy_passes_parliament(name, parliament_findings):
    assert parliament_findings(DOCUMENTS[name]) == []


def test_parliament_flags_an_overbroad_policy(parliament_findings):
    overbroad = policies.document([{"Effect": "Allow", "Action": "s3:GetObject", "Resource": "*"}])
    assert any(finding.startswith("RESOURCE_STAR") for finding in parliament_findings(overbroad))


def test_without_a_key_there_is_no_kms_statement():
    document = policies.task_policy(bucket_arn=BUCKET, models_prefix="models/", capture_prefix="capture/")
    assert [s["Sid"] for s in document["Statement"]] == [
        "ListGrantedPrefixes",
        "ReadModelBundles",
        "WriteCapturedRequests",
    ]
