"""The one recipe for an IAM role that an AWS service assumes, with its inline policy rendered from policies.py."""

from __future__ import annotations

import pulumi
import pulumi_aws as aws

from components import policies


def service_role(
    name: str, service: str, policy: pulumi.Input[policies.PolicyDocument], parent: pulumi.Resource
) -> aws.iam.Role:
    """A role only `service` (e.g. `states.amazonaws.com`) may assume, with `policy` inline; both named `name`."""
    child = pulumi.ResourceOptions(parent=parent)
    role = aws.iam.Role(name, assume_role_policy=policies.to_json(policies.assume_role_policy(service)), opts=child)
    aws.iam.RolePolicy(name, role=role.id, policy=pulumi.Output.from_input(policy).apply(policies.to_json), opts=child)
    return role
