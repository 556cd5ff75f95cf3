"""Resource recipes that more than one component needs, written once.

Each takes the component that owns the new resources as `parent`, so every child stays parented to it.
"""

from __future__ import annotations

import pulumi
import pulumi_aws as aws

from components import policies


def log_group(parent: pulumi.Resource, name: str, retention_days: int) -> aws.cloudwatch.LogGroup:
    """`/<project>/<stack>/<name>`: one log group per component and stack, expiring after `retention_days`."""
    return aws.cloudwatch.LogGroup(
        f"{name}-logs",
        name=f"/{pulumi.get_project()}/{pulumi.get_stack()}/{name}",
        retention_in_days=retention_days,
        opts=pulumi.ResourceOptions(parent=parent),
    )


def role_with_inline_policy(
    parent: pulumi.Resource,
    name: str,
    service: str,
    policy: pulumi.Input[policies.PolicyDocument],
    source_account: pulumi.Input[str] | None = None,
) -> aws.iam.Role:
    """A role that only `service` (e.g. `ecs-tasks.amazonaws.com`) may assume, granted `policy` inline;
    `source_account` limits it to calls on that account's behalf (the confused-deputy guard)."""
    role = aws.iam.Role(
        name,
        assume_role_policy=pulumi.Output.from_input(source_account).apply(
            lambda account: policies.to_json(policies.assume_role_policy(service, account))
        ),
        opts=pulumi.ResourceOptions(parent=parent),
    )
    aws.iam.RolePolicy(
        name,
        role=role.id,
        policy=pulumi.Output.from_input(policy).apply(policies.to_json),
        opts=pulumi.ResourceOptions(parent=parent),
    )
    return role


def fargate_task_definition(
    parent: pulumi.Resource,
    name: str,
    *,
    cpu: int,
    memory: int,
    execution_role: aws.iam.Role,
    task_role: aws.iam.Role,
    container_definitions: pulumi.Input[str],
) -> aws.ecs.TaskDefinition:
    """A Linux x86-64 Fargate task definition, one family per stack in an account, with the one writable
    `scratch` volume that its read-only containers mount at /tmp."""
    return aws.ecs.TaskDefinition(
        f"{name}-task",
        family=f"{pulumi.get_project()}-{pulumi.get_stack()}-{name}",
        cpu=str(cpu),
        memory=str(memory),
        network_mode="awsvpc",
        requires_compatibilities=["FARGATE"],
        runtime_platform=aws.ecs.TaskDefinitionRuntimePlatformArgs(
            operating_system_family="LINUX", cpu_architecture="X86_64"
        ),
        execution_role_arn=execution_role.arn,
        task_role_arn=task_role.arn,
        volumes=[aws.ecs.TaskDefinitionVolumeArgs(name="scratch")],
        container_definitions=container_definitions,
        opts=pulumi.ResourceOptions(parent=parent),
    )


def _tcp_rule(
    rule_type: type[aws.vpc.SecurityGroupIngressRule] | type[aws.vpc.SecurityGroupEgressRule],
    parent: pulumi.Resource,
    name: str,
    group: aws.ec2.SecurityGroup,
    port: int,
    peer: dict[str, pulumi.Input[str]],
) -> pulumi.CustomResource:
    return rule_type(
        name,
        security_group_id=group.id,
        ip_protocol="tcp",
        from_port=port,
        to_port=port,
        **peer,
        opts=pulumi.ResourceOptions(parent=parent),
    )


def tcp_ingress(
    parent: pulumi.Resource, name: str, group: aws.ec2.SecurityGroup, port: int, **source: pulumi.Input[str]
) -> pulumi.CustomResource:
    """Admit TCP on `port` into `group` from `source` (`cidr_ipv4=` or `referenced_security_group_id=`)."""
    return _tcp_rule(aws.vpc.SecurityGroupIngressRule, parent, name, group, port, source)


def tcp_egress(
    parent: pulumi.Resource, name: str, group: aws.ec2.SecurityGroup, port: int, **destination: pulumi.Input[str]
) -> pulumi.CustomResource:
    """Let `group` open TCP connections on `port` to `destination` (`cidr_ipv4=` or `referenced_security_group_id=`)."""
    return _tcp_rule(aws.vpc.SecurityGroupEgressRule, parent, name, group, port, destination)


def https_egress(
    parent: pulumi.Resource, name: str, group: aws.ec2.SecurityGroup, description: str
) -> pulumi.CustomResource:
    """HTTPS out to anywhere: AWS APIs (and, for training, the package index) for a group with no other egress."""
    return tcp_egress(parent, name, group, 443, cidr_ipv4="0.0.0.0/0", description=description)
