import pytest

from components.network import Network, NetworkArgs


def build(mode: str) -> dict:
    network = Network("net", NetworkArgs(cidr_block="10.0.0.0/16", network_mode=mode, region="eu-west-1"))
    return {
        "public": network.public_subnet_ids,
        "tasks": network.task_subnet_ids,
        "public_ip": network.tasks_get_public_ip,
    }


def subnets_by_id(mocks) -> dict:
    return {s.id: s.inputs for s in mocks.of_type("aws:ec2/subnet:Subnet")}


def test_public_mode_runs_tasks_in_the_public_subnets_of_two_zones(run_pulumi, pulumi_mocks):
    out = run_pulumi(lambda: build("public"))
    assert out["tasks"] == out["public"] and out["public_ip"] is True
    subnets = subnets_by_id(pulumi_mocks)
    assert [subnets[i]["availabilityZone"] for i in out["public"]] == ["eu-west-1a", "eu-west-1b"]
    assert not pulumi_mocks.of_type("aws:ec2/natGateway:NatGateway")
    assert not pulumi_mocks.of_type("aws:ec2/vpcEndpoint:VpcEndpoint")
    (table,) = pulumi_mocks.of_type("aws:ec2/routeTable:RouteTable")
    igw = pulumi_mocks.one("aws:ec2/internetGateway:InternetGateway")
    assert table.inputs["routes"] == [{"cidrBlock": "0.0.0.0/0", "gatewayId": igw.id}]


def test_private_nat_mode_gives_each_zone_its_own_nat_gateway(run_pulumi, pulumi_mocks):
    out = run_pulumi(lambda: build("private-nat"))
    assert not set(out["tasks"]) & set(out["public"]) and out["public_ip"] is False
    nats = pulumi_mocks.of_type("aws:ec2/natGateway:NatGateway")
    assert sorted(n.inputs["subnetId"] for n in nats) == sorted(out["public"])
    default_routes = pulumi_mocks.of_type("aws:ec2/route:Route")
    assert sorted(r.inputs["natGatewayId"] for r in default_routes) == sorted(n.id for n in nats)


def test_private_endpoints_mode_has_no_internet_route_for_tasks(run_pulumi, pulumi_mocks):
    out = run_pulumi(lambda: build("private-endpoints"))
    assert out["public_ip"] is False
    assert not pulumi_mocks.of_type("aws:ec2/natGateway:NatGateway")
    assert not pulumi_mocks.of_type("aws:ec2/route:Route")
    endpoints = {e.inputs["serviceName"]: e.inputs for e in pulumi_mocks.of_type("aws:ec2/vpcEndpoint:VpcEndpoint")}
    prefix = "com.amazonaws.eu-west-1."
    assert set(endpoints) == {prefix + s for s in ("s3", "ecr.api", "ecr.dkr", "logs", "monitoring")}
    assert endpoints[prefix + "s3"]["vpcEndpointType"] == "Gateway"
    for service in ("ecr.api", "ecr.dkr", "logs", "monitoring"):
        assert endpoints[prefix + service]["subnetIds"] == out["tasks"]
        assert endpoints[prefix + service]["privateDnsEnabled"] is True
    (https,) = pulumi_mocks.of_type("aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule")
    assert (https.inputs["cidrIpv4"], https.inputs["fromPort"], https.inputs["toPort"]) == ("10.0.0.0/16", 443, 443)


@pytest.mark.parametrize(("mode", "cidr"), [("nat-please", "10.0.0.0/16"), ("public", "10.0.0.300/16")])
def test_bad_network_settings_are_rejected_with_the_value(mode, cidr):
    with pytest.raises(ValueError, match=r"nat-please|10\.0\.0\.300"):
        NetworkArgs(cidr_block=cidr, network_mode=mode, region="eu-west-1")
