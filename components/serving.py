"""Serving: the API on ECS Fargate behind an Application Load Balancer, with autoscaling.

The task definition pins the image by digest and the model by URI (`MODEL_URI`), so both change only
through `pulumi up`; the deployment circuit breaker rolls back a release whose tasks never turn healthy
(for example a bad model bundle, which makes /health fail).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_aws as aws

from components import policies
from components.canary import CanaryArgs, CanaryRelease, CanarySettings
from components.storage import MODELS_PREFIX

CONTAINER_NAME = "api"
CONTAINER_PORT = 8080
HEALTH_PATH = "/health"
APP_USER = "10001:10001"  # the non-root user baked into workload/Dockerfile
TLS_POLICY = "ELBSecurityPolicy-TLS13-1-2-2021-06"


@dataclass(frozen=True)
class ServingArgs:
    vpc_id: pulumi.Input[str]
    public_subnet_ids: Sequence[pulumi.Input[str]]
    task_subnet_ids: Sequence[pulumi.Input[str]]
    tasks_get_public_ip: bool
    image_ref: pulumi.Input[str]
    repository_arn: pulumi.Input[str]
    bucket_arn: pulumi.Input[str]
    kms_key_arn: pulumi.Input[str] | None
    model_uri: pulumi.Input[str]
    region: str
    cpu: int
    memory: int
    desired_count: int
    min_count: int
    max_count: int
    cpu_target_percent: int
    requests_per_target: int
    health_check_grace_seconds: int
    log_retention_days: int
    certificate_arn: str
    """An ACM certificate ARN turns on HTTPS (and HTTP redirects to it); empty serves plain HTTP."""
    deletion_protection: bool
    canary: CanarySettings | None
    """Deploy with ECS's CANARY strategy and roll back on alarms; None: ROLLING (circuit breaker only)."""

    def __post_init__(self) -> None:
        if not 1 <= self.min_count <= self.desired_count <= self.max_count:
            raise ValueError(
                "need 1 <= serviceMinCount <= serviceDesiredCount <= serviceMaxCount, got "
                f"{self.min_count} / {self.desired_count} / {self.max_count}"
            )


class Serving(pulumi.ComponentResource):
    endpoint: pulumi.Output[str]
    cluster_name: pulumi.Output[str]
    service_name: pulumi.Output[str]
    load_balancer_arn_suffix: pulumi.Output[str]
    target_group_arn_suffix: pulumi.Output[str]

    def __init__(self, name: str, args: ServingArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("imdb-sentiment:serving:Serving", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)

        cluster = aws.ecs.Cluster(
            f"{name}-cluster",
            settings=[aws.ecs.ClusterSettingArgs(name="containerInsights", value="enabled")],
            opts=child,
        )
        log_group = aws.cloudwatch.LogGroup(
            f"{name}-logs",
            name=f"/{pulumi.get_project()}/{pulumi.get_stack()}/{name}",
            retention_in_days=args.log_retention_days,
            opts=child,
        )
        execution_role = self._role(
            f"{name}-execution",
            pulumi.Output.all(repository_arn=args.repository_arn, log_group_arn=log_group.arn).apply(
                lambda a: policies.execution_policy(**a)
            ),
        )
        task_role = self._role(
            f"{name}-task",
            pulumi.Output.all(bucket_arn=args.bucket_arn, kms_key_arn=args.kms_key_arn).apply(
                lambda a: policies.task_policy(models_prefix=MODELS_PREFIX, **a)
            ),
        )
        task_definition = aws.ecs.TaskDefinition(
            f"{name}-task",
            family=f"{pulumi.get_project()}-{pulumi.get_stack()}-{name}",  # one family per stack in an account
            cpu=str(args.cpu),
            memory=str(args.memory),
            network_mode="awsvpc",
            requires_compatibilities=["FARGATE"],
            runtime_platform=aws.ecs.TaskDefinitionRuntimePlatformArgs(
                operating_system_family="LINUX", cpu_architecture="X86_64"
            ),
            execution_role_arn=execution_role.arn,
            task_role_arn=task_role.arn,
            # Read-only root filesystem: /tmp (model cache, gunicorn heartbeat files) is the only writable path.
            volumes=[aws.ecs.TaskDefinitionVolumeArgs(name="scratch")],
            container_definitions=pulumi.Output.all(
                image=args.image_ref, model_uri=args.model_uri, log_group=log_group.name
            ).apply(lambda a: json.dumps([self._container(region=args.region, **a)])),
            opts=child,
        )

        alb_sg = aws.ec2.SecurityGroup(
            f"{name}-alb", vpc_id=args.vpc_id, description="Load balancer: HTTP and HTTPS from anywhere", opts=child
        )
        task_sg = aws.ec2.SecurityGroup(
            f"{name}-tasks", vpc_id=args.vpc_id, description="API tasks: only the load balancer may connect", opts=child
        )
        for port in (80, 443):
            self._ingress(f"{name}-alb-{port}", alb_sg, port, cidr_ipv4="0.0.0.0/0")
        self._ingress(f"{name}-tasks-from-alb", task_sg, CONTAINER_PORT, referenced_security_group_id=alb_sg.id)
        aws.vpc.SecurityGroupEgressRule(
            f"{name}-alb-to-tasks",
            security_group_id=alb_sg.id,
            referenced_security_group_id=task_sg.id,
            ip_protocol="tcp",
            from_port=CONTAINER_PORT,
            to_port=CONTAINER_PORT,
            opts=child,
        )
        aws.vpc.SecurityGroupEgressRule(
            f"{name}-tasks-https-out",
            security_group_id=task_sg.id,
            cidr_ipv4="0.0.0.0/0",
            ip_protocol="tcp",
            from_port=443,
            to_port=443,
            description="ECR, S3 and CloudWatch Logs",
            opts=child,
        )

        load_balancer = aws.lb.LoadBalancer(
            f"{name}-alb",
            load_balancer_type="application",
            subnets=list(args.public_subnet_ids),
            security_groups=[alb_sg.id],
            drop_invalid_header_fields=True,
            enable_deletion_protection=args.deletion_protection,
            opts=child,
        )
        target_group = self._target_group(f"{name}-tg", args)
        listeners = self._listeners(name, args, load_balancer, target_group)
        canary = (
            CanaryRelease(
                f"{name}-canary",
                CanaryArgs(
                    settings=args.canary,
                    listener_arn=listeners[-1].arn,  # the one that forwards: HTTPS when there is a certificate
                    load_balancer_arn_suffix=load_balancer.arn_suffix,
                    target_groups=(target_group, self._target_group(f"{name}-tg-alternate", args)),
                ),
                opts=child,
            )
            if args.canary
            else None
        )

        service = aws.ecs.Service(
            f"{name}-service",
            cluster=cluster.arn,
            task_definition=task_definition.arn,
            launch_type="FARGATE",
            desired_count=args.desired_count,
            deployment_circuit_breaker=aws.ecs.ServiceDeploymentCircuitBreakerArgs(enable=True, rollback=True),
            deployment_minimum_healthy_percent=100,
            deployment_maximum_percent=200,
            health_check_grace_period_seconds=args.health_check_grace_seconds,
            availability_zone_rebalancing="ENABLED",
            network_configuration=aws.ecs.ServiceNetworkConfigurationArgs(
                subnets=list(args.task_subnet_ids),
                security_groups=[task_sg.id],
                assign_public_ip=args.tasks_get_public_ip,
            ),
            load_balancers=[
                aws.ecs.ServiceLoadBalancerArgs(
                    target_group_arn=target_group.arn,
                    container_name=CONTAINER_NAME,
                    container_port=CONTAINER_PORT,
                    advanced_configuration=canary.advanced_configuration if canary else None,
                )
            ],
            deployment_configuration=canary.deployment_configuration if canary else None,
            alarms=canary.alarms if canary else None,
            # A canary runs for its bake times: `pulumi up` waits for it, and Ctrl-C there rolls the deployment back.
            wait_for_steady_state=bool(canary),
            sigint_rollback=bool(canary),
            propagate_tags="SERVICE",
            # Autoscaling owns the running count after creation; `pulumi up` must not reset it.
            opts=pulumi.ResourceOptions(parent=self, depends_on=listeners, ignore_changes=["desiredCount"]),
        )
        self._autoscaling(name, args, cluster, service, load_balancer, target_group)

        # With a certificate this is still the load balancer's own name, which no ACM certificate covers: clients
        # use the certificate's domain, pointed at the load balancer (see certificateArn in Pulumi.yaml).
        scheme = "https" if args.certificate_arn else "http"
        self.endpoint = load_balancer.dns_name.apply(lambda dns: f"{scheme}://{dns}")
        self.cluster_name = cluster.name
        self.service_name = service.name
        self.load_balancer_arn_suffix = load_balancer.arn_suffix
        self.target_group_arn_suffix = target_group.arn_suffix
        self.register_outputs(
            {"endpoint": self.endpoint, "cluster_name": self.cluster_name, "service_name": self.service_name}
        )

    @staticmethod
    def _container(*, image: str, model_uri: str, log_group: str, region: str) -> dict[str, Any]:
        return {
            "name": CONTAINER_NAME,
            "image": image,
            "essential": True,
            "user": APP_USER,
            "readonlyRootFilesystem": True,
            "portMappings": [{"containerPort": CONTAINER_PORT, "protocol": "tcp"}],
            "environment": [{"name": "MODEL_URI", "value": model_uri}],
            "mountPoints": [{"sourceVolume": "scratch", "containerPath": "/tmp", "readOnly": False}],
            "healthCheck": {
                "command": [
                    "CMD",
                    "python",
                    "-c",
                    f"import urllib.request; urllib.request.urlopen('http://127.0.0.1:{CONTAINER_PORT}{HEALTH_PATH}',"
                    " timeout=2)",
                ],
                "interval": 15,
                "timeout": 5,
                "retries": 3,
                "startPeriod": 60,  # the bundle is downloaded, verified and self-tested before /health says yes
            },
            "logConfiguration": {
                "logDriver": "awslogs",
                "options": {"awslogs-group": log_group, "awslogs-region": region, "awslogs-stream-prefix": "api"},
            },
        }

    def _target_group(self, name: str, args: ServingArgs) -> aws.lb.TargetGroup:
        return aws.lb.TargetGroup(
            name,
            port=CONTAINER_PORT,
            protocol="HTTP",
            target_type="ip",
            vpc_id=args.vpc_id,
            deregistration_delay=15,  # requests are short; don't hold deployments for the 300 s default
            health_check=aws.lb.TargetGroupHealthCheckArgs(
                path=HEALTH_PATH,
                matcher="200",
                interval=15,
                timeout=5,
                healthy_threshold=2,
                unhealthy_threshold=3,
            ),
            opts=pulumi.ResourceOptions(parent=self),
        )

    def _role(self, name: str, policy: pulumi.Output[policies.PolicyDocument]) -> aws.iam.Role:
        role = aws.iam.Role(
            name,
            assume_role_policy=policies.to_json(policies.assume_role_policy("ecs-tasks.amazonaws.com")),
            opts=pulumi.ResourceOptions(parent=self),
        )
        aws.iam.RolePolicy(
            name, role=role.id, policy=policy.apply(policies.to_json), opts=pulumi.ResourceOptions(parent=self)
        )
        return role

    def _ingress(self, name: str, group: aws.ec2.SecurityGroup, port: int, **source: pulumi.Input[str]) -> None:
        aws.vpc.SecurityGroupIngressRule(
            name,
            security_group_id=group.id,
            ip_protocol="tcp",
            from_port=port,
            to_port=port,
            **source,
            opts=pulumi.ResourceOptions(parent=self),
        )

    def _listeners(
        self, name: str, args: ServingArgs, load_balancer: aws.lb.LoadBalancer, target_group: aws.lb.TargetGroup
    ) -> list[aws.lb.Listener]:
        child = pulumi.ResourceOptions(parent=self)
        forward = aws.lb.ListenerDefaultActionArgs(type="forward", target_group_arn=target_group.arn)
        redirect = aws.lb.ListenerDefaultActionArgs(
            type="redirect",
            redirect=aws.lb.ListenerDefaultActionRedirectArgs(port="443", protocol="HTTPS", status_code="HTTP_301"),
        )
        # With a certificate, port 80 only redirects to HTTPS; without one, it serves.
        http = aws.lb.Listener(
            f"{name}-http",
            load_balancer_arn=load_balancer.arn,
            port=80,
            protocol="HTTP",
            default_actions=[redirect if args.certificate_arn else forward],
            opts=child,
        )
        if not args.certificate_arn:
            return [http]
        https = aws.lb.Listener(
            f"{name}-https",
            load_balancer_arn=load_balancer.arn,
            port=443,
            protocol="HTTPS",
            ssl_policy=TLS_POLICY,
            certificate_arn=args.certificate_arn,
            default_actions=[forward],
            opts=child,
        )
        return [http, https]

    def _autoscaling(
        self,
        name: str,
        args: ServingArgs,
        cluster: aws.ecs.Cluster,
        service: aws.ecs.Service,
        load_balancer: aws.lb.LoadBalancer,
        target_group: aws.lb.TargetGroup,
    ) -> None:
        child = pulumi.ResourceOptions(parent=self)
        target = aws.appautoscaling.Target(
            f"{name}-scaling",
            service_namespace="ecs",
            scalable_dimension="ecs:service:DesiredCount",
            resource_id=pulumi.Output.concat("service/", cluster.name, "/", service.name),
            min_capacity=args.min_count,
            max_capacity=args.max_count,
            opts=child,
        )
        policies_by_metric = {
            "cpu": (args.cpu_target_percent, "ECSServiceAverageCPUUtilization", None),
            "requests": (
                args.requests_per_target,
                "ALBRequestCountPerTarget",
                pulumi.Output.concat(load_balancer.arn_suffix, "/", target_group.arn_suffix),
            ),
        }
        for metric, (target_value, predefined, label) in policies_by_metric.items():
            aws.appautoscaling.Policy(
                f"{name}-scale-on-{metric}",
                policy_type="TargetTrackingScaling",
                service_namespace=target.service_namespace,
                scalable_dimension=target.scalable_dimension,
                resource_id=target.resource_id,
                target_tracking_scaling_policy_configuration=aws.appautoscaling.PolicyTargetTrackingScalingPolicyConfigurationArgs(
                    target_value=target_value,
                    predefined_metric_specification=aws.appautoscaling.PolicyTargetTrackingScalingPolicyConfigurationPredefinedMetricSpecificationArgs(
                        predefined_metric_type=predefined, resource_label=label
                    ),
                    scale_in_cooldown=120,
                    scale_out_cooldown=60,
                ),
                opts=child,
            )
