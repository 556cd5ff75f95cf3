"""The data lake: one private, versioned, encrypted S3 bucket with a prefix per stage of the pipeline."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from components import policies

RAW_PREFIX = "raw/"
PROCESSED_PREFIX = "processed/"
MODELS_PREFIX = "models/"
LOGS_PREFIX = "logs/"
CAPTURE_PREFIX = "capture/"  # the API's data-capture records (workload.serving.capture), read by the monitoring job
PREFIXES = (RAW_PREFIX, PROCESSED_PREFIX, MODELS_PREFIX, LOGS_PREFIX, CAPTURE_PREFIX)
# Raw archives and logs are written once and rarely read again, so they age into cheaper storage classes;
# processed data and models stay in STANDARD because training and serving read them. Every training run reads
# the raw tarball with a plain GetObject, which fails on a GLACIER (Flexible Retrieval) object until it is
# restored, so raw/ goes to GLACIER_IR (Instant Retrieval: still a Glacier tier, readable at once); logs/ are
# only read by hand, so they take the cheaper GLACIER.
GLACIER_CLASS_BY_PREFIX = {RAW_PREFIX: "GLACIER_IR", LOGS_PREFIX: "GLACIER"}


@dataclass(frozen=True)
class DataLakeArgs:
    force_destroy: bool
    """Let `pulumi destroy` delete a non-empty bucket (dev only; prod keeps its data)."""
    use_kms: bool
    """Encrypt with a customer-managed KMS key (rotated yearly) instead of S3-managed AES-256."""
    infrequent_access_after_days: int
    glacier_after_days: int
    noncurrent_version_expiry_days: int
    capture_expiry_days: int
    """Captured requests (review texts, unless the API is told to leave them out) are deleted after this many days."""

    def __post_init__(self) -> None:
        if self.capture_expiry_days < 1:
            raise ValueError(f"captureExpiryDays must be at least 1, got {self.capture_expiry_days}")


class DataLake(pulumi.ComponentResource):
    bucket_name: pulumi.Output[str]
    bucket_arn: pulumi.Output[str]
    kms_key_arn: pulumi.Output[str] | None
    prefix_uris: dict[str, pulumi.Output[str]]

    def __init__(self, name: str, args: DataLakeArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("imdb-sentiment:storage:DataLake", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)

        bucket = aws.s3.Bucket(f"{name}-bucket", force_destroy=args.force_destroy, opts=child)
        public_access = aws.s3.BucketPublicAccessBlock(
            f"{name}-public-access",
            bucket=bucket.id,
            block_public_acls=True,
            block_public_policy=True,
            ignore_public_acls=True,
            restrict_public_buckets=True,
            opts=child,
        )
        aws.s3.BucketOwnershipControls(
            f"{name}-ownership",
            bucket=bucket.id,
            rule=aws.s3.BucketOwnershipControlsRuleArgs(object_ownership="BucketOwnerEnforced"),
            opts=child,
        )
        versioning = aws.s3.BucketVersioning(
            f"{name}-versioning",
            bucket=bucket.id,
            versioning_configuration=aws.s3.BucketVersioningVersioningConfigurationArgs(status="Enabled"),
            opts=child,
        )

        self.kms_key_arn = self._encryption(name, args, bucket)
        aws.s3.BucketPolicy(
            f"{name}-tls-only",
            bucket=bucket.id,
            policy=bucket.arn.apply(lambda arn: policies.to_json(policies.tls_only_bucket_policy(arn))),
            # A policy put before the public-access block exists can race with it.
            opts=pulumi.ResourceOptions(parent=self, depends_on=[public_access]),
        )
        aws.s3.BucketLifecycleConfiguration(
            f"{name}-lifecycle",
            bucket=bucket.id,
            rules=[
                *(
                    self._cold_storage_rule(prefix, glacier_class, args)
                    for prefix, glacier_class in GLACIER_CLASS_BY_PREFIX.items()
                ),
                self._housekeeping_rule(args),
                aws.s3.BucketLifecycleConfigurationRuleArgs(
                    id="capture-expiry",
                    status="Enabled",
                    filter=aws.s3.BucketLifecycleConfigurationRuleFilterArgs(prefix=CAPTURE_PREFIX),
                    expiration=aws.s3.BucketLifecycleConfigurationRuleExpirationArgs(days=args.capture_expiry_days),
                ),
            ],
            # Lifecycle rules on noncurrent versions only make sense once versioning is on.
            opts=pulumi.ResourceOptions(parent=self, depends_on=[versioning]),
        )

        self.bucket_name = bucket.bucket
        self.bucket_arn = bucket.arn
        self.prefix_uris = {
            prefix.rstrip("/"): bucket.bucket.apply(lambda b, p=prefix: f"s3://{b}/{p}") for prefix in PREFIXES
        }
        self.register_outputs(
            {"bucket_name": self.bucket_name, "bucket_arn": self.bucket_arn, "prefix_uris": self.prefix_uris}
        )

    def _encryption(self, name: str, args: DataLakeArgs, bucket: aws.s3.Bucket) -> pulumi.Output[str] | None:
        """Default encryption: a rotated customer-managed KMS key (whose ARN this returns) or S3-managed AES-256."""
        child = pulumi.ResourceOptions(parent=self)
        key_arn = None
        if args.use_kms:
            key = aws.kms.Key(
                f"{name}-key",
                description=f"{name} data lake encryption",
                enable_key_rotation=True,
                deletion_window_in_days=30,
                opts=child,
            )
            key_arn = key.arn
        aws.s3.BucketServerSideEncryptionConfiguration(
            f"{name}-encryption",
            bucket=bucket.id,
            rules=[
                aws.s3.BucketServerSideEncryptionConfigurationRuleArgs(
                    apply_server_side_encryption_by_default=aws.s3.BucketServerSideEncryptionConfigurationRuleApplyServerSideEncryptionByDefaultArgs(
                        sse_algorithm="aws:kms" if args.use_kms else "AES256",
                        kms_master_key_id=key_arn,
                    ),
                    # S3 Bucket Keys cut KMS request costs by ~99 %; harmless with AES256.
                    bucket_key_enabled=args.use_kms,
                )
            ],
            opts=child,
        )
        return key_arn

    @staticmethod
    def _cold_storage_rule(
        prefix: str, glacier_class: str, args: DataLakeArgs
    ) -> aws.s3.BucketLifecycleConfigurationRuleArgs:
        return aws.s3.BucketLifecycleConfigurationRuleArgs(
            id=f"{prefix.rstrip('/')}-to-cold-storage",
            status="Enabled",
            filter=aws.s3.BucketLifecycleConfigurationRuleFilterArgs(prefix=prefix),
            transitions=[
                aws.s3.BucketLifecycleConfigurationRuleTransitionArgs(
                    days=args.infrequent_access_after_days, storage_class="STANDARD_IA"
                ),
                aws.s3.BucketLifecycleConfigurationRuleTransitionArgs(
                    days=args.glacier_after_days, storage_class=glacier_class
                ),
            ],
        )

    @staticmethod
    def _housekeeping_rule(args: DataLakeArgs) -> aws.s3.BucketLifecycleConfigurationRuleArgs:
        return aws.s3.BucketLifecycleConfigurationRuleArgs(
            id="expire-old-versions",
            status="Enabled",
            # An empty filter applies the rule to the whole bucket.
            filter=aws.s3.BucketLifecycleConfigurationRuleFilterArgs(),
            noncurrent_version_expiration=aws.s3.BucketLifecycleConfigurationRuleNoncurrentVersionExpirationArgs(
                noncurrent_days=args.noncurrent_version_expiry_days
            ),
            abort_incomplete_multipart_upload=aws.s3.BucketLifecycleConfigurationRuleAbortIncompleteMultipartUploadArgs(
                days_after_initiation=7
            ),
        )
