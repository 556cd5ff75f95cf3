"""`launch-training` against an in-process moto EC2: it starts exactly one instance of the stack's template."""

from __future__ import annotations

import argparse
import json

import boto3
import pytest
from botocore.stub import Stubber
from moto import mock_aws
from workload.cloud import launch
from workload.errors import WorkloadError

REGION = "eu-west-1"


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    launch.configure_parser(parser)
    return parser.parse_args(argv)


@pytest.fixture
def ec2(monkeypatch):
    for key, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
    }.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    monkeypatch.delenv("AWS_ENDPOINT_URL_EC2", raising=False)
    with mock_aws():
        yield boto3.client("ec2", region_name=REGION)


@pytest.fixture
def outputs_file(ec2, tmp_path):
    template = ec2.create_launch_template(
        LaunchTemplateName="training",
        LaunchTemplateData={"ImageId": "ami-0123456789abcdef0", "InstanceType": "c7i.2xlarge"},
    )["LaunchTemplate"]
    path = tmp_path / "outputs.json"
    path.write_text(json.dumps({"training_launch_template_id": template["LaunchTemplateId"], "region": REGION}))
    return path


def test_starts_one_instance_from_the_template_and_prints_its_id(ec2, outputs_file, capsys):
    assert launch.run(parse("--stack-outputs", str(outputs_file))) == 0
    printed = capsys.readouterr().out.strip()
    instances = [i for r in ec2.describe_instances()["Reservations"] for i in r["Instances"]]
    assert [i["InstanceId"] for i in instances] == [printed]
    assert instances[0]["InstanceType"] == "c7i.2xlarge"


def test_dry_run_prints_the_request_and_starts_nothing(ec2, outputs_file, capsys):
    assert launch.run(parse("--stack-outputs", str(outputs_file), "--dry-run")) == 0
    printed = json.loads(capsys.readouterr().out)
    template_id = json.loads(outputs_file.read_text())["training_launch_template_id"]
    assert printed == {
        "region": REGION,
        "RunInstances": {
            "LaunchTemplate": {"LaunchTemplateId": template_id, "Version": "$Default"},
            "MinCount": 1,
            "MaxCount": 1,
        },
    }
    assert ec2.describe_instances()["Reservations"] == []


def test_an_ec2_refusal_is_a_one_line_error(outputs_file, monkeypatch):
    client = boto3.client("ec2", region_name=REGION)
    stubber = Stubber(client)
    stubber.add_client_error("run_instances", "InsufficientInstanceCapacity", "no c7i.2xlarge Spot capacity")
    monkeypatch.setattr(boto3, "client", lambda *args, **kwargs: client)
    with stubber, pytest.raises(WorkloadError, match=r"InsufficientInstanceCapacity: no c7i\.2xlarge Spot capacity"):
        launch.run(parse("--stack-outputs", str(outputs_file)))


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "cannot read stack outputs"),
        ("not json", "is not JSON"),
        ("[1, 2]", "must hold a JSON object"),
        ('{"region": "eu-west-1"}', "lack a launch template id"),
        ('{"training_launch_template_id": "lt-0abc"}', "no region"),
    ],
)
def test_bad_stack_outputs_are_clear_errors(tmp_path, content, message):
    path = tmp_path / "outputs.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(WorkloadError, match=message):
        launch.run(parse("--stack-outputs", str(path), "--dry-run"))
