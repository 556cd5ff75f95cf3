"""Serving: the API on ECS Fargate behind an Application Load Balancer, with autoscaling.

The container listens on two ports: the app port, the only one the load balancer forwards traffic to, and the
ops port, served by the gunicorn master rather than the inference workers, for health checks (and the
operator-only /metrics and /openapi.json, which the public never reaches). ECS's container health check asks
the ops port for liveness (`/health/live`): a task busy with inference is alive and must not be replaced. The
target group asks it for readiness (`/health`): traffic goes only to a task whose model is loaded.

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

from components import policies, recipes
from components.canary import CanaryArgs, CanaryRelease, CanarySettings
from components.storage import CAPTURE_PREFIX, MODELS_PREFIX

CONTAINER_NAME = "api"
APP_PORT = 8080
OPS_PORT = 8081
READINESS_PATH = "/health"
LIVENESS_PATH = "/health/live"
# A request may run up to the worker timeout; on deregistration (deployments, scale-in) the load balancer keeps
# in-flight requests this much longer than that before ECS stops the task.
DRAIN_MARGIN_SECONDS = 5
# After SIGTERM gunicorn gives workers the worker timeout to finish; ECS waits this much longer before SIGKILL.
STOP_MARGIN_SECONDS = 5
FARGATE_MAX_STOP_TIMEOUT = 120
APP_USER = "10001:10001"  # the non-root user baked into workload/Dockerfile
TLS_POLICY = "ELBSecurityPolicy-TLS13-1-2-2021-06"
ECS_TASKS_PRINCIPAL = "ecs-tasks.amazonaws.com"


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
    capture_environment: pulumi.Input[dict[str, str]]
    """CAPTURE_PERCENT, CAPTURE_URI, CAPTURE_TEXT for the container (see ModelMonitoring.capture_environment)."""
    region: str
    cpu: int
    memory: int
    desired_count: int
    min_count: int
    max_count: int
    cpu_target_percent: int
    requests_per_target: int
    health_check_grace_seconds: int
    worker_timeout_seconds: int
    """The longest a request may run (gunicorn's worker timeout): set in the container, and the drain and stop
    timeouts are derived from it."""
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
        if not 1 <= self.worker_timeout_seconds <= FARGATE_MAX_STOP_TIMEOUT - STOP_MARGIN_SECONDS:
            raise ValueError(
                f"workerTimeoutSeconds must be 1..{FARGATE_MAX_STOP_TIMEOUT - STOP_MARGIN_SECONDS} (Fargate stops a "
                f"container at most {FARGATE_MAX_STOP_TIMEOUT} s after SIGTERM), got {self.worker_timeout_seconds}"
            )


class Serving(pulumi.ComponentResource):
    endpoint: pulumi.Output[str]
    cluster_name: pulumi.Output[str]
    cluster_arn: pulumi.Output[str]
    service_name: pulumi.Output[str]
    load_balancer_arn_suffix: pulumi.Output[str]
    target_group_arn_suffix: pulumi.Output[str]
    task_definition_arn: pulumi.Output[str]
    """The revision this update deployed: after `pulumi up`, the service's PRIMARY deployment must run it."""

    def __init__(self, name: str, args: ServingArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("imdb-sentiment:serving:Serving", name, None, opts)
        self._name = name
        self._args = args
        cluster = aws.ecs.Cluster(
            f"{name}-cluster",
            settings=[aws.ecs.ClusterSettingArgs(name="containerInsights", value="enabled")],
            opts=pulumi.ResourceOptions(parent=self),
        )
        task_definition = self._task_definition()
        alb_sg, task_sg = self._security_groups()
        load_balancer = aws.lb.LoadBalancer(
            f"{name}-alb",
            load_balancer_type="application",
            subnets=list(args.public_subnet_ids),
            security_groups=[alb_sg.id],
            drop_invalid_header_fields=True,
            enable_deletion_protection=args.deletion_protection,
            opts=pulumi.ResourceOptions(parent=self),
        )
        target_group = self._target_group(f"{name}-tg")
        listeners = self._listeners(load_balancer, target_group)
        canary = (
            CanaryRelease(
                f"{name}-canary",
                CanaryArgs(
                    settings=args.canary,
                    listener_arn=listeners[-1].arn,  # the one that forwards: HTTPS when there is a certificate
                    load_balancer_arn_suffix=load_balancer.arn_suffix,
                    target_groups=(target_group, self._target_group(f"{name}-tg-alternate")),
                ),
                opts=pulumi.ResourceOptions(parent=self),
            )
            if args.canary
            else None
        )
        service = self._service(cluster, task_definition, task_sg, target_group, listeners, canary)
        self._autoscaling(cluster, service, load_balancer, target_group)

        # With a certificate this is still the load balancer's own name, which no ACM certificate covers: clients
        # use the certificate's domain, pointed at the load balancer (see certificateArn in Pulumi.yaml).
        scheme = "https" if args.certificate_arn else "http"
        self.endpoint = load_balancer.dns_name.apply(lambda dns: f"{scheme}://{dns}")
        self.cluster_name = cluster.name
        self.cluster_arn = cluster.arn
        self.service_name = service.name
        self.load_balancer_arn_suffix = load_balancer.arn_suffix
        self.target_group_arn_suffix = target_group.arn_suffix
        self.task_definition_arn = task_definition.arn
        self.register_outputs(
            {
                "endpoint": self.endpoint,
                "cluster_name": self.cluster_name,
                "cluster_arn": self.cluster_arn,
                "service_name": self.service_name,
                "task_definition_arn": self.task_definition_arn,
            }
        )

    def _task_definition(self) -> aws.ecs.TaskDefinition:
        name, args = self._name, self._args
        log_group = recipes.log_group(self, name, args.log_retention_days)
        execution_role = recipes.role_with_inline_policy(
            self,
            f"{name}-execution",
            ECS_TASKS_PRINCIPAL,
            pulumi.Output.all(repository_arn=args.repository_arn, log_group_arn=log_group.arn).apply(
                lambda a: policies.execution_policy(**a)
            ),
        )
        task_role = recipes.role_with_inline_policy(
            self,
            f"{name}-task",
            ECS_TASKS_PRINCIPAL,
            pulumi.Output.all(bucket_arn=args.bucket_arn, kms_key_arn=args.kms_key_arn).apply(
                lambda a: policies.task_policy(models_prefix=MODELS_PREFIX, capture_prefix=CAPTURE_PREFIX, **a)
            ),
        )
        # Read-only root filesystem: /tmp (model cache, gunicorn heartbeat files) is the only writable path.
        return recipes.fargate_task_definition(
            self,
            name,
            cpu=args.cpu,
            memory=args.memory,
            execution_role=execution_role,
            task_role=task_role,
            container_definitions=pulumi.Output.all(
                image=args.image_ref,
                model_uri=args.model_uri,
                log_group=log_group.name,
                capture=args.capture_environment,
            ).apply(
                lambda a: json.dumps(
                    [self._container(region=args.region, worker_timeout=args.worker_timeout_seconds, **a)]
                )
            ),
        )

    def _security_groups(self) -> tuple[aws.ec2.SecurityGroup, aws.ec2.SecurityGroup]:
        """The load balancer's group (HTTP and HTTPS from anywhere, out only to the tasks) and the tasks' group
        (in only from the load balancer, out only HTTPS to AWS APIs)."""
        name, child = self._name, pulumi.ResourceOptions(parent=self)
        alb_sg = aws.ec2.SecurityGroup(
            f"{name}-alb",
            vpc_id=self._args.vpc_id,
            description="Load balancer: HTTP and HTTPS from anywhere",
            opts=child,
        )
        task_sg = aws.ec2.SecurityGroup(
            f"{name}-tasks",
            vpc_id=self._args.vpc_id,
            description="API tasks: only the load balancer may connect",
            opts=child,
        )
        for port in (80, 443):
            recipes.tcp_ingress(self, f"{name}-alb-{port}", alb_sg, port, cidr_ipv4="0.0.0.0/0")
        recipes.tcp_ingress(self, f"{name}-tasks-from-alb", task_sg, APP_PORT, referenced_security_group_id=alb_sg.id)
        recipes.tcp_egress(self, f"{name}-alb-to-tasks", alb_sg, APP_PORT, referenced_security_group_id=task_sg.id)
        # The target group's health checks reach the ops port; nothing else from outside does.
        recipes.tcp_ingress(
            self, f"{name}-tasks-ops-from-alb", task_sg, OPS_PORT, referenced_security_group_id=alb_sg.id
        )
        recipes.tcp_egress(self, f"{name}-alb-to-tasks-ops", alb_sg, OPS_PORT, referenced_security_group_id=task_sg.id)
        recipes.https_egress(self, f"{name}-tasks-https-out", task_sg, "ECR, S3 and CloudWatch Logs")
        return alb_sg, task_sg

    def _target_group(self, name: str) -> aws.lb.TargetGroup:
        return aws.lb.TargetGroup(
            name,
            port=APP_PORT,  # the only port that gets traffic: /metrics and /openapi.json stay on the ops port
            protocol="HTTP",
            target_type="ip",
            vpc_id=self._args.vpc_id,
            # Long enough for a request that runs to the worker timeout; far below the 300 s default.
            deregistration_delay=self._args.worker_timeout_seconds + DRAIN_MARGIN_SECONDS,
            health_check=aws.lb.TargetGroupHealthCheckArgs(
                port=str(OPS_PORT),  # answered by the gunicorn master, so saturated workers do not fail it
                path=READINESS_PATH,
                matcher="200",
                interval=15,
                timeout=5,
                healthy_threshold=2,
                unhealthy_threshold=3,
            ),
            opts=pulumi.ResourceOptions(parent=self),
        )

    def _service(
        self,
        cluster: aws.ecs.Cluster,
        task_definition: aws.ecs.TaskDefinition,
        task_sg: aws.ec2.SecurityGroup,
        target_group: aws.lb.TargetGroup,
        listeners: list[aws.lb.Listener],
        canary: CanaryRelease | None,
    ) -> aws.ecs.Service:
        args = self._args
        return aws.ecs.Service(
            f"{self._name}-service",
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
                    container_port=APP_PORT,
                    advanced_configuration=canary.advanced_configuration if canary else None,
                )
            ],
            deployment_configuration=canary.deployment_configuration if canary else None,
            alarms=canary.alarms if canary else None,
            # Ctrl-C during a (long, baking) canary rolls the deployment back instead of leaving it half-done.
            sigint_rollback=bool(canary),
            propagate_tags="SERVICE",
            # `pulumi up` returns only once ECS has finished the rollout, so a release that never turns healthy
            # fails the update instead of being reported as deployed (see scripts/check_deployment.py).
            wait_for_steady_state=True,
            # Autoscaling owns the running count after creation; `pulumi up` must not reset it.
            opts=pulumi.ResourceOptions(parent=self, depends_on=listeners, ignore_changes=["desiredCount"]),
        )

    @staticmethod
    def _container(
        *, image: str, model_uri: str, log_group: str, capture: dict[str, str], region: str, worker_timeout: int
    ) -> dict[str, Any]:
        liveness_url = f"http://127.0.0.1:{OPS_PORT}{LIVENESS_PATH}"
        environment = {
            "MODEL_URI": model_uri,
            "OPS_PORT": str(OPS_PORT),
            "GUNICORN_TIMEOUT": str(worker_timeout),
            "GUNICORN_GRACEFUL_TIMEOUT": str(worker_timeout),
            **capture,
        }
        return {
            "name": CONTAINER_NAME,
            "image": image,
            "essential": True,
            "user": APP_USER,
            "readonlyRootFilesystem": True,
            "portMappings": [
                {"name": "app", "containerPort": APP_PORT, "protocol": "tcp"},
                {"name": "ops", "containerPort": OPS_PORT, "protocol": "tcp"},
            ],
            "environment": [{"name": key, "value": value} for key, value in environment.items()],
            # The image declares VOLUME /tmp, so this empty task volume starts writable for the app user.
            "mountPoints": [{"sourceVolume": "scratch", "containerPath": "/tmp", "readOnly": False}],
            "healthCheck": {
                "command": [
                    "CMD",
                    "python",
                    "-c",
                    f"import urllib.request; urllib.request.urlopen('{liveness_url}', timeout=2)",
                ],
                "interval": 15,
                "timeout": 5,
                "retries": 3,
                "startPeriod": 60,
            },
            "stopTimeout": worker_timeout + STOP_MARGIN_SECONDS,
            "logConfiguration": {
                "logDriver": "awslogs",
                "options": {"awslogs-group": log_group, "awslogs-region": region, "awslogs-stream-prefix": "api"},
            },
        }

    def _listeners(self, load_balancer: aws.lb.LoadBalancer, target_group: aws.lb.TargetGroup) -> list[aws.lb.Listener]:
        name, args, child = self._name, self._args, pulumi.ResourceOptions(parent=self)
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
        cluster: aws.ecs.Cluster,
        service: aws.ecs.Service,
        load_balancer: aws.lb.LoadBalancer,
        target_group: aws.lb.TargetGroup,
    ) -> None:
        name, args, child = self._name, self._args, pulumi.ResourceOptions(parent=self)
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
