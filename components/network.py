"""The VPC: two availability zones, public subnets for the load balancer, and subnets for the API tasks.

`network_mode` decides where the Fargate tasks run and how they reach ECR, S3 and CloudWatch Logs
(us-east-1 list prices, two AZs, 730 h/month, before data charges):

- ``public``: tasks in the public subnets with a public IP; their security group admits only the load
  balancer, so nothing on the internet can reach them directly. Cheapest: ~$3.65/month per running task
  for its public IPv4 address, no gateways. Good for dev.
- ``private-nat``: tasks in private subnets, one NAT gateway per AZ (no cross-AZ dependency):
  2 x $0.045/h = ~$66/month plus $0.045/GB processed (image pulls count). Tasks can reach the whole internet.
- ``private-endpoints``: tasks in private subnets with no route to the internet at all; interface endpoints
  for ECR API, ECR Docker, CloudWatch Logs and CloudWatch metrics (the monitoring job's PutMetricData)
  (4 x 2 AZ x $0.01/h = ~$58/month plus $0.01/GB) and a free S3 gateway endpoint (image layers, model bundles
  and captured requests go through S3 at no charge). Cheaper than NAT at this traffic and tighter: the tasks
  cannot talk to anything but those AWS services. Used by prod.

The training instance always uses a public subnet with a public IP (and a security group with no inbound
rules): it installs PyTorch from the Python package index, and it lives only for one run.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Literal, get_args

import pulumi
import pulumi_aws as aws

from components import recipes

NetworkMode = Literal["public", "private-nat", "private-endpoints"]
NETWORK_MODES: tuple[str, ...] = get_args(NetworkMode)
AZ_COUNT = 2
# Interface endpoints the Fargate tasks need without a NAT gateway: pulling from ECR and shipping logs (every
# task), publishing the drift metrics (the monitoring job; CloudWatch's endpoint name is `monitoring`).
INTERFACE_ENDPOINT_SERVICES = ("ecr.api", "ecr.dkr", "logs", "monitoring")


@dataclass(frozen=True)
class NetworkArgs:
    cidr_block: str
    network_mode: NetworkMode
    region: str

    def __post_init__(self) -> None:
        if self.network_mode not in NETWORK_MODES:
            raise ValueError(f"networkMode must be one of {', '.join(NETWORK_MODES)}, not {self.network_mode!r}")
        ipaddress.ip_network(self.cidr_block)  # raises ValueError with the offending value


class Network(pulumi.ComponentResource):
    vpc_id: pulumi.Output[str]
    public_subnet_ids: list[pulumi.Output[str]]
    task_subnet_ids: list[pulumi.Output[str]]
    tasks_get_public_ip: bool

    def __init__(self, name: str, args: NetworkArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("imdb-sentiment:network:Network", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        # /20 blocks: 4k addresses each, room for 16 subnets in a /16.
        subnet_cidrs = [str(net) for net in ipaddress.ip_network(args.cidr_block).subnets(new_prefix=20)]
        zones = aws.get_availability_zones_output(state="available", opts=pulumi.InvokeOutputOptions(parent=self))

        vpc = aws.ec2.Vpc(
            f"{name}-vpc",
            cidr_block=args.cidr_block,
            enable_dns_hostnames=True,  # interface endpoints' private DNS needs both DNS flags
            enable_dns_support=True,
            tags={"Name": f"{name}-vpc"},
            opts=child,
        )
        gateway = aws.ec2.InternetGateway(f"{name}-igw", vpc_id=vpc.id, opts=child)
        public_routes = aws.ec2.RouteTable(
            f"{name}-public",
            vpc_id=vpc.id,
            routes=[aws.ec2.RouteTableRouteArgs(cidr_block="0.0.0.0/0", gateway_id=gateway.id)],
            opts=child,
        )
        public_subnets = [
            self._subnet(f"{name}-public-{index}", vpc, subnet_cidrs[index], zones.names[index], public_routes)
            for index in range(AZ_COUNT)
        ]
        self.vpc_id = vpc.id
        self.public_subnet_ids = [subnet.id for subnet in public_subnets]
        self.tasks_get_public_ip = args.network_mode == "public"

        if args.network_mode == "public":
            self.task_subnet_ids = self.public_subnet_ids
        else:
            private_subnets = []
            private_route_tables = []
            for index in range(AZ_COUNT):
                routes = aws.ec2.RouteTable(f"{name}-private-{index}", vpc_id=vpc.id, opts=child)
                if args.network_mode == "private-nat":
                    nat = aws.ec2.NatGateway(
                        f"{name}-nat-{index}",
                        allocation_id=aws.ec2.Eip(f"{name}-nat-{index}", domain="vpc", opts=child).id,
                        subnet_id=public_subnets[index].id,
                        opts=pulumi.ResourceOptions(parent=self, depends_on=[gateway]),
                    )
                    aws.ec2.Route(
                        f"{name}-private-{index}-default",
                        route_table_id=routes.id,
                        destination_cidr_block="0.0.0.0/0",
                        nat_gateway_id=nat.id,
                        opts=child,
                    )
                cidr = subnet_cidrs[AZ_COUNT + index]
                private_subnets.append(self._subnet(f"{name}-private-{index}", vpc, cidr, zones.names[index], routes))
                private_route_tables.append(routes)
            self.task_subnet_ids = [subnet.id for subnet in private_subnets]
            if args.network_mode == "private-endpoints":
                self._endpoints(name, args, vpc, private_route_tables)

        self.register_outputs(
            {
                "vpc_id": self.vpc_id,
                "public_subnet_ids": self.public_subnet_ids,
                "task_subnet_ids": self.task_subnet_ids,
            }
        )

    def _subnet(
        self,
        name: str,
        vpc: aws.ec2.Vpc,
        cidr: str,
        zone: pulumi.Input[str],
        routes: aws.ec2.RouteTable,
    ) -> aws.ec2.Subnet:
        subnet = aws.ec2.Subnet(
            name,
            vpc_id=vpc.id,
            cidr_block=cidr,
            availability_zone=zone,
            tags={"Name": name},
            opts=pulumi.ResourceOptions(parent=self),
        )
        aws.ec2.RouteTableAssociation(
            name, subnet_id=subnet.id, route_table_id=routes.id, opts=pulumi.ResourceOptions(parent=self)
        )
        return subnet

    def _endpoints(
        self, name: str, args: NetworkArgs, vpc: aws.ec2.Vpc, route_tables: list[aws.ec2.RouteTable]
    ) -> None:
        child = pulumi.ResourceOptions(parent=self)
        endpoint_sg = aws.ec2.SecurityGroup(
            f"{name}-endpoints",
            vpc_id=vpc.id,
            description="HTTPS from inside the VPC to the AWS service endpoints",
            opts=child,
        )
        recipes.tcp_ingress(
            self,
            f"{name}-endpoints-https",
            endpoint_sg,
            443,
            cidr_ipv4=args.cidr_block,
            description="HTTPS from the VPC",
        )
        aws.ec2.VpcEndpoint(
            f"{name}-s3",
            vpc_id=vpc.id,
            service_name=f"com.amazonaws.{args.region}.s3",
            vpc_endpoint_type="Gateway",
            route_table_ids=[table.id for table in route_tables],
            opts=child,
        )
        for service in INTERFACE_ENDPOINT_SERVICES:
            aws.ec2.VpcEndpoint(
                f"{name}-{service.replace('.', '-')}",
                vpc_id=vpc.id,
                service_name=f"com.amazonaws.{args.region}.{service}",
                vpc_endpoint_type="Interface",
                private_dns_enabled=True,
                subnet_ids=self.task_subnet_ids,
                security_group_ids=[endpoint_sg.id],
                opts=child,
            )
