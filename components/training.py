"""Training compute: a launch template for one-shot training instances, with no instance left running.

`python -m workload launch-training --stack-outputs FILE` starts a run from the template; the instance runs
`templates/training_user_data.sh` and terminates itself when done (or failed).

The role reads `raw/`, `processed/` and `models/`, and writes `processed/`, `models/` and `logs/`: the run's
own ingest writes the processed data it trains on, and `evaluate` re-reads the bundle it just published from
S3 so the published copy is what gets scored. Nothing may delete.
"""

from __future__ import annotations

import base64
import re
import shlex
from dataclasses import dataclass
from pathlib import Path

import pulumi
import pulumi_aws as aws

from components import policies, recipes
from components.storage import LOGS_PREFIX, MODELS_PREFIX, PROCESSED_PREFIX, RAW_PREFIX

USER_DATA_TEMPLATE = Path(__file__).parent / "templates" / "training_user_data.sh"
SETTINGS_MARKER = "# @@SETTINGS@@"
READ_PREFIXES = (RAW_PREFIX, PROCESSED_PREFIX, MODELS_PREFIX)
WRITE_PREFIXES = (PROCESSED_PREFIX, MODELS_PREFIX, LOGS_PREFIX)
RAW_ARCHIVE_KEY = f"{RAW_PREFIX}aclImdb_v1.tar.gz"
TRAINING_LOGS_PREFIX = f"{LOGS_PREFIX}training/"
ECS_AMI_PARAMETER_PREFIX = "/aws/service/ecs/optimized-ami/"
# An instance family: its series letters, generation digit and attribute suffix (c7i, g6e, m7gd, inf2, trn1).
_INSTANCE_FAMILY = re.compile(r"(?P<series>[a-z]+)(?P<generation>\d+)(?P<attributes>[a-z-]*)")


def ami_variant_for(instance_type: str) -> str | None:
    """The ECS-optimised AMI variant an instance type needs: `gpu` (NVIDIA), `neuron` (Inferentia, Trainium),
    `arm64` (Graviton: a1, or a `g` among the family's attributes) or `x86_64`; None for an unfamiliar name."""
    family = _INSTANCE_FAMILY.fullmatch(instance_type.split(".", 1)[0])
    if family is None:
        return None
    if family["series"] in ("g", "gr", "p"):
        return "gpu"
    if family["series"] in ("inf", "trn"):
        return "neuron"
    return "arm64" if family["series"] == "a" or "g" in family["attributes"] else "x86_64"


def ami_parameter_variant(parameter: str) -> str:
    """The variant an ECS-optimised AMI parameter names: a path segment after the OS (none for x86-64)."""
    segments = parameter.removeprefix(ECS_AMI_PARAMETER_PREFIX).split("/")
    return next((segment for segment in segments if segment in ("gpu", "neuron", "arm64")), "x86_64")


def render_user_data(settings: dict[str, str]) -> str:
    """The user-data script with `settings` as shell-quoted variables in place of the marker line."""
    template = USER_DATA_TEMPLATE.read_text()
    if SETTINGS_MARKER not in template:
        raise ValueError(f"{USER_DATA_TEMPLATE} lost its {SETTINGS_MARKER!r} line")
    lines = "\n".join(f"readonly {key}={shlex.quote(str(value))}" for key, value in settings.items())
    return template.replace(SETTINGS_MARKER, lines, 1)


@dataclass(frozen=True)
class TrainingArgs:
    vpc_id: pulumi.Input[str]
    subnet_id: pulumi.Input[str]
    """A public subnet: the instance downloads PyTorch from the package index (it has no inbound rules)."""
    bucket_name: pulumi.Input[str]
    bucket_arn: pulumi.Input[str]
    kms_key_arn: pulumi.Input[str] | None
    repository_arn: pulumi.Input[str]
    image_ref: pulumi.Input[str]
    """The API image by digest; its /opt/dist wheel is what the run installs."""
    region: str
    instance_type: str
    ami_ssm_parameter: str
    use_spot: bool
    volume_size_gb: int
    arch: str
    """Model architecture (`python -m workload train --arch`)."""
    epochs: int
    max_run_minutes: int
    """Hard limit on a run: the instance schedules its own shutdown this long after boot."""
    log_retention_days: int
    serving_model_version: str
    """The stack's `modelVersion`: a run gates its bundle against it and records the verdict in the registry."""
    run_tags: dict[str, str]
    """Tags for the instances and volumes a run creates (the provider's default tags do not reach them)."""

    def __post_init__(self) -> None:
        # EC2 refuses an arm64 AMI on an x86 type only when a run launches, long after `pulumi up`; a CPU AMI on
        # a GPU type launches without the NVIDIA driver and trains on the CPU it pays GPU prices for.
        if not self.ami_ssm_parameter.startswith(ECS_AMI_PARAMETER_PREFIX):
            return  # a custom AMI: its owner knows what it holds
        needed, named = ami_variant_for(self.instance_type), ami_parameter_variant(self.ami_ssm_parameter)
        if needed is not None and needed != named:
            raise ValueError(
                f"trainingAmiParameter {self.ami_ssm_parameter} is the {named} ECS-optimised AMI, but "
                f"trainingInstanceType {self.instance_type} needs the {needed} one"
            )


class TrainingCompute(pulumi.ComponentResource):
    launch_template_id: pulumi.Output[str]
    launch_template_arn: pulumi.Output[str]
    role_arn: pulumi.Output[str]
    log_group_name: pulumi.Output[str]

    def __init__(self, name: str, args: TrainingArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("imdb-sentiment:training:TrainingCompute", name, None, opts)
        self._name = name
        self._args = args
        log_group = recipes.log_group(self, name, args.log_retention_days)
        role = recipes.role_with_inline_policy(
            self,
            f"{name}-role",
            "ec2.amazonaws.com",
            pulumi.Output.all(
                bucket_arn=args.bucket_arn,
                repository_arn=args.repository_arn,
                log_group_arn=log_group.arn,
                kms_key_arn=args.kms_key_arn,
            ).apply(
                lambda a: policies.training_policy(read_prefixes=READ_PREFIXES, write_prefixes=WRITE_PREFIXES, **a)
            ),
        )
        profile = aws.iam.InstanceProfile(f"{name}-profile", role=role.name, opts=pulumi.ResourceOptions(parent=self))
        security_group = aws.ec2.SecurityGroup(
            f"{name}-sg",
            vpc_id=args.vpc_id,
            description="Training instances: no inbound access at all; HTTPS out for S3, ECR and PyPI",
            opts=pulumi.ResourceOptions(parent=self),
        )
        recipes.https_egress(
            self, f"{name}-https-out", security_group, "HTTPS to AWS APIs and the Python package index"
        )
        template = self._launch_template(profile, security_group, self._user_data(log_group))
        self.launch_template_id = template.id
        self.launch_template_arn = template.arn
        self.role_arn = role.arn
        self.log_group_name = log_group.name
        self.register_outputs(
            {
                "launch_template_id": self.launch_template_id,
                "launch_template_arn": self.launch_template_arn,
                "role_arn": self.role_arn,
                "log_group_name": self.log_group_name,
            }
        )

    def _user_data(self, log_group: aws.cloudwatch.LogGroup) -> pulumi.Output[str]:
        """The rendered training script, base64-encoded as a launch template wants it."""
        args = self._args

        def render(values: dict[str, str]) -> str:
            settings = {
                **values,
                "REGION": args.region,
                "REGISTRY": values["IMAGE"].split("/", 1)[0],
                # Rendered from the same constants as the role's prefixes, so script and policy agree.
                "RAW_KEY": RAW_ARCHIVE_KEY,
                "PROCESSED_PREFIX": PROCESSED_PREFIX,
                "MODELS_PREFIX": MODELS_PREFIX,
                "TRAINING_LOGS_PREFIX": TRAINING_LOGS_PREFIX,
                "ARCH": args.arch,
                "EPOCHS": str(args.epochs),
                "MAX_RUN_MINUTES": str(args.max_run_minutes),
                "SERVING_MODEL_VERSION": args.serving_model_version,
            }
            return base64.b64encode(render_user_data(settings).encode()).decode()

        return pulumi.Output.all(BUCKET=args.bucket_name, IMAGE=args.image_ref, LOG_GROUP=log_group.name).apply(render)

    def _launch_template(
        self, profile: aws.iam.InstanceProfile, security_group: aws.ec2.SecurityGroup, user_data: pulumi.Output[str]
    ) -> aws.ec2.LaunchTemplate:
        name, args = self._name, self._args
        ami = aws.ssm.get_parameter_output(name=args.ami_ssm_parameter, opts=pulumi.InvokeOutputOptions(parent=self))
        return aws.ec2.LaunchTemplate(
            f"{name}-template",
            description="One imdb-sentiment training run; the instance terminates itself when done",
            image_id=ami.value,
            instance_type=args.instance_type,
            instance_market_options=self._spot_options(),
            instance_initiated_shutdown_behavior="terminate",
            iam_instance_profile=aws.ec2.LaunchTemplateIamInstanceProfileArgs(arn=profile.arn),
            metadata_options=aws.ec2.LaunchTemplateMetadataOptionsArgs(
                http_endpoint="enabled",
                http_tokens="required",  # IMDSv2 only
                http_put_response_hop_limit=2,  # docker containers on the host sit one hop further away
            ),
            block_device_mappings=[
                aws.ec2.LaunchTemplateBlockDeviceMappingArgs(
                    device_name="/dev/xvda",
                    ebs=aws.ec2.LaunchTemplateBlockDeviceMappingEbsArgs(
                        volume_size=args.volume_size_gb,
                        volume_type="gp3",
                        encrypted="true",
                        delete_on_termination="true",
                    ),
                )
            ],
            network_interfaces=[
                aws.ec2.LaunchTemplateNetworkInterfaceArgs(
                    subnet_id=args.subnet_id,
                    security_groups=[security_group.id],
                    device_index=0,
                    associate_public_ip_address="true",
                    delete_on_termination="true",
                )
            ],
            tag_specifications=[
                aws.ec2.LaunchTemplateTagSpecificationArgs(
                    resource_type=kind, tags={**args.run_tags, "Name": f"{name}-run"}
                )
                for kind in ("instance", "volume")
            ],
            update_default_version=True,
            user_data=user_data,
            opts=pulumi.ResourceOptions(parent=self),
        )

    def _spot_options(self) -> aws.ec2.LaunchTemplateInstanceMarketOptionsArgs | None:
        if not self._args.use_spot:
            return None
        return aws.ec2.LaunchTemplateInstanceMarketOptionsArgs(
            market_type="spot",
            # One-time requests: an interrupted run is simply re-launched, never resumed half-trained.
            spot_options=aws.ec2.LaunchTemplateInstanceMarketOptionsSpotOptionsArgs(
                spot_instance_type="one-time", instance_interruption_behavior="terminate"
            ),
        )
