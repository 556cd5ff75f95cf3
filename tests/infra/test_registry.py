import dataclasses
import json
import shutil
import subprocess
from pathlib import Path

import pytest
from pulumi.runtime import rpc

from components.registry import IMAGE_PLATFORM, Registry, RegistryArgs, content_tag, source_version

REPO_ROOT = Path(__file__).resolve().parents[2]
WORKLOAD = REPO_ROOT / "workload"

ARGS = RegistryArgs(
    context_dir=WORKLOAD,
    dockerfile=WORKLOAD / "Dockerfile",
    source_version="0123456789abcdef",
    keep_images=7,
    force_delete=False,
)


def build(args: RegistryArgs = ARGS) -> dict:
    registry = Registry("registry", args)
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


def test_image_is_built_for_amd64_tagged_with_its_content_and_exposed_by_digest(run_pulumi, pulumi_mocks):
    out = run_pulumi(build)
    image = pulumi_mocks.one("docker:index/image:Image")
    assert image.inputs["build"] == {
        "context": str(WORKLOAD),
        "dockerfile": str(WORKLOAD / "Dockerfile"),
        "platform": "linux/amd64",
        "args": {"GIT_COMMIT": "0123456789abcdef"},
    }
    tag = content_tag(WORKLOAD, WORKLOAD / "Dockerfile", {"GIT_COMMIT": "0123456789abcdef"}, IMAGE_PLATFORM)
    assert image.inputs["imageName"] == f"{out['url']}:{tag}"
    registry = image.inputs["registry"]
    # The ECR password makes the whole credentials object a secret, so it never shows in state or logs.
    assert registry[rpc._special_sig_key] == rpc._special_secret_sig
    assert registry["value"]["server"] == out["url"]
    assert registry["value"]["username"] == "AWS"  # from the mocked getAuthorizationToken
    assert "aws:ecr/getAuthorizationToken:getAuthorizationToken" in pulumi_mocks.calls
    assert out["image"] == image.state["repoDigest"]
    assert out["image"].startswith(f"{out['url']}@sha256:")


def _context(folder: Path) -> Path:
    """A copy of the workload's build context (the files .dockerignore lets in, plus a cache it keeps out)."""
    shutil.copytree(WORKLOAD, folder, ignore=shutil.ignore_patterns("tests", "__pycache__", "*.egg-info"))
    (folder / "src" / "workload" / "__pycache__").mkdir(exist_ok=True)
    return folder


def _image_name(run_pulumi, pulumi_mocks, context: Path, version: str = "0123456789abcdef") -> str:
    args = dataclasses.replace(ARGS, context_dir=context, dockerfile=context / "Dockerfile", source_version=version)
    run_pulumi(lambda: build(args))
    return pulumi_mocks.of_type("docker:index/image:Image")[-1].inputs["imageName"]


def test_one_tag_is_never_pushed_with_different_content(run_pulumi, pulumi_mocks, tmp_path):
    """Fault 3: the repository is IMMUTABLE, so a rebuild under a tag already pushed fails the whole `pulumi up`.
    Whatever makes pulumi-docker rebuild (an edited file, a changed mode, another build argument) changes the tag."""
    context = _context(tmp_path / "context")
    module = next((context / "src").rglob("*.py"))
    first = _image_name(run_pulumi, pulumi_mocks, context)
    assert _image_name(run_pulumi, pulumi_mocks, _context(tmp_path / "same")) == first, "same content, same tag"
    (context / "src" / "workload" / "__pycache__" / "x.pyc").write_bytes(b"ignored by .dockerignore")
    assert _image_name(run_pulumi, pulumi_mocks, context) == first, "an ignored file changes nothing"
    module.write_text(module.read_text() + "\n# an uncommitted edit\n")
    edited = _image_name(run_pulumi, pulumi_mocks, context)
    module.chmod(0o755)
    executable = _image_name(run_pulumi, pulumi_mocks, context)
    other_commit = _image_name(run_pulumi, pulumi_mocks, context, version="fedcba9876543210")
    assert len({first, edited, executable, other_commit}) == 4


def _git(repo: Path, *arguments: str) -> str:
    return subprocess.run(["git", *arguments], cwd=repo, check=True, capture_output=True, text=True).stdout.strip()


def test_source_version_names_the_commit_and_says_when_the_tree_is_dirty(tmp_path):
    repo = tmp_path / "repo"
    (repo / "workload").mkdir(parents=True)
    (repo / "workload" / "app.py").write_text("print('hi')\n")
    (repo / "README.md").write_text("readme\n")
    _git(repo, "init", "-q")
    _git(repo, "add", ".")
    _git(repo, "-c", "user.name=t", "-c", "user.email=t@example.com", "commit", "-qm", "first")
    commit = _git(repo, "rev-parse", "HEAD")
    assert source_version(repo / "workload") == commit
    (repo / "README.md").write_text("edited outside the build context\n")
    assert source_version(repo / "workload") == commit
    (repo / "workload" / "new.py").write_text("untracked\n")
    assert source_version(repo / "workload") == f"{commit}-dirty"


def test_source_version_fails_clearly_outside_a_checkout(tmp_path):
    with pytest.raises(ValueError, match="cannot read the git state"):
        source_version(tmp_path)
