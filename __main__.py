"""imdb-sentiment infrastructure: reads the stack config (schema and defaults in Pulumi.yaml) and wires the
components together. No resource logic lives here, and nothing branches on the stack name: every difference
between stacks is a value in Pulumi.<stack>.yaml.
"""

from pathlib import Path

import pulumi
import pulumi_aws as aws

from components.canary import canary_settings
from components.continuous_training import ContinuousTraining, ContinuousTrainingArgs, drift_alarm_prefix
from components.model_monitoring import ModelMonitoring, ModelMonitoringArgs, capture_environment
from components.monitoring import Monitoring, MonitoringArgs
from components.network import Network, NetworkArgs
from components.registry import Registry, RegistryArgs, source_version
from components.serving import Serving, ServingArgs
from components.storage import DataLake, DataLakeArgs
from components.training import TrainingArgs, TrainingCompute

PROJECT_DIR = Path(__file__).resolve().parent
config = pulumi.Config()
region = pulumi.Config("aws").require("region")
tags = {"project": pulumi.get_project(), "stack": pulumi.get_stack(), "owner": config.require("owner")}

provider = aws.Provider("aws", region=region, default_tags=aws.ProviderDefaultTagsArgs(tags=tags))
with_provider = pulumi.ResourceOptions(providers=[provider])

network = Network(
    "network",
    NetworkArgs(cidr_block=config.require("vpcCidr"), network_mode=config.require("networkMode"), region=region),
    opts=with_provider,
)
lake = DataLake(
    "data-lake",
    DataLakeArgs(
        force_destroy=config.require_bool("forceDestroy"),
        use_kms=config.require_bool("storageKms"),
        infrequent_access_after_days=config.require_int("infrequentAccessAfterDays"),
        glacier_after_days=config.require_int("glacierAfterDays"),
        noncurrent_version_expiry_days=config.require_int("noncurrentVersionExpiryDays"),
        capture_expiry_days=config.require_int("captureExpiryDays"),
    ),
    opts=with_provider,
)
registry = Registry(
    "registry",
    RegistryArgs(
        context_dir=PROJECT_DIR / "workload",
        dockerfile=PROJECT_DIR / "workload" / "Dockerfile",
        source_version=source_version(PROJECT_DIR / "workload"),
        keep_images=config.require_int("ecrKeepImages"),
        force_delete=config.require_bool("forceDestroy"),
    ),
    opts=with_provider,
)
model_uri = pulumi.Output.concat(lake.prefix_uris["models"], config.require("modelVersion"))
training = TrainingCompute(
    "training",
    TrainingArgs(
        vpc_id=network.vpc_id,
        subnet_id=network.public_subnet_ids[0],
        bucket_name=lake.bucket_name,
        bucket_arn=lake.bucket_arn,
        kms_key_arn=lake.kms_key_arn,
        repository_arn=registry.repository_arn,
        image_ref=registry.image_ref,
        region=region,
        instance_type=config.require("trainingInstanceType"),
        ami_ssm_parameter=config.require("trainingAmiParameter"),
        use_spot=config.require_bool("trainingSpot"),
        volume_size_gb=config.require_int("trainingVolumeGb"),
        arch=config.require("trainingArch"),
        epochs=config.require_int("trainingEpochs"),
        max_run_minutes=config.require_int("trainingMaxMinutes"),
        log_retention_days=config.require_int("logRetentionDays"),
        serving_model_version=config.require("modelVersion"),
        run_tags=tags,
    ),
    opts=with_provider,
)
continuous_training = ContinuousTraining(
    "continuous-training",
    ContinuousTrainingArgs(
        launch_template_id=training.launch_template_id,
        launch_template_arn=training.launch_template_arn,
        training_role_arn=training.role_arn,
        retrain_schedule=config.require("retrainSchedule"),
        drift_alarm_prefix=drift_alarm_prefix(pulumi.get_project(), pulumi.get_stack()),
    ),
    opts=with_provider,
)
serving = Serving(
    "api",
    ServingArgs(
        vpc_id=network.vpc_id,
        public_subnet_ids=network.public_subnet_ids,
        task_subnet_ids=network.task_subnet_ids,
        tasks_get_public_ip=network.tasks_get_public_ip,
        image_ref=registry.image_ref,
        repository_arn=registry.repository_arn,
        bucket_arn=lake.bucket_arn,
        kms_key_arn=lake.kms_key_arn,
        model_uri=model_uri,
        capture_environment=capture_environment(
            lake.bucket_name, config.require_int("capturePercent"), config.require_bool("captureText")
        ),
        region=region,
        cpu=config.require_int("serviceCpu"),
        memory=config.require_int("serviceMemory"),
        desired_count=config.require_int("serviceDesiredCount"),
        min_count=config.require_int("serviceMinCount"),
        max_count=config.require_int("serviceMaxCount"),
        cpu_target_percent=config.require_int("cpuTargetPercent"),
        requests_per_target=config.require_int("requestsPerTarget"),
        health_check_grace_seconds=config.require_int("healthCheckGraceSeconds"),
        worker_timeout_seconds=config.require_int("workerTimeoutSeconds"),
        log_retention_days=config.require_int("logRetentionDays"),
        certificate_arn=config.require("certificateArn"),
        deletion_protection=config.require_bool("deletionProtection"),
        canary=canary_settings(
            config.require("deploymentStrategy"),
            canary_percent=config.require_int("canaryPercent"),
            canary_bake_minutes=config.require_int("canaryBakeMinutes"),
            deployment_bake_minutes=config.require_int("deploymentBakeMinutes"),
            error_5xx_per_minute=config.require_int("error5xxPerMinute"),
            p99_latency_ms=config.require_int("p99LatencyMs"),
        ),
    ),
    opts=with_provider,
)
monitoring = Monitoring(
    "monitoring",
    MonitoringArgs(
        cluster_name=serving.cluster_name,
        service_name=serving.service_name,
        load_balancer_arn_suffix=serving.load_balancer_arn_suffix,
        target_group_arn_suffix=serving.target_group_arn_suffix,
        min_task_count=config.require_int("serviceMinCount"),
        region=region,
        alert_email=config.require("alertEmail"),
        cpu_alarm_percent=config.require_int("cpuAlarmPercent"),
        error_5xx_per_minute=config.require_int("error5xxPerMinute"),
        p99_latency_ms=config.require_int("p99LatencyMs"),
    ),
    opts=with_provider,
)
model_monitoring = ModelMonitoring(
    "model-monitoring",
    ModelMonitoringArgs(
        cluster_arn=serving.cluster_arn,
        vpc_id=network.vpc_id,
        subnet_ids=network.task_subnet_ids,
        assign_public_ip=network.tasks_get_public_ip,
        image_ref=registry.image_ref,
        repository_arn=registry.repository_arn,
        bucket_name=lake.bucket_name,
        bucket_arn=lake.bucket_arn,
        kms_key_arn=lake.kms_key_arn,
        model_uri=model_uri,
        alarm_topic_arn=monitoring.topic_arn,
        region=region,
        schedule=config.require("monitoringSchedule"),
        window_hours=config.require_int("monitoringWindowHours"),
        log_retention_days=config.require_int("logRetentionDays"),
    ),
    opts=with_provider,
)

pulumi.export("endpoint", serving.endpoint)
pulumi.export("bucket", lake.bucket_name)
pulumi.export("data_uris", lake.prefix_uris)
pulumi.export("repository_url", registry.repository_url)
pulumi.export("image", registry.image_ref)
pulumi.export("model_uri", model_uri)
pulumi.export("region", region)
pulumi.export("training_launch_template_id", training.launch_template_id)
pulumi.export("training_role_arn", training.role_arn)
pulumi.export("training_log_group", training.log_group_name)
pulumi.export("training_launcher_arn", continuous_training.launcher_arn)
pulumi.export("cluster_name", serving.cluster_name)
pulumi.export("service_name", serving.service_name)
pulumi.export("task_definition_arn", serving.task_definition_arn)
pulumi.export("alert_topic_arn", monitoring.topic_arn)
pulumi.export("dashboard_url", monitoring.dashboard_url)
pulumi.export("monitoring_task_definition_arn", model_monitoring.task_definition_arn)
pulumi.export("monitoring_report_uri", model_monitoring.report_uri)
