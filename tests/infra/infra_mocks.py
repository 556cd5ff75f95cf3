"""Pulumi mocks that fabricate realistic computed outputs (ARNs, names, ids, digests) and record every resource.

Shared by the in-process component tests (through conftest fixtures) and the whole-program runner script.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import pulumi

ACCOUNT = "123456789012"
REGION = "eu-west-1"
ZONES = ["eu-west-1a", "eu-west-1b", "eu-west-1c"]
AMI_ID = "ami-0123456789abcdef0"


@dataclass
class Recorded:
    type: str
    name: str
    id: str
    inputs: dict[str, Any]
    state: dict[str, Any]
    provider: str


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _short(text: str) -> str:
    return _digest(text)[:12]


def _outputs_for(typ: str, name: str, inputs: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """Return (id, extra computed state) the way AWS would, for the types the program uses."""
    arn_prefix = f"arn:aws:{{}}:{REGION}:{ACCOUNT}"
    given_name = inputs.get("name") or f"{name}-{_short(name)[:7]}"
    match typ:
        case "aws:s3/bucket:Bucket":
            bucket = inputs.get("bucket") or f"{name}-{_short(name)[:7]}"
            return bucket, {"bucket": bucket, "arn": f"arn:aws:s3:::{bucket}"}
        case "aws:ecr/repository:Repository":
            return given_name, {
                "name": given_name,
                "arn": f"{arn_prefix.format('ecr')}:repository/{given_name}",
                "registryId": ACCOUNT,
                "repositoryUrl": f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/{given_name}",
            }
        case "docker:index/image:Image":
            image_name = inputs["imageName"]
            base = image_name.rsplit(":", 1)[0]
            return image_name, {"baseImageName": base, "repoDigest": f"{base}@sha256:{_digest(image_name)}"}
        case "aws:cloudwatch/logGroup:LogGroup":
            return given_name, {"name": given_name, "arn": f"{arn_prefix.format('logs')}:log-group:{given_name}"}
        case "aws:iam/role:Role" | "aws:iam/instanceProfile:InstanceProfile":
            kind = "role" if typ.endswith("Role") else "instance-profile"
            return given_name, {"name": given_name, "arn": f"arn:aws:iam::{ACCOUNT}:{kind}/{given_name}"}
        case "aws:lb/loadBalancer:LoadBalancer":
            suffix = f"app/{given_name}/{_short(name)}"
            return f"{arn_prefix.format('elasticloadbalancing')}:loadbalancer/{suffix}", {
                "name": given_name,
                "arn": f"{arn_prefix.format('elasticloadbalancing')}:loadbalancer/{suffix}",
                "arnSuffix": suffix,
                "dnsName": f"{given_name}-{_short(name)[:9]}.{REGION}.elb.amazonaws.com",
            }
        case "aws:lb/targetGroup:TargetGroup":
            suffix = f"targetgroup/{given_name}/{_short(name)}"
            arn = f"{arn_prefix.format('elasticloadbalancing')}:{suffix}"
            return arn, {"name": given_name, "arn": arn, "arnSuffix": suffix}
        case "aws:ecs/cluster:Cluster":
            arn = f"{arn_prefix.format('ecs')}:cluster/{given_name}"
            return arn, {"name": given_name, "arn": arn}
        case "aws:ecs/service:Service":
            return f"{arn_prefix.format('ecs')}:service/{given_name}", {"name": given_name}
        case "aws:ecs/taskDefinition:TaskDefinition":
            arn = f"{arn_prefix.format('ecs')}:task-definition/{inputs.get('family', name)}:1"
            return arn, {"arn": arn, "revision": 1}
        case "aws:sns/topic:Topic":
            arn = f"{arn_prefix.format('sns')}:{given_name}"
            return arn, {"name": given_name, "arn": arn}
        case "aws:kms/key:Key":
            key_id = f"{_short(name)}-0000-0000-0000-000000000000"
            return key_id, {"keyId": key_id, "arn": f"{arn_prefix.format('kms')}:key/{key_id}"}
        case "aws:ec2/launchTemplate:LaunchTemplate":
            template_id = f"lt-{_short(name)[:17]}"
            return template_id, {"arn": f"{arn_prefix.format('ec2')}:launch-template/{template_id}", "latestVersion": 1}
        case "aws:lb/listener:Listener" | "aws:lb/listenerRule:ListenerRule":
            kind = "listener" if typ.endswith("Listener") else "listener-rule"
            path = f"app/api-alb/{_short('alb')}/{_short(name)}" + ("" if kind == "listener" else f"/{_short(kind)}")
            arn = f"{arn_prefix.format('elasticloadbalancing')}:{kind}/{path}"
            return arn, {"arn": arn}
        case "aws:cloudwatch/metricAlarm:MetricAlarm":
            return given_name, {"name": given_name, "arn": f"{arn_prefix.format('cloudwatch')}:alarm:{given_name}"}
        case "aws:sfn/stateMachine:StateMachine":
            arn = f"{arn_prefix.format('states')}:stateMachine:{given_name}"
            return arn, {"name": given_name, "arn": arn}
        case "aws:cloudwatch/dashboard:Dashboard":
            return inputs["dashboardName"], {}
        case "aws:ec2/securityGroup:SecurityGroup":
            return f"sg-{_short(name)}", {"arn": f"{arn_prefix.format('ec2')}:security-group/sg-{_short(name)}"}
        case "aws:ec2/vpc:Vpc" | "aws:ec2/subnet:Subnet":
            prefix = "vpc" if typ.endswith("Vpc") else "subnet"
            return f"{prefix}-{_short(name)}", {}
    return f"{name}-id", {}


class RecordingMocks(pulumi.runtime.Mocks):
    def __init__(self) -> None:
        self.resources: list[Recorded] = []
        self.calls: list[str] = []

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict[str, Any]]:
        resource_id, computed = _outputs_for(args.typ, args.name, args.inputs)
        state = {**args.inputs, **computed}
        self.resources.append(Recorded(args.typ, args.name, resource_id, dict(args.inputs), state, args.provider))
        return resource_id, state

    def call(self, args: pulumi.runtime.MockCallArgs) -> tuple[dict[str, Any], list[tuple[str, str]]]:
        self.calls.append(args.token)
        match args.token:
            case "aws:index/getAvailabilityZones:getAvailabilityZones":
                return {"names": ZONES, "zoneIds": [f"euw1-az{i}" for i in range(1, 4)], "id": REGION}, []
            case "aws:ecr/getAuthorizationToken:getAuthorizationToken":
                return {
                    "authorizationToken": "QVdTOnNlY3JldA==",
                    "userName": "AWS",
                    "password": "secret",
                    "proxyEndpoint": f"https://{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com",
                    "expiresAt": "2099-01-01T00:00:00Z",
                    "id": REGION,
                }, []
            case "aws:ssm/getParameter:getParameter":
                return {"name": args.args["name"], "value": AMI_ID, "type": "String", "id": args.args["name"]}, []
            case "aws:index/getCallerIdentity:getCallerIdentity":
                return {"accountId": ACCOUNT, "arn": f"arn:aws:iam::{ACCOUNT}:user/test", "userId": "AIDA"}, []
            case "aws:index/getPartition:getPartition":
                return {
                    "partition": "aws",
                    "dnsSuffix": "amazonaws.com",
                    "reverseDnsPrefix": "com.amazonaws",
                    "id": "aws",
                }, []
            case "aws:index/getRegion:getRegion":
                return {"name": REGION, "region": REGION, "id": REGION}, []
        raise NotImplementedError(f"the mocks do not answer {args.token}")

    def of_type(self, typ: str) -> list[Recorded]:
        return [resource for resource in self.resources if resource.type == typ]

    def one(self, typ: str) -> Recorded:
        found = self.of_type(typ)
        assert len(found) == 1, f"expected exactly one {typ}, found {[r.name for r in found]}"
        return found[0]


def record_resource_options() -> dict[str, pulumi.ResourceOptions]:
    """Collect every resource's options by name from now on, through a stack transformation (which the SDK
    applies in-process, unlike the engine-side transforms, so it also works under mocks)."""
    options: dict[str, pulumi.ResourceOptions] = {}

    def record(args: pulumi.ResourceTransformationArgs) -> None:
        options[args.name] = args.opts

    pulumi.runtime.register_stack_transformation(record)
    return options
