import base64
import dataclasses
import json

import pytest
from infra_mocks import AMI_ID

from components.training import (
    READ_PREFIXES,
    USER_DATA_TEMPLATE,
    WRITE_PREFIXES,
    TrainingArgs,
    TrainingCompute,
    render_user_data,
)

ARGS = TrainingArgs(
    vpc_id="vpc-1",
    subnet_id="subnet-public-a",
    bucket_name="lake-bucket",
    bucket_arn="arn:aws:s3:::lake-bucket",
    kms_key_arn=None,
    repository_arn="arn:aws:ecr:eu-west-1:123456789012:repository/workload",
    image_ref="123456789012.dkr.ecr.eu-west-1.amazonaws.com/workload@sha256:" + "ab" * 32,
    region="eu-west-1",
    instance_type="g6.xlarge",
    ami_ssm_parameter="/aws/service/ecs/optimized-ami/amazon-linux-2023/gpu/recommended/image_id",
    use_spot=True,
    volume_size_gb=80,
    arch="bilstm",
    epochs=4,
    max_run_minutes=90,
    log_retention_days=14,
    serving_model_version="20260101T000000Z-i-0abc",
    run_tags={"project": "imdb-sentiment", "stack": "test", "owner": "me"},
)


def build(args: TrainingArgs = ARGS) -> dict:
    training = TrainingCompute("training", args)
    return {"template": training.launch_template_id, "role": training.role_arn, "logs": training.log_group_name}


def test_launch_template_is_a_self_terminating_imdsv2_spot_gpu_run(run_pulumi, pulumi_mocks):
    out = run_pulumi(build)
    template = pulumi_mocks.one("aws:ec2/launchTemplate:LaunchTemplate")
    assert out["template"] == template.id
    lt = template.inputs
    assert lt["imageId"] == AMI_ID
    assert "aws:ssm/getParameter:getParameter" in pulumi_mocks.calls
    assert lt["instanceType"] == "g6.xlarge"
    assert lt["instanceInitiatedShutdownBehavior"] == "terminate"
    assert lt["metadataOptions"]["httpTokens"] == "required"
    assert lt["metadataOptions"]["httpPutResponseHopLimit"] == 2
    assert lt["instanceMarketOptions"]["marketType"] == "spot"
    (volume,) = lt["blockDeviceMappings"]
    assert volume["ebs"]["encrypted"] == "true" and volume["ebs"]["volumeSize"] == 80
    (interface,) = lt["networkInterfaces"]
    assert interface["subnetId"] == "subnet-public-a"
    assert interface["securityGroups"] == [pulumi_mocks.one("aws:ec2/securityGroup:SecurityGroup").id]
    assert {spec["resourceType"] for spec in lt["tagSpecifications"]} == {"instance", "volume"}
    assert all(spec["tags"]["stack"] == "test" for spec in lt["tagSpecifications"])


def test_on_demand_when_spot_is_off(run_pulumi, pulumi_mocks):
    run_pulumi(lambda: build(dataclasses.replace(ARGS, use_spot=False)))
    assert "instanceMarketOptions" not in pulumi_mocks.one("aws:ec2/launchTemplate:LaunchTemplate").inputs


def test_security_group_admits_nothing_and_only_sends_https(run_pulumi, pulumi_mocks):
    run_pulumi(build)
    group = pulumi_mocks.one("aws:ec2/securityGroup:SecurityGroup")
    assert not group.inputs.get("ingress")
    assert not pulumi_mocks.of_type("aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule")
    (egress,) = pulumi_mocks.of_type("aws:vpc/securityGroupEgressRule:SecurityGroupEgressRule")
    assert (egress.inputs["fromPort"], egress.inputs["toPort"], egress.inputs["ipProtocol"]) == (443, 443, "tcp")


def test_role_reads_and_writes_only_its_prefixes(run_pulumi, pulumi_mocks):
    run_pulumi(build)
    statements = {
        s["Sid"]: s for s in json.loads(pulumi_mocks.one("aws:iam/rolePolicy:RolePolicy").inputs["policy"])["Statement"]
    }
    assert statements["ReadInputs"]["Resource"] == [f"arn:aws:s3:::lake-bucket/{p}*" for p in READ_PREFIXES]
    assert statements["WriteOutputs"]["Resource"] == [f"arn:aws:s3:::lake-bucket/{p}*" for p in WRITE_PREFIXES]
    assert "raw/" not in WRITE_PREFIXES  # the raw archive is never overwritten by a run
    assert statements["PullWorkloadImage"]["Resource"] == ARGS.repository_arn
    log_group_arn = pulumi_mocks.one("aws:cloudwatch/logGroup:LogGroup").state["arn"]
    assert statements["WriteOwnLogGroup"]["Resource"] == f"{log_group_arn}:log-stream:*"
    assert "DataLakeKey" not in statements
    trust = json.loads(pulumi_mocks.one("aws:iam/role:Role").inputs["assumeRolePolicy"])
    assert trust["Statement"][0]["Principal"] == {"Service": "ec2.amazonaws.com"}


def test_user_data_is_rendered_with_the_run_settings(run_pulumi, pulumi_mocks, shell_check):
    out = run_pulumi(build)
    script = base64.b64decode(pulumi_mocks.one("aws:ec2/launchTemplate:LaunchTemplate").inputs["userData"]).decode()
    assert "# @@SETTINGS@@" not in script
    for line in (
        "readonly BUCKET=lake-bucket",
        f"readonly IMAGE={ARGS.image_ref}",
        "readonly REGISTRY=123456789012.dkr.ecr.eu-west-1.amazonaws.com",
        f"readonly LOG_GROUP={out['logs']}",
        "readonly RAW_KEY=raw/aclImdb_v1.tar.gz",
        "readonly PROCESSED_PREFIX=processed/",
        "readonly MODELS_PREFIX=models/",
        "readonly TRAINING_LOGS_PREFIX=logs/training/",
        "readonly ARCH=bilstm",
        "readonly EPOCHS=4",
        "readonly MAX_RUN_MINUTES=90",
    ):
        assert line in script.splitlines(), line
    # evaluate must also work on a train-only tarball in raw/ (no test split)
    assert '"${workload[@]}" evaluate --model "$MODEL_URI" --data "$DATA_URI" --split auto |' in script
    # Termination is armed before the first step that can fail, with a timed shutdown as the backstop.
    assert script.index("trap finish EXIT") < script.index("dnf install")
    assert 'shutdown -h "+${MAX_RUN_MINUTES}"' in script
    shell_check(script)


def test_user_data_writes_only_under_prefixes_the_role_may_write(run_pulumi, pulumi_mocks):
    """The script's S3 paths come from rendered prefixes (the constants the policy uses), so the two cannot drift."""
    template = USER_DATA_TEMPLATE.read_text()
    for prefix in (*READ_PREFIXES, *WRITE_PREFIXES):
        assert f"/{prefix}" not in template, f"{prefix} is hard-coded in the template"
    run_pulumi(build)
    script = base64.b64decode(pulumi_mocks.one("aws:ec2/launchTemplate:LaunchTemplate").inputs["userData"]).decode()
    lines = script.splitlines()
    settings = dict(line.removeprefix("readonly ").split("=", 1) for line in lines if line.startswith("readonly "))
    for variable in ("PROCESSED_PREFIX", "MODELS_PREFIX", "TRAINING_LOGS_PREFIX"):
        assert settings[variable].startswith(WRITE_PREFIXES), variable
        assert f"${{BUCKET}}/${{{variable}}}" in script, f"{variable} is never used"


def test_settings_are_shell_quoted():
    script = render_user_data({"BUCKET": "x'; rm -rf / #"})
    assert "readonly BUCKET='x'\"'\"'; rm -rf / #'" in script


def test_shell_check_rejects_a_broken_script(shell_check):
    """The user-data checks must be able to fail: a script with an unquoted expansion and a syntax error."""
    with pytest.raises(AssertionError, match="shellcheck"):
        shell_check("#!/bin/bash\nrm -rf $1/tmp\n")
    with pytest.raises(AssertionError, match="bash"):
        shell_check("#!/bin/bash\nif true; then\n")


ECS_AMI = "/aws/service/ecs/optimized-ami/amazon-linux-2023/{}recommended/image_id"


@pytest.mark.parametrize(
    ("instance_type", "variant"),
    [("c7i.xlarge", ""), ("g6.xlarge", "gpu/"), ("p5.48xlarge", "gpu/"), ("c7g.xlarge", "arm64/"),
     ("m7gd.large", "arm64/"), ("a1.large", "arm64/"), ("inf2.xlarge", "neuron/")],
)  # fmt: skip
def test_an_ecs_ami_of_the_variant_the_instance_type_needs_is_accepted(instance_type, variant):
    dataclasses.replace(ARGS, instance_type=instance_type, ami_ssm_parameter=ECS_AMI.format(variant))


@pytest.mark.parametrize(
    ("instance_type", "variant", "message"),
    [
        # EC2 refuses to launch it, but only when a run starts, long after `pulumi up` succeeded
        ("c7g.xlarge", "", "is the x86_64 ECS-optimised AMI, but trainingInstanceType c7g.xlarge needs the arm64"),
        # launches, without the NVIDIA driver: the run trains on the CPU of a GPU-priced instance
        ("g6.xlarge", "", "is the x86_64 ECS-optimised AMI, but trainingInstanceType g6.xlarge needs the gpu"),
        # a GPU instance's price for a CPU run (the x86 GPU AMI boots on it, to no purpose)
        ("c7i.xlarge", "gpu/", "is the gpu ECS-optimised AMI, but trainingInstanceType c7i.xlarge needs the x86_64"),
    ],
)
def test_an_ecs_ami_of_another_variant_is_refused_at_preview(instance_type, variant, message):
    with pytest.raises(ValueError, match=message):
        dataclasses.replace(ARGS, instance_type=instance_type, ami_ssm_parameter=ECS_AMI.format(variant))


def test_a_custom_ami_parameter_is_left_to_its_owner():
    dataclasses.replace(ARGS, instance_type="c7g.xlarge", ami_ssm_parameter="/team/ami/training-arm64")
