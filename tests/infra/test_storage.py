import json

import pulumi
import pytest

from components.storage import DataLake, DataLakeArgs

ARGS = DataLakeArgs(
    force_destroy=False,
    use_kms=False,
    infrequent_access_after_days=30,
    glacier_after_days=90,
    noncurrent_version_expiry_days=60,
    capture_expiry_days=14,
)


def build(args: DataLakeArgs = ARGS) -> dict:
    lake = DataLake("lake", args)
    return {"bucket": lake.bucket_name, "arn": lake.bucket_arn, "uris": lake.prefix_uris}


def test_outputs_name_the_bucket_and_its_prefixes(run_pulumi, pulumi_mocks):
    out = run_pulumi(build)
    bucket = pulumi_mocks.one("aws:s3/bucket:Bucket")
    assert out["bucket"] == bucket.state["bucket"]
    assert out["arn"] == f"arn:aws:s3:::{out['bucket']}"
    assert out["uris"] == {p: f"s3://{out['bucket']}/{p}/" for p in ("raw", "processed", "models", "logs", "capture")}


def test_bucket_is_private_versioned_encrypted_and_tls_only(run_pulumi, pulumi_mocks):
    run_pulumi(build)
    assert pulumi_mocks.one("aws:s3/bucket:Bucket").inputs["forceDestroy"] is False
    block = pulumi_mocks.one("aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock").inputs
    for flag in ("blockPublicAcls", "blockPublicPolicy", "ignorePublicAcls", "restrictPublicBuckets"):
        assert block[flag] is True, flag
    ownership = pulumi_mocks.one("aws:s3/bucketOwnershipControls:BucketOwnershipControls").inputs
    assert ownership["rule"]["objectOwnership"] == "BucketOwnerEnforced"
    versioning = pulumi_mocks.one("aws:s3/bucketVersioning:BucketVersioning").inputs
    assert versioning["versioningConfiguration"]["status"] == "Enabled"
    sse = pulumi_mocks.one("aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration")
    assert sse.inputs["rules"][0]["applyServerSideEncryptionByDefault"]["sseAlgorithm"] == "AES256"
    statement = json.loads(pulumi_mocks.one("aws:s3/bucketPolicy:BucketPolicy").inputs["policy"])["Statement"][0]
    assert statement["Effect"] == "Deny"
    assert statement["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}


def test_raw_and_logs_age_into_cold_storage_and_old_versions_expire(run_pulumi, pulumi_mocks):
    run_pulumi(build)
    rules = pulumi_mocks.one("aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration").inputs["rules"]
    cold = {rule["filter"]["prefix"]: rule["transitions"] for rule in rules if rule.get("transitions")}
    infrequent = {"days": 30, "storageClass": "STANDARD_IA"}
    # raw/ must stay readable with GetObject (training reads it), so it takes Glacier Instant Retrieval.
    assert cold == {
        "raw/": [infrequent, {"days": 90, "storageClass": "GLACIER_IR"}],
        "logs/": [infrequent, {"days": 90, "storageClass": "GLACIER"}],
    }
    expiring = [rule for rule in rules if rule.get("noncurrentVersionExpiration")]
    assert [rule["noncurrentVersionExpiration"]["noncurrentDays"] for rule in expiring] == [60]


def test_kms_option_creates_a_rotated_key_and_uses_it(run_pulumi, pulumi_mocks):
    run_pulumi(lambda: build(DataLakeArgs(**{**ARGS.__dict__, "use_kms": True, "force_destroy": True})))
    key = pulumi_mocks.one("aws:kms/key:Key")
    assert key.inputs["enableKeyRotation"] is True
    sse = pulumi_mocks.one("aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration")
    default = sse.inputs["rules"][0]["applyServerSideEncryptionByDefault"]
    assert default == {"sseAlgorithm": "aws:kms", "kmsMasterKeyId": key.state["arn"]}
    assert pulumi_mocks.one("aws:s3/bucket:Bucket").inputs["forceDestroy"] is True


def _assert_equal(actual: object, expected: object) -> None:
    assert actual == expected, f"{actual!r} != {expected!r}"


def test_an_assertion_inside_apply_really_runs(pulumi_mocks):
    """The style `return output.apply(check)` only proves something if a failing check fails the test."""

    @pulumi.runtime.test
    def check(expected: str) -> pulumi.Output[None]:
        lake = DataLake("lake", ARGS)
        return lake.prefix_uris["models"].apply(lambda uri: _assert_equal(uri.split("/")[-2], expected))

    check("models")
    with pytest.raises(AssertionError, match="'models' != 'weights'"):
        check("weights")


def test_captured_requests_expire_after_the_configured_days(run_pulumi, pulumi_mocks):
    run_pulumi(build)
    rules = pulumi_mocks.one("aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration").inputs["rules"]
    expiring = {rule["filter"].get("prefix"): rule["expiration"]["days"] for rule in rules if rule.get("expiration")}
    assert expiring == {"capture/": 14}  # current objects expire nowhere else


def test_capture_expiry_must_be_a_day_or_more():
    with pytest.raises(ValueError, match="captureExpiryDays"):
        DataLakeArgs(**{**ARGS.__dict__, "capture_expiry_days": 0})
