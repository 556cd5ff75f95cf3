import json
from pathlib import Path

import pytest
from pulumi.runtime import rpc

from components.registry import Registry, RegistryArgs, git_commit

REPO_ROOT = Path(__file__).resolve().parents[2]

ARGS = RegistryArgs(
    context_dir="workload",
    dockerfile="workload/Dockerfile",
    image_tag="abc1234",
    source_commit="0123456789abcdef",
    keep_images=7,
    force_delete=False,
)


def build() -> dict:
    registry = Registry("registry", ARGS)
    return {"url": registry.repository_url, "arn": registry.repository_arn, "image": registry.image_ref}


def test_repository_is_immutable_scanned_encrypted_and_pruned(run_pulumi, pulumi_mocks):
    run_pulumi(build)
    repo = pulumi_mocks.one("aws:ecr/repository:Repository").inputs
    assert repo["imageTagMutability"] == "IMMUTABLE"
    assert repo["imageScanningConfiguration"] == {"scanOnPush": True}
    assert repo["encryptionConfigurations"] == [{"encryptionType": "AES256"}]
    assert repo["forceDelete"] is False
    (rule,) = json.loads(pulumi_mocks.one("aws:ecr/lifecyclePolicy:LifecyclePolicy").inputs["policy"])["rules"]
    assert rule["selection"]["countType"] == "imageCountMoreThan"
    assert rule["selection"]["countNumber"] == 7
    assert rule["action"] == {"type": "expire"}


def test_image_is_built_for_amd64_tagged_with_the_commit_and_exposed_by_digest(run_pulumi, pulumi_mocks):
    out = run_pulumi(build)
    image = pulumi_mocks.one("docker:index/image:Image")
    assert image.inputs["build"] == {
        "context": "workload",
        "dockerfile": "workload/Dockerfile",
        "platform": "linux/amd64",
        "args": {"GIT_COMMIT": "0123456789abcdef"},
    }
    assert image.inputs["imageName"] == f"{out['url']}:abc1234"
    registry = image.inputs["registry"]
    # The ECR password makes the whole credentials object a secret, so it never shows in state or logs.
    assert registry[rpc._special_sig_key] == rpc._special_secret_sig
    assert registry["value"]["server"] == out["url"]
    assert registry["value"]["username"] == "AWS"  # from the mocked getAuthorizationToken
    assert "aws:ecr/getAuthorizationToken:getAuthorizationToken" in pulumi_mocks.calls
    assert out["image"] == image.state["repoDigest"]
    assert out["image"].startswith(f"{out['url']}@sha256:")


def test_git_commit_reads_the_checkout_and_fails_clearly_elsewhere(tmp_path):
    assert len(git_commit(REPO_ROOT)) == 40
    with pytest.raises(ValueError, match="cannot read the git commit"):
        git_commit(tmp_path)
