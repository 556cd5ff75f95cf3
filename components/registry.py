"""The container registry and the workload image built from `workload/` and pushed into it."""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pulumi
import pulumi_aws as aws
import pulumi_docker as docker


def git_commit(repo_root: Path) -> str:
    """The checked-out commit: the default (immutable) image tag, and packaged into the image, so every image and
    every bundle it trains traces back to its source."""
    try:
        result = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo_root, capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError) as error:
        raise ValueError(f"cannot read the git commit in {repo_root} for the image: {error}") from error
    return result.stdout.strip()


@dataclass(frozen=True)
class RegistryArgs:
    context_dir: str
    """Docker build context (the `workload/` project)."""
    dockerfile: str
    image_tag: str
    source_commit: str
    """The git commit the image is built from: packaged into the wheel, so bundles record it."""
    keep_images: int
    """How many images the lifecycle policy keeps; older ones are expired."""
    force_delete: bool
    """Let `pulumi destroy` delete a repository that still holds images."""


class Registry(pulumi.ComponentResource):
    repository_url: pulumi.Output[str]
    repository_arn: pulumi.Output[str]
    image_ref: pulumi.Output[str]
    """The pushed image by digest (`<repository>@sha256:...`): deployments pin content, not a tag."""

    def __init__(self, name: str, args: RegistryArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("imdb-sentiment:registry:Registry", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        repository = aws.ecr.Repository(
            f"{name}-repo",
            image_tag_mutability="IMMUTABLE",
            image_scanning_configuration=aws.ecr.RepositoryImageScanningConfigurationArgs(scan_on_push=True),
            encryption_configurations=[aws.ecr.RepositoryEncryptionConfigurationArgs(encryption_type="AES256")],
            force_delete=args.force_delete,
            opts=child,
        )
        aws.ecr.LifecyclePolicy(
            f"{name}-keep-recent",
            repository=repository.name,
            policy=json.dumps(
                {
                    "rules": [
                        {
                            "rulePriority": 1,
                            "description": f"keep the last {args.keep_images} images",
                            "selection": {
                                "tagStatus": "any",
                                "countType": "imageCountMoreThan",
                                "countNumber": args.keep_images,
                            },
                            "action": {"type": "expire"},
                        }
                    ]
                }
            ),
            opts=child,
        )
        credentials = aws.ecr.get_authorization_token_output(
            registry_id=repository.registry_id, opts=pulumi.InvokeOutputOptions(parent=self)
        )
        image = docker.Image(
            f"{name}-image",
            build=docker.DockerBuildArgs(
                context=args.context_dir,
                dockerfile=args.dockerfile,
                platform="linux/amd64",
                # The Dockerfile writes it into the wheel; EC2 training installs that same wheel.
                args={"GIT_COMMIT": args.source_commit},
            ),
            image_name=repository.repository_url.apply(lambda url: f"{url}:{args.image_tag}"),
            registry=docker.RegistryArgs(
                server=repository.repository_url,
                username=credentials.user_name,
                password=pulumi.Output.secret(credentials.password),
            ),
            opts=child,
        )
        self.repository_url = repository.repository_url
        self.repository_arn = repository.arn
        self.image_ref = image.repo_digest
        self.register_outputs(
            {"repository_url": self.repository_url, "repository_arn": self.repository_arn, "image_ref": self.image_ref}
        )
