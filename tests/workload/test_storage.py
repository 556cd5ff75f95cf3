"""S3 URIs: clear errors for a missing bucket or object, and the manifest-last publish order."""

from __future__ import annotations

from pathlib import Path

import boto3
import pytest
from workload.errors import WorkloadError

from workload import storage


def test_split_and_join_s3_uris():
    assert storage.split_s3("s3://bucket/a/b/") == ("bucket", "a/b")
    assert storage.join("s3://bucket", "x.json") == "s3://bucket/x.json"
    assert storage.join("s3://bucket/p", "x.json") == "s3://bucket/p/x.json"
    with pytest.raises(WorkloadError, match="no bucket"):
        storage.split_s3("s3:///key")


@pytest.mark.integration
def test_missing_bucket_and_object_are_clear_errors(s3_bucket, tmp_path):
    with pytest.raises(WorkloadError, match="no such S3 bucket"):
        storage.read_bytes("s3://no-such-bucket-here/x")
    with pytest.raises(WorkloadError, match="no such S3 object"):
        storage.download_file(f"s3://{s3_bucket}/missing", tmp_path / "x")


@pytest.mark.integration
def test_publish_folder_uploads_manifest_last_and_replaces_stale_files(s3_bucket, tmp_path, monkeypatch):
    uri = f"s3://{s3_bucket}/out"
    order: list[str] = []
    real_upload = storage.upload_file
    monkeypatch.setattr(
        storage, "upload_file", lambda path, target: (order.append(path.name), real_upload(path, target))
    )
    for round_files in (["a.txt", "old.txt"], ["a.txt", "b.txt"]):
        order.clear()
        folder = tmp_path / "stage"
        folder.mkdir()
        for name in [*round_files, "manifest.json"]:
            (folder / name).write_text(name)
        storage.publish_folder(folder, uri, replace=True)
        assert order[-1] == "manifest.json" and not folder.exists()
    assert storage.list_names(uri) == ["a.txt", "b.txt", "manifest.json"]
    assert boto3.client("s3").get_object(Bucket=s3_bucket, Key="out/b.txt")["Body"].read() == b"b.txt"
    with pytest.raises(WorkloadError, match="refusing to overwrite"):
        (tmp_path / "again").mkdir()
        storage.publish_folder(tmp_path / "again", uri)


@pytest.mark.integration
def test_missing_credentials_are_a_clear_error(s3_bucket, tmp_path, monkeypatch):
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")  # never ask an instance-metadata address
    monkeypatch.setattr(boto3, "DEFAULT_SESSION", None)  # the default session caches the fixture's credentials
    with pytest.raises(WorkloadError, match="no AWS credentials"):
        storage.read_bytes(f"s3://{s3_bucket}/x")


def test_local_replace_puts_the_old_output_back_when_the_swap_fails(tmp_path, monkeypatch):
    target, new = tmp_path / "out", tmp_path / "new"
    for folder, text in ((target, "old"), (new, "new")):
        folder.mkdir()
        (folder / "manifest.json").write_text(text)
    real_rename = Path.rename

    def rename(self: Path, destination: Path) -> Path:
        if self == new:
            raise OSError("simulated failure")
        return real_rename(self, destination)

    monkeypatch.setattr(Path, "rename", rename)
    with pytest.raises(OSError, match="simulated failure"):
        storage.publish_folder(new, str(target), replace=True)
    assert (target / "manifest.json").read_text() == "old"
    assert sorted(path.name for path in tmp_path.iterdir()) == ["new", "out"]


@pytest.mark.integration
@pytest.mark.parametrize("delete_allowed", [True, False])
def test_a_failed_upload_reports_its_own_error_and_rolls_back_when_allowed(
    s3_bucket, tmp_path, monkeypatch, delete_allowed
):
    uri = f"s3://{s3_bucket}/out"
    folder = tmp_path / "stage"
    folder.mkdir()
    for name in ("a.txt", "b.txt", "manifest.json"):
        (folder / name).write_text(name)
    real_upload = storage.upload_file

    def upload(path: Path, target: str) -> None:
        if path.name == "b.txt":
            raise WorkloadError("upload failed: network gone")
        real_upload(path, target)

    monkeypatch.setattr(storage, "upload_file", upload)
    if not delete_allowed:  # the training role has no s3:DeleteObject

        def denied(uri: str, names: list[str]) -> None:
            raise WorkloadError("access denied")

        monkeypatch.setattr(storage, "delete_names", denied)
    with pytest.raises(WorkloadError, match="network gone"):
        storage.publish_folder(folder, uri)
    assert storage.list_names(uri) == ([] if delete_allowed else ["a.txt"])


def test_keys_that_s3_refuses_to_delete_are_an_error(monkeypatch):
    """DeleteObjects answers 200 with the refused keys under "Errors" (e.g. without s3:DeleteObject)."""

    class RefusingClient:
        def delete_objects(self, Bucket: str, Delete: dict) -> dict:
            return {"Errors": [{"Key": item["Key"], "Code": "AccessDenied"} for item in Delete["Objects"]]}

    monkeypatch.setattr(storage, "s3_client", RefusingClient)
    expected = r"refused to delete 2 key\(s\) under s3://lake/models/v1, e.g. models/v1/a: AccessDenied"
    with pytest.raises(WorkloadError, match=expected):
        storage.delete_names("s3://lake/models/v1", ["a", "b"])


def test_the_embedded_s3_client_ignores_a_profile_configured_elsewhere(embedded_s3, monkeypatch):
    """`make demo` on a machine whose AWS_PROFILE names a profile it does not have must still work locally."""
    monkeypatch.setenv("AWS_PROFILE", "a-profile-this-machine-does-not-have")
    client = embedded_s3.client()
    client.create_bucket(Bucket="profile-independent")
    assert "profile-independent" in [bucket["Name"] for bucket in client.list_buckets()["Buckets"]]
