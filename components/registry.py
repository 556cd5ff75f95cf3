"""The container registry and the workload image built from `workload/` and pushed into it."""

from __future__ import annotations

import hashlib
import json
import stat
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import pulumi
import pulumi_aws as aws
import pulumi_docker as docker
from docker.utils import build as build_utils

IMAGE_PLATFORM = "linux/amd64"  # Fargate tasks and the training instances are x86_64


def _git(directory: Path, *arguments: str) -> str:
    try:
        result = subprocess.run(["git", *arguments], cwd=directory, capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError) as error:
        raise ValueError(f"cannot read the git state of {directory} for the image: {error}") from error
    return result.stdout.strip()


def source_version(context_dir: Path) -> str:
    """The last commit that changed `context_dir`, with `-dirty` when the checkout holds uncommitted or untracked
    changes there: packaged into the image (GIT_COMMIT), so every bundle it serves or trains says honestly which
    code it came from. A commit that leaves the workload alone does not change it, so it rebuilds nothing."""
    commit = _git(context_dir, "log", "-1", "--format=%H", "--", ".")
    if not commit:
        raise ValueError(f"cannot read the git state of {context_dir} for the image: no commit touches it")
    dirty = _git(context_dir, "status", "--porcelain", "--", ".")
    return f"{commit}-dirty" if dirty else commit


def _dockerignore_patterns(context_dir: Path) -> list[str]:
    ignore_file = context_dir / ".dockerignore"
    lines = ignore_file.read_text().splitlines() if ignore_file.is_file() else []
    return [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]


def content_tag(context_dir: Path, dockerfile: Path, build_args: Mapping[str, str], platform: str) -> str:
    """An image tag that names what the build sees: the Dockerfile, each file .dockerignore lets into the context
    (path, permission bits, content), the build arguments and the platform.

    These are the inputs pulumi-docker hashes to decide on a rebuild, so whenever it rebuilds, the tag changes
    too: the immutable repository never sees one tag pushed with different content, and an unchanged context
    (on any machine with the same checkout) keeps its tag and pushes nothing.
    """
    digest = hashlib.sha256(dockerfile.read_bytes())
    included = build_utils.exclude_paths(str(context_dir), _dockerignore_patterns(context_dir), str(dockerfile))
    for relative in sorted(included):
        path = context_dir / relative
        if path.is_file():
            content = hashlib.sha256(path.read_bytes()).hexdigest()
            digest.update(f"{relative}\0{stat.filemode(path.stat().st_mode)}\0{content}\0".encode())
    digest.update(json.dumps({"args": dict(build_args), "platform": platform}, sort_keys=True).encode())
    return f"ctx-{digest.hexdigest()[:32]}"


def keep_recent_policy(keep_images: int) -> str:
    """ECR lifecycle policy: expire every image but the `keep_images` most recent."""
    rule = {
        "rulePriority": 1,
        "description": f"keep the last {keep_images} images",
        "selection": {"tagStatus": "any", "countType": "imageCountMoreThan", "countNumber": keep_images},
        "action": {"type": "expire"},
    }
    return json.dumps({"rules": [rule]})


@dataclass(frozen=True)
class RegistryArgs:
    context_dir: Path
    """Docker build context (the `workload/` project)."""
    dockerfile: Path
    source_version: str
    """The git commit the image is built from (`-dirty` for uncommitted changes): packaged into the wheel, so
    bundles record it."""
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
            policy=keep_recent_policy(args.keep_images),
            opts=child,
        )
        credentials = aws.ecr.get_authorization_token_output(
            registry_id=repository.registry_id, opts=pulumi.InvokeOutputOptions(parent=self)
        )
        # The Dockerfile writes GIT_COMMIT into the wheel; EC2 training installs that same wheel.
        build_args = {"GIT_COMMIT": args.source_version}
        tag = content_tag(args.context_dir, args.dockerfile, build_args, IMAGE_PLATFORM)
        image = docker.Image(
            f"{name}-image",
            build=docker.DockerBuildArgs(
                context=str(args.context_dir),
                dockerfile=str(args.dockerfile),
                platform=IMAGE_PLATFORM,
                args=build_args,
            ),
            image_name=repository.repository_url.apply(lambda url: f"{url}:{tag}"),
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
